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

_UNREPORTED = 0
_LOST = 1
_RECEIVED = 2


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
        self._mask = capacity - 1
        self._seq = [-1] * capacity  # unwrapped sequence number held by each slot
        self._time = [0.0] * capacity
        self._size = [0] * capacity
        self._cluster: list[int | None] = [None] * capacity
        self._state = bytearray(capacity)
        self._last: int | None = None  # highest unwrapped number sent
        self.sent = 0
        self.unknown = 0
        self.duplicates = 0

    @property
    def capacity(self) -> int:
        return self._mask + 1

    def on_sent(self, seq: int, now: float, size: int, cluster: int | None = None) -> None:
        """Record that transport-wide number ``seq`` (16 bits) left at ``now`` seconds,
        ``size`` bytes on the wire, in probe cluster ``cluster`` (None for media)."""
        seq &= 0xFFFF
        last = self._last
        if last is None:
            unwrapped = seq
            self._last = seq
        else:
            delta = (seq - last) & 0xFFFF
            if delta >= 0x8000:
                delta -= 0x10000
            unwrapped = last + delta
            if unwrapped > last:
                self._last = unwrapped
        slot = unwrapped & self._mask
        self._seq[slot] = unwrapped
        self._time[slot] = now
        self._size[slot] = max(0, int(size))
        self._cluster[slot] = cluster
        self._state[slot] = _UNREPORTED
        self.sent += 1

    def record_next(self, now: float, size: int, cluster: int | None = None) -> int:
        """The sender's fast path (once per consumer and packet in the fan-out): take the next
        transport-wide number, record a packet of ``size`` bytes sent at ``now`` (in probe
        cluster ``cluster``, None for media), and return the number's 16-bit value to write
        into the packet."""
        last = self._last
        unwrapped = 0 if last is None else last + 1
        self._last = unwrapped
        slot = unwrapped & self._mask
        self._seq[slot] = unwrapped
        self._time[slot] = now
        self._size[slot] = size
        self._cluster[slot] = cluster
        self._state[slot] = _UNREPORTED
        self.sent += 1
        return unwrapped & 0xFFFF

    def on_report(self, seq: int, arrival: float | None) -> SentPacket | None:
        """A feedback reports ``seq`` (16 bits) arrived at ``arrival`` seconds (None: not
        received). Returns the sent packet when this is news, else None."""
        last = self._last
        if last is None:
            self.unknown += 1
            return None
        unwrapped = last - ((last - seq) & 0xFFFF)  # feedback never reports the future
        slot = unwrapped & self._mask
        if self._seq[slot] != unwrapped:
            self.unknown += 1
            return None
        state = self._state[slot]
        if arrival is None:
            if state != _UNREPORTED:
                self.duplicates += 1
                return None
            self._state[slot] = _LOST
        else:
            if state == _RECEIVED:
                self.duplicates += 1
                return None
            self._state[slot] = _RECEIVED
        return SentPacket(seq & 0xFFFF, self._time[slot], self._size[slot],
                          self._cluster[slot], arrival, state == _LOST)
