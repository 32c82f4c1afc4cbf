"""What the worker learns from one producer stream besides forwarding it: receive statistics
for RR, loss detection for NACK upstream, key-frame detection, a shared retransmission store
and the stream's score.

One `StreamReceiver` per producer encoding. `on_packet()` runs once per inbound packet
(never per consumer), so its cost does not grow with the fan-out:

- `ReceiveStats` (RFC 3550 A.1/A.8): extended highest seq, cumulative/fraction loss, jitter;
- `NackGenerator` when the producer negotiated "nack" (gaps → NACK upstream, bounded retries);
- key-frame detection per codec (`relay.rtp.keyframe`) for video;
- the *shared* retransmission store: when any consumer of the stream negotiated NACK, every
  inbound packet is stored once, as one immutable `bytes`, keyed by its input sequence
  number; a consumer answering a NACK maps its output seq back to the input seq and rewrites
  a copy (see `relay.worker.retransmission`). Sizes: `NackBuffer.for_video()` (2500 packets,
  2 s) for video, `NackBuffer.for_audio()` (500 packets, 1 s) for audio.
"""

from __future__ import annotations

from relay.rtp.keyframe import is_h264_keyframe, is_vp8_keyframe, is_vp9_keyframe
from relay.rtp.nack_buffer import NackBuffer
from relay.rtp.nack_generator import NackGenerator
from relay.rtp.packet import rtp_payload_offset
from relay.rtp.receive_stats import ReceiveStats
from relay.rtp.score import StreamScore

_DETECTORS = {"vp8": is_vp8_keyframe, "vp9": is_vp9_keyframe, "h264": is_h264_keyframe}


class StreamReceiver:
    """Quality bookkeeping of one producer stream (see the module doc)."""

    __slots__ = (
        "kind", "codec", "stats", "nack", "store", "score", "detector",
        "keyframes", "last_keyframe_time", "rtx_packets", "bitrate", "_bitrate_bytes",
        "_bitrate_time", "rtt",
    )

    def __init__(self, kind: str, mime_type: str, clock_rate: int, nack: bool) -> None:
        self.kind = kind
        self.codec = mime_type
        self.stats = ReceiveStats(clock_rate)
        self.nack: NackGenerator | None = (
            NackGenerator(keyframe_on_unrecoverable=kind == "video") if nack else None
        )
        self.store: NackBuffer | None = None  # set while a consumer of the stream uses NACK
        self.score = StreamScore()
        name = mime_type.rsplit("/", 1)[-1].lower()
        self.detector = _DETECTORS.get(name) if kind == "video" else None
        self.keyframes = 0
        self.last_keyframe_time: float | None = None
        self.rtx_packets = 0  # RTX packets unwrapped into this stream
        self.bitrate = 0
        self._bitrate_bytes = 0
        self._bitrate_time: float | None = None
        self.rtt: float | None = None  # seconds, from the sender's XR DLRR (RFC 3611)

    def enable_store(self, enabled: bool) -> None:
        if enabled and self.store is None:
            self.store = NackBuffer.for_video() if self.kind == "video" else NackBuffer.for_audio()
        elif not enabled:
            self.store = None

    def on_packet(
        self, buf: memoryview, n: int, seq: int, ts: int, now: float, rtx: bool = False
    ) -> tuple[bool, list[int] | None]:
        """Account one inbound packet; returns (is it the start of a key frame, sequence
        numbers to NACK at once or None)."""
        self.stats.on_packet(seq, ts, now, n, rtx)
        keyframe = False
        detector = self.detector
        if detector is not None:
            offset = rtp_payload_offset(buf, n)
            if offset > 0 and detector(buf[offset:n]):
                keyframe = True
                self.keyframes += 1
                self.last_keyframe_time = now
        store = self.store
        if store is not None:
            store.store(seq, bytes(buf[:n]), now)
        lost = None
        nack = self.nack
        if nack is not None:
            lost = nack.on_packet(seq, now, keyframe) or None
        return keyframe, lost

    def reset(self) -> None:
        """The stream's SSRC changed (the sender restarted): forget its numbering."""
        clock_rate = self.stats.clock_rate
        self.stats = ReceiveStats(clock_rate)
        if self.nack is not None:
            self.nack = NackGenerator(keyframe_on_unrecoverable=self.kind == "video")
        if self.store is not None:
            self.store.clear()

    def update_bitrate(self, now: float) -> int:
        """Bits per second received since the previous call (control path)."""
        total = self.stats.bytes_received
        if self._bitrate_time is not None and now > self._bitrate_time:
            self.bitrate = int((total - self._bitrate_bytes) * 8 / (now - self._bitrate_time))
        self._bitrate_bytes = total
        self._bitrate_time = now
        return self.bitrate
