"""Sequence-number and timestamp continuity for forwarded RTP (mediasoup's SeqManager idea):
the input half.

`InputStream` is what the producer saw of one incoming stream (its SSRC, highest sequence
number and its timestamp, when that arrived), updated once per inbound packet. The output
half, one consumer's `RtpRewriter` (its offsets and the rules that choose them at every
(re)start), is C: `relay.uring.rewriter`, which reads an InputStream when its consumer stops.
"""

from __future__ import annotations

SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF
# A backward jump larger than this is a sender restart (new max), not a reordered packet
# (RFC 3550 A.1 uses 100 for MAX_MISORDER; a little more slack costs nothing here).
MAX_MISORDER = 1000
NO_PAYLOAD_TYPE = 0xFF  # payload-type table entry: this consumer doesn't take that codec


class InputStream:
    """One incoming RTP stream as a producer sees it."""

    __slots__ = ("ssrc", "max_seq", "max_ts", "last_time", "started")

    def __init__(self, ssrc: int = 0) -> None:
        self.ssrc = ssrc
        self.max_seq = 0
        self.max_ts = 0
        self.last_time = 0.0
        self.started = False

    def update(self, seq: int, ts: int, now: float) -> bool:
        """Record a packet; return True if it is older than (or a duplicate of) the highest."""
        if not self.started:
            self.started = True
        else:
            delta = (seq - self.max_seq) & SEQ_MASK
            if delta == 0:
                return True
            if delta >= 0x8000 and SEQ_MASK + 1 - delta <= MAX_MISORDER:
                return True
        self.max_seq = seq
        self.max_ts = ts
        self.last_time = now
        return False

    def reset(self, ssrc: int) -> None:
        """The stream now carries another SSRC (the sender restarted)."""
        self.ssrc = ssrc
        self.started = False
