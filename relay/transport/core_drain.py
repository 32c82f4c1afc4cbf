"""A UDP transport's socket drained through the C receive core (relay/uring/receive_core.c).

Plain and pipe transports make one `CoreDrain` for their RTP socket when the core is on
(`Transport._start_receive_core`) and call `drain()` from their readable callback. One
`recvmmsg` takes up to 32 datagrams; the core takes the common RTP packet whole (source
check, SRTP unprotect, header check, SSRC → producer stream, the stream's bookkeeping,
fan-out) and hands back, in arrival order and before changing any state for it, each
datagram it does not take: untouched (the transport's own per-datagram Python path, its
`_on_datagram`) or decrypted and validated (`Transport._route_rtp`). What the core counted
is added to the transport's Python counters at the end of each drain, so stats read between
drains are exact.

The transport writes what the core reads whenever it changes (`sync`): its remote, its SRTP
session, whether congestion feedback records packets, and the SSRC table (a `SsrcTable`
tells when it changes); the producer writes its streams' structs (`Producer.rx`).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from relay.transport.srtp_session import failure_reason
from relay.uring import receive_core

if TYPE_CHECKING:
    from relay.rtp.transport_cc import TransportCcReceiver
    from relay.transport.base import Transport

logger = logging.getLogger(__name__)

# One drain's bounds, for the core's and the Python path's (`Transport._drain_udp`) alike.
MAX_PACKETS_PER_DRAIN = 256
# Sends queued in the ring by one drain before it yields (the ring has 4096 slots by default;
# half leaves room for other transports' batches and completions in flight; the ring submits
# by itself when it runs out, and once per loop turn otherwise: SendRing.flush_soon).
MAX_SENDS_PER_DRAIN = 2048

_rx_receive = receive_core.receive
_rx_next = receive_core.next_event
_RX_DONE = receive_core.DONE
_RX_RAW = receive_core.RAW
_RX_QUEUED = receive_core.QUEUED
_RX_MORE = receive_core.MORE
_RX_BATCH = receive_core.BATCH
_EAGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


class SsrcTable(dict):
    """SSRC → (producer, encoding index), telling `on_change` when it changes, so the C
    receive core's copy of it follows (control path; lookups are plain dict lookups)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_change: Callable[[], None] | None = None

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        if self.on_change is not None:
            self.on_change()

    def __delitem__(self, key: int) -> None:
        super().__delitem__(key)
        if self.on_change is not None:
            self.on_change()


