"""A consumer's retransmission store, and RTX packets built from it (RFC 4588).

:class:`NackBuffer` keeps the last packets a consumer sent, keyed by their *output*
sequence number, so a NACK from the consumer's remote can be answered. It is bounded twice:

- by count: a fixed array of ``capacity`` slots indexed by ``extended_seq % capacity``
  (O(1) insert and lookup, no per-packet allocation besides the stored bytes);
- by age: a packet stored more than ``max_age`` seconds ago is not returned.

Defaults (see :meth:`NackBuffer.for_video` / :meth:`NackBuffer.for_audio`):

- video: 2500 packets / 2.0 s. 2500 packets cover 2 s up to ~12 Mbit/s at 1200-byte
  packets, more than any simulcast layer we forward; beyond 2 s a retransmission is too late
  to help a real-time receiver (its jitter buffer has given up and asked for a key frame).
- audio: 500 packets / 1.0 s. Opus at 20 ms is 50 packets/s (ptime 10 ms: 100/s), so the
  age bound always decides; audio older than 1 s is useless to a receiver.

Sequence numbers are 16-bit on the wire and extended internally against the newest stored
one, so wrap-around at 65535 is seamless. Times are seconds on a monotonic clock
(``loop.time()``), passed in as ``now``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VIDEO_CAPACITY = 2500
VIDEO_MAX_AGE = 2.0
AUDIO_CAPACITY = 500
AUDIO_MAX_AGE = 1.0


@dataclass
class NackBufferStats:
    """What the buffer did. ``misses`` split by cause:

    - ``too_old``: the packet is still within the count window but older than ``max_age``;
    - ``evicted``: more than ``capacity`` packets newer than it were stored since (its slot
      has been reused, or would have been);
    - ``not_stored``: never stored (a gap in the output numbering, a sequence number ahead of
      the newest stored one, or a packet the buffer refused).
    """

    stored: int = 0
    hits: int = 0
    too_old: int = 0
    evicted: int = 0
    not_stored: int = 0

    @property
    def misses(self) -> int:
        return self.too_old + self.evicted + self.not_stored


class NackBuffer:
    """Bounded store of sent packets by output sequence number. See the module doc."""

    def __init__(self, capacity: int = VIDEO_CAPACITY, max_age: float = VIDEO_MAX_AGE) -> None:
        if capacity <= 0 or capacity > 32768:
            raise ValueError("capacity must be 1..32768 (half the 16-bit sequence space)")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.capacity = capacity
        self.max_age = max_age
        self._seqs: list[int] = [-1] * capacity  # extended seq stored in each slot, -1 = empty
        self._packets: list[bytes | None] = [None] * capacity
        self._times: list[float] = [0.0] * capacity
        self._highest = -1  # highest extended seq stored, -1 = nothing yet
        self.stats = NackBufferStats()

    @classmethod
    def for_video(cls) -> NackBuffer:
        return cls(VIDEO_CAPACITY, VIDEO_MAX_AGE)

    @classmethod
    def for_audio(cls) -> NackBuffer:
        return cls(AUDIO_CAPACITY, AUDIO_MAX_AGE)

    def _extend(self, seq: int) -> int:
        """The extended sequence number of 16-bit ``seq`` closest to the newest stored one."""
        if self._highest < 0:
            return seq + (1 << 16)  # start one cycle up so a packet just before still extends >= 0
        delta = (seq - self._highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return self._highest + delta

    def store(self, seq: int, packet: bytes | bytearray | memoryview, now: float) -> None:
        """Store a sent packet (copied unless it is already ``bytes``) under output ``seq``.

        Packets more than ``capacity`` behind the newest stored one are ignored.
        """
        # Hot path (every packet of every consumer): _extend() is inlined.
        highest = self._highest
        if highest < 0:
            ext = self._highest = (seq & 0xFFFF) + (1 << 16)
        else:
            delta = (seq - highest) & 0xFFFF
            if delta >= 0x8000:
                delta -= 0x10000
                if delta <= -self.capacity:
                    return
            ext = highest + delta
            if delta > 0:
                self._highest = ext
        slot = ext % self.capacity
        self._seqs[slot] = ext
        self._packets[slot] = packet if type(packet) is bytes else bytes(packet)
        self._times[slot] = now
        self.stats.stored += 1

    def get(self, seq: int, now: float) -> bytes | None:
        """The stored packet with output sequence number ``seq``, or None (counted by cause)."""
        stats = self.stats
        if self._highest < 0:
            stats.not_stored += 1
            return None
        ext = self._extend(seq & 0xFFFF)
        if ext > self._highest:
            stats.not_stored += 1
            return None
        if ext <= self._highest - self.capacity:
            stats.evicted += 1
            return None
        slot = ext % self.capacity
        if self._seqs[slot] != ext:
            stats.not_stored += 1
            return None
        if now - self._times[slot] > self.max_age:
            # Free the memory now rather than when the slot is reused.
            self._seqs[slot] = -1
            self._packets[slot] = None
            stats.too_old += 1
            return None
        stats.hits += 1
        return self._packets[slot]

    def clear(self) -> None:
        """Forget every packet (e.g. when the consumer's output stream restarts)."""
        self._seqs = [-1] * self.capacity
        self._packets = [None] * self.capacity
        self._highest = -1

    def __len__(self) -> int:
        """Packets currently held (age not considered)."""
        return sum(1 for s in self._seqs if s >= 0)


class RtpHeaderError(ValueError):
    """The bytes are not a well-formed RTP packet."""


def rtp_payload_bounds(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(start, end) of the payload of an RTP packet: after CSRCs and the header extension,
    before padding. Raises :class:`RtpHeaderError` if malformed."""
    length = len(packet)
    if length < 12 or packet[0] >> 6 != 2:
        raise RtpHeaderError("not an RTP packet")
    start = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if start + 4 > length:
            raise RtpHeaderError("header extension truncated")
        start += 4 + 4 * ((packet[start + 2] << 8) | packet[start + 3])
    end = length
    if packet[0] & 0x20:
        pad = packet[-1]
        if pad == 0:
            raise RtpHeaderError("bad padding")
        end -= pad
    if start > end:
        raise RtpHeaderError("header longer than packet")
    return start, end


def make_rtx_packet(
    packet: bytes | bytearray | memoryview, rtx_ssrc: int, rtx_payload_type: int, rtx_seq: int
) -> bytes:
    """Wrap an RTP packet into an RTX packet (RFC 4588 4).

    The RTX packet keeps the original's marker bit, timestamp, CSRCs and header extensions;
    it gets the RTX payload type, the RTX SSRC and the RTX sequence number, and its payload
    is the original sequence number (2 bytes) followed by the original payload. Padding of
    the original is dropped (and the P bit cleared). Raises :class:`RtpHeaderError`.
    """
    start, end = rtp_payload_bounds(packet)
    out = bytearray(start + 2 + end - start)
    out[:start] = packet[:start]
    out[0] &= ~0x20 & 0xFF  # no padding
    out[1] = (packet[1] & 0x80) | (rtx_payload_type & 0x7F)
    struct.pack_into("!H", out, 2, rtx_seq & 0xFFFF)
    struct.pack_into("!I", out, 8, rtx_ssrc & 0xFFFFFFFF)
    out[start : start + 2] = packet[2:4]  # original sequence number (OSN)
    out[start + 2 :] = packet[start:end]
    return bytes(out)


def parse_rtx_packet(
    packet: bytes | bytearray | memoryview, original_payload_type: int, original_ssrc: int
) -> bytes:
    """Unwrap an RTX packet back into the original RTP packet (the receiver side of RFC
    4588, for a producer's RTX stream). Raises :class:`RtpHeaderError`."""
    start, end = rtp_payload_bounds(packet)
    if end - start < 2:
        raise RtpHeaderError("RTX payload has no original sequence number")
    out = bytearray(packet[:start])
    out[0] &= ~0x20 & 0xFF
    out[1] = (packet[1] & 0x80) | (original_payload_type & 0x7F)
    out[2:4] = packet[start : start + 2]
    struct.pack_into("!I", out, 8, original_ssrc & 0xFFFFFFFF)
    out += packet[start + 2 : end]
    return bytes(out)


class RtxStream:
    """An outgoing RTX stream: its SSRC, payload type and own sequence numbers.

    ``initial_seq`` should be random (RFC 3550 5.1); it is a parameter so tests are exact.
    """

    def __init__(self, ssrc: int, payload_type: int, initial_seq: int = 0) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.next_seq = initial_seq & 0xFFFF
        self.packets_sent = 0

    def wrap(self, packet: bytes | bytearray | memoryview) -> bytes:
        """The RTX packet for ``packet``, using and advancing the RTX sequence number.
        Raises :class:`RtpHeaderError` (and uses no sequence number) if malformed."""
        rtx = make_rtx_packet(packet, self.ssrc, self.payload_type, self.next_seq)
        self.next_seq = (self.next_seq + 1) & 0xFFFF
        self.packets_sent += 1
        return rtx
