"""What the worker learns from one producer stream besides forwarding it: receive statistics
for RR, loss detection for NACK upstream, key-frame detection, a shared retransmission store
and the stream's score.

One `StreamReceiver` per producer encoding. `on_packet()` runs once per inbound packet
(never per consumer), so its cost does not grow with the fan-out:

- `ReceiveStats` (RFC 3550 A.1/A.8): extended highest seq, cumulative/fraction loss, jitter;
- `NackGenerator` when the producer negotiated "nack" (gaps → NACK upstream, bounded retries);
- key-frame detection per codec (`relay.rtp.keyframe`) for video;
- the bytes of each VP8 temporal layer, so the bitrate allocation knows what each costs
  (`temporal_bitrates`): the TID is read once per frame (the first packet with a new RTP
  timestamp), in the same walk of the payload descriptor as the key-frame test; other
  codecs, and VP8 without a TID, are one layer;
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
        "_bitrate_time", "rtt", "_vp8", "_frame_ts", "_frame_tid", "_tid_bytes", "_tid_marks",
        "_tid_shares",
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
        self._vp8 = self.detector is is_vp8_keyframe
        self._frame_ts = -1  # RTP timestamp of the latest VP8 frame whose TID was read
        self._frame_tid = 0  # ... its TID
        self._tid_bytes = [0, 0, 0, 0]  # per VP8 TID (2 bits), since the start
        self._tid_marks = [0, 0, 0, 0]  # ... at the previous update_bitrate
        # Per TID: its smoothed share of the stream's bytes; [1.0]: one layer
        self._tid_shares: list[float] = [1.0]

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
            if self._vp8 and ts != self._frame_ts and 0 < offset < n - 1:
                keyframe = self._vp8_frame_start(buf, n, offset, ts)
            elif offset > 0 and detector(buf[offset:n]):
                keyframe = True
            if keyframe:
                self.keyframes += 1
                self.last_keyframe_time = now
            if self._vp8:
                self._tid_bytes[self._frame_tid] += n
        store = self.store
        if store is not None:
            store.store(seq, bytes(buf[:n]), now)
        lost = None
        nack = self.nack
        if nack is not None:
            lost = nack.on_packet(seq, now, keyframe) or None
        return keyframe, lost

    def _vp8_frame_start(self, buf: memoryview, n: int, offset: int, ts: int) -> bool:
        """The first packet seen of a VP8 frame (a new timestamp): one walk of its payload
        descriptor (RFC 7741 4.2) gives the frame's TID (0 without one; every packet of the
        frame has it) and whether it starts a key frame (as `is_vp8_keyframe`, which the
        frame's other packets still go through: it returns early for most). Cheaper than
        both walks: the first packet of a frame costs what the key-frame test alone did."""
        self._frame_ts = ts
        tid = 0
        b0 = buf[offset]
        pos = offset + 1
        if b0 & 0x80:  # X: I (1-2 octet PictureID), L (TL0PICIDX), T|K (TID/Y/KEYIDX)
            x = buf[pos]
            pos += 1
            if x & 0x80 and pos < n:
                pos += 2 if buf[pos] & 0x80 else 1
            if x & 0x40:
                pos += 1
            if x & 0x30:
                if x & 0x20 and pos < n:
                    tid = buf[pos] >> 6
                pos += 1
        self._frame_tid = tid
        # S=1 and PID=0, and the VP8 payload header's P bit clear
        return b0 & 0x17 == 0x10 and pos < n and not buf[pos] & 0x01

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
        if self._vp8:
            self._update_tid_shares()
        return self.bitrate

    def _update_tid_shares(self) -> None:
        """Each temporal layer's share of the bytes since the previous call, smoothed (a key
        frame, all TL0, would swing one interval): layers up to the highest TID that carried
        bytes in this interval count, the rest stopped (or never were)."""
        counts = [b - m for b, m in zip(self._tid_bytes, self._tid_marks, strict=True)]
        self._tid_marks = list(self._tid_bytes)
        total = sum(counts)
        if total <= 0:
            return
        top = max(t for t, c in enumerate(counts) if c > 0)
        old = self._tid_shares
        shares = []
        for t in range(top + 1):
            share = counts[t] / total
            if len(old) == top + 1:
                share = (share + old[t]) / 2
            shares.append(share)
        self._tid_shares = shares

    def temporal_bitrates(self) -> list[int]:
        """Bits per second of this stream up to and including each temporal layer (T0,
        T0+T1, ...; the last is the whole stream's `bitrate`); one entry for a stream
        without temporal layers (control path)."""
        bitrates = []
        cumulative = 0.0
        for share in self._tid_shares[:-1]:
            cumulative += share
            bitrates.append(int(self.bitrate * cumulative))
        bitrates.append(self.bitrate)
        return bitrates
