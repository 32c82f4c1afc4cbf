"""What was sent under each transport-wide sequence number, for matching transport-cc feedback.

Per outgoing RTP packet the transport calls :meth:`SendHistory.on_sent` with the 16-bit
transport-wide sequence number it wrote into the packet, the send time, the size and the
probe cluster the packet belongs to (None for media). Per feedback the estimator calls
:meth:`SendHistory.on_report` for each reported number; it answers only with news: the first
arrival of a packet, or the first report that calls a packet lost. Feedback overlaps (a
receiver re-reports after a late packet), so a packet reported twice is skipped, as
libwebrtc's ``TransportFeedbackAdapter`` does.

Bounded: a ring of ``capacity`` slots (a power of two, at most 32768 so that a reported
16-bit number unwraps without ambiguity against the last one sent). A packet older than
``capacity`` numbers is gone; a report of it is counted in ``unknown``. At 2000 packets/s
the default 16384 slots hold 8 s, far more than a feedback round trip.
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_CAPACITY = 1 << 14
_MAX_CAPACITY = 1 << 15



class SentPacket(NamedTuple):
    """A packet a feedback reported something new about. ``arrival`` is the receiver's
    arrival time in seconds, None when reported lost; ``was_lost`` is True when it arrived
    after an earlier feedback had reported it lost."""

    seq: int
    send_time: float
    size: int
    cluster: int | None
    arrival: float | None
    was_lost: bool


class SendHistory:
    """Ring of sent packets by transport-wide sequence number.

    Counters: ``sent`` (recorded), ``unknown`` (reports of numbers not in the history:
    never sent, or too old), ``duplicates`` (reports with nothing new)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity & (capacity - 1) or not 16 <= capacity <= _MAX_CAPACITY:
            raise ValueError("capacity must be a power of two in 16 .. 32768")
        # Public for the fan-out's inlined record (relay.worker.fanout): per slot, the
        # (unwrapped number, send time, size, probe cluster) it holds, or None.
        self.mask = capacity - 1
        # The slots are made at the first record (`allocate`): every transport has a
        # history, but only those whose consumers negotiated transport-cc use it, and three
        # lists of 16384 slots are ~390 kB a transport.
        self.entries: list[tuple[int, float, int, int | None] | None] = []
        self.last = -1  # highest unwrapped number sent (-1: none yet)
        # per slot, the unwrapped number last reported received / lost (news detection)
        self._received: list[int] = []
        self._lost: list[int] = []
        self._first = 0  # the first unwrapped number recorded (on_sent may start elsewhere)
        self.unknown = 0
        self.duplicates = 0

    def allocate(self) -> None:
        """Make the slots (once, before the first record)."""
        if not self.entries:
            capacity = self.mask + 1
            self.entries = [None] * capacity
            self._received = [-1] * capacity
            self._lost = [-1] * capacity

    @property
    def capacity(self) -> int:
        return self.mask + 1

    @property
    def sent(self) -> int:
        """Numbers recorded (sent) so far."""
        return 0 if self.last < 0 else self.last - self._first + 1

    def on_sent(self, seq: int, now: float, size: int, cluster: int | None = None) -> None:
        """Record that transport-wide number ``seq`` (16 bits) left at ``now`` seconds,
        ``size`` bytes on the wire, in probe cluster ``cluster`` (None for media)."""
        seq &= 0xFFFF
        last = self.last
        if last < 0:
            self.allocate()
            unwrapped = seq
            self._first = seq
            self.last = seq
        else:
            delta = (seq - last) & 0xFFFF
            if delta >= 0x8000:
                delta -= 0x10000
            unwrapped = last + delta
            if unwrapped > last:
                self.last = unwrapped
        self.entries[unwrapped & self.mask] = (unwrapped, now, max(0, int(size)), cluster)

    def record_next(self, now: float, size: int, cluster: int | None = None) -> int:
        """The sender's path (it numbers what it sends): take the next transport-wide number,
        record a packet of ``size`` bytes sent at ``now`` (in probe cluster ``cluster``,
        None for media), and return the number's 16-bit value to write into the packet.
        The fan-out writes the same three lines inline (a call per consumer and packet
        costs more than the record)."""
        unwrapped = self.last + 1
        if unwrapped == 0:
            self.allocate()
        self.last = unwrapped
        self.entries[unwrapped & self.mask] = (unwrapped, now, size, cluster)
        return unwrapped & 0xFFFF

    def on_report(self, seq: int, arrival: float | None) -> SentPacket | None:
        """A feedback reports ``seq`` (16 bits) arrived at ``arrival`` seconds (None: not
        received). Returns the sent packet when this is news, else None."""
        last = self.last
        if last < 0:
            self.unknown += 1
            return None
        unwrapped = last - ((last - seq) & 0xFFFF)  # feedback never reports the future
        slot = unwrapped & self.mask
        entry = self.entries[slot]
        if entry is None or entry[0] != unwrapped:
            self.unknown += 1
            return None
        was_lost = self._lost[slot] == unwrapped
        if arrival is None:
            if was_lost or self._received[slot] == unwrapped:
                self.duplicates += 1
                return None
            self._lost[slot] = unwrapped
        else:
            if self._received[slot] == unwrapped:
                self.duplicates += 1
                return None
            self._received[slot] = unwrapped
        return SentPacket(seq & 0xFFFF, entry[1], entry[2], entry[3], arrival, was_lost)