class CoreDrain:
    """One transport socket's receive core (see the module doc)."""

    __slots__ = ("transport", "core", "packets_taken", "handed_back", "tcc_recorded", "_times",
                 "_times_c")

    def __init__(self, transport: Transport, fd: int) -> None:
        self.transport = transport
        self.core = receive_core.TransportCore(fd, transport._ctx.ring.core,
                                               transport.max_rtp_size)
        self.packets_taken = 0  # RTP packets the core took whole
        self.handed_back = 0  # datagrams it handed to the Python path
        self.tcc_recorded = 0  # transport-cc arrivals it recorded itself
        self._times: Any = None  # the transport-cc table the core writes (and its pointer)
        self._times_c: Any = None

    def sync(self) -> None:
        """Write what the C core reads of the transport (control path: remote, SRTP,
        feedback, SSRC table changes)."""
        t = self.transport
        core = self.core
        c = core.c
        c.enabled = 0 if t.closed else 1
        core.set_remote(getattr(t, "_remote_match", None))
        srtp = t.srtp_recv
        # (the session's srtp_t, as the fan-out core holds it: `SrtpSession.core.ctx`)
        c.srtp = srtp.core.ctx if srtp is not None else receive_core.ffi.NULL
        c.srtp_required = 1 if srtp is None and t.srtp_send is not None else 0
        c.batched = 1 if getattr(t, "receives_batches", False) else 0
        c.record_feedback = 1 if t.feedback.record is not None else 0
        c.tcc.ext_id = t.feedback.tcc_ext_id
        c.tcc.limit = -1  # lent at each drain
        entries = []
        for ssrc, (producer, index) in t.ssrc_table.items():
            rx = getattr(producer, "rx", None)
            if rx is not None:
                entries.append((ssrc, rx[index]))
        core.set_table(entries)

    def close(self) -> None:
        self.core.c.enabled = 0
        self.core.set_table([])

    def stats(self) -> dict[str, int]:
        return {"packetsTaken": self.packets_taken, "handedToPython": self.handed_back,
                "transportCcRecorded": self.tcc_recorded}

    def drain(self, on_datagram: Callable[[int, Any, float], int]) -> None:
        """Drain the socket: recvmmsg batches through the core; each datagram it hands back
        goes to `on_datagram(n, source, now)` (untouched, in the transport's `_rbuf`) or
        `_route_rtp` (decrypted). Ends with one `flush_soon`, as the Python drain does."""
        t = self.transport
        core = self.core
        c = core.c
        ring = t._ctx.ring
        c.ring = ring.core  # (NULL once the ring is closed: nothing is sent)
        buf = t._rbuf
        view = t._rview
        tcc = t.feedback.tcc if c.record_feedback else None
        now = time.monotonic()
        sends = packets = 0
        try:
            while packets < MAX_PACKETS_PER_DRAIN and sends < MAX_SENDS_PER_DRAIN:
                count = _rx_receive(c)
                if count <= 0:
                    if count < 0 and -count not in _EAGAIN:
                        t.dropped[f"recv {-count}"] += 1
                    break
                packets += count
                while True:
                    if tcc is not None:
                        self._lend(tcc)
                    kind = _rx_next(c, now)
                    if tcc is not None and c.tcc.recorded:
                        self.tcc_recorded += c.tcc.recorded
                        c.tcc.recorded = 0
                        tcc.take_back(c.tcc.end, c.tcc.media_ssrc)
                    if c.record_count:  # first the feedback records of packets before it
                        self._record(now)
                    if kind == _RX_DONE:
                        break
                    if kind == _RX_MORE:
                        continue
                    n = c.event_length
                    index = c.event
                    if kind == _RX_QUEUED:  # taken; a stream buffer (ICE-TCP, pipe) to send
                        self._media_queued(core.packet(index, c.event_offset, n))
                        continue
                    self.handed_back += 1
                    buf[:n] = core.packet(index, c.event_offset, n)
                    try:
                        if kind == _RX_RAW:
                            sends += on_datagram(n, core.source(index), now)
                        else:
                            sends += t._route_rtp(buf, view, n, now)
                    except Exception:  # a bug must cost one packet, not the transport
                        logger.exception("RTP handling failed on transport %s", t.id)
                        t.dropped["internalError"] += 1
                sends += c.sends
                c.sends = 0
                if count < _RX_BATCH:
                    break  # the socket is (most likely) empty: no EAGAIN call needed
        finally:
            self._collect()
        ring.flush_soon()  # one submit per loop turn for every socket drained in it

    def _media_queued(self, packet: Any) -> None:
        """The core framed `packet` into a stream buffer (an ICE-TCP connection's, a batching
        pipe's) that now wants sending: its stream's fan-out tells the buffers' owners (as the
        Python path's call)."""
        entry = self.transport.ssrc_table.get(int.from_bytes(packet[8:12], "big"))
        if entry is not None:
            producer, index = entry
            producer.media_queued(index)

    def _lend(self, tcc: TransportCcReceiver) -> None:
        """Let the core record in-order transport-cc arrivals into the receiver's table
        while the receiver lends it (taken back after each `next_event`)."""
        w = self.core.c.tcc
        lent = tcc.lend()
        if lent is None:
            w.limit = -1
            return
        times, w.mask, w.end, w.limit = lent
        if times is not self._times:  # a new table (the receiver grew it)
            self._times = times
            w.times = self._times_c = receive_core.ffi.from_buffer("double[]", times)

    def _record(self, now: float) -> None:
        """Congestion feedback records the arrival of the packets the core took (in arrival
        order, before any packet after them is handled in Python): the core lists them, the
        feedback's own `record` reads each from the batch buffer."""
        c = self.core.c
        record = self.transport.feedback.record
        count = c.record_count
        c.record_count = 0
        if record is None:
            return
        batch = self.core.batch_view
        offsets, lengths, ssrcs = c.record_offset, c.record_length, c.record_ssrc
        for k in range(count):
            start = offsets[k]
            n = lengths[k]
            try:
                record(batch[start:start + n], n, ssrcs[k], now)
            except Exception:  # a bug must cost one record, not the rest of the batch
                logger.exception("feedback record failed on transport %s", self.transport.id)
                self.transport.dropped["internalError"] += 1

    def _collect(self) -> None:
        """Add what the C core counted since the last drain to the transport's counters."""
        t = self.transport
        c = self.core.c
        if c.rtp_packets:
            self.packets_taken += c.rtp_packets
            t.rtp_packets_received += c.rtp_packets
            t.rtp_bytes_received += c.rtp_bytes
            c.rtp_packets = c.rtp_bytes = 0
        if c.batched_datagrams:
            t.batched_datagrams_received += c.batched_datagrams
            t.batched_packets_received += c.batched_packets
            c.batched_datagrams = c.batched_packets = 0
        if c.malformed or c.too_large or c.srtp_failures or c.srtp_packets:
            if c.malformed:
                t.dropped["malformed"] += c.malformed
            if c.too_large:
                t.dropped["tooLarge"] += c.too_large
            srtp = t.srtp_recv
            if c.srtp_failures:
                t.dropped["srtp"] += c.srtp_failures
                if srtp is not None:
                    srtp.failures[failure_reason(c.srtp_last_error)] += c.srtp_failures
            if c.srtp_packets and srtp is not None:
                srtp.packets += c.srtp_packets
            c.malformed = c.too_large = c.srtp_failures = c.srtp_packets = 0
