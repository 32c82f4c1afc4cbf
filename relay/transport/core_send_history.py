"""The send history of a transport whose packets the C fan-out core numbers.

The core gives each packet it sends the transport's next transport-wide sequence number and
records (send time, size) in C arrays (`relay.uring.fanout_core.TccRing`), with no Python
per packet. This history copies those records into its entries when they are read: before a
feedback is matched (`on_report`), before Python numbers a packet itself (retransmissions,
probes, consumers on the Python fan-out: `record_next`) so both share one counter, and for
its stats. A burst larger than the capacity between two reads keeps its newest records, as
the history itself would.
"""

from __future__ import annotations

from itertools import repeat

from relay.transport.bwe.send_history import DEFAULT_CAPACITY, SendHistory, SentPacket
from relay.uring.fanout_core import TccRing, ffi

unpack = ffi.unpack


class CoreSendHistory(SendHistory):
    """A `SendHistory` shared with the C fan-out core (see the module doc)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(capacity)
        self.core: TccRing | None = None  # made for the first consumer that numbers

    def core_ring(self) -> TccRing:
        """The C arrays the core records into (made on first use: 12 bytes a slot)."""
        if self.core is None:
            self.core = TccRing(self.capacity)
            self.core.c.last = self.last
        return self.core

    def collect(self) -> None:
        """Copy what the core recorded since the last call into the entries."""
        core = self.core
        if core is None:
            return
        core_last = core.c.last
        last = self.last
        if core_last == last:
            return
        self.allocate()
        mask = self.mask
        entries, times, sizes = self.entries, core.times, core.sizes
        wide = max(last + 1, core_last - mask)
        while wide <= core_last:  # at most two runs: before and after the ring wraps
            i = wide & mask
            count = min(core_last + 1 - wide, mask + 1 - i)
            # a slice of exactly `count` entries, built at C speed
            entries[i:i + count] = zip(range(wide, wide + count), unpack(times + i, count),
                                       unpack(sizes + i, count), repeat(None, count),
                                       strict=True)
            wide += count
        self.last = core_last

    def record_next(self, now: float, size: int, cluster: int | None = None) -> int:
        self.collect()
        wide = super().record_next(now, size, cluster)
        if self.core is not None:
            self.core.c.last = self.last
        return wide

    def on_sent(self, seq: int, now: float, size: int, cluster: int | None = None) -> None:
        self.collect()
        super().on_sent(seq, now, size, cluster)
        if self.core is not None:
            self.core.c.last = self.last

    def on_report(self, seq: int, arrival: float | None) -> SentPacket | None:
        self.collect()
        return super().on_report(seq, arrival)

    @property
    def sent(self) -> int:
        self.collect()
        return super().sent
