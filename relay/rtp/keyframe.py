"""Key-frame detection from RTP payloads (VP8, VP9, H264) and the VP8 payload descriptor.

Every function takes the RTP *payload* (after the RTP header, CSRCs and header
extension, before padding), never raises on malformed input, and answers False / None.

- VP8 (RFC 7741): a key frame starts in the packet with S=1 and PID=0 (start of partition
  0) whose VP8 payload header has P=0 (bit 0 of its first octet, "inverse key frame flag").
- VP9 (RFC 9628, the former draft-ietf-payload-vp9): a key frame starts in the packet with
  B=1 (start of a frame), P=0 (not inter-picture predicted) and, when layer indices are
  present, SID=0 (the base spatial layer). Flexible and non-flexible descriptors are
  walked to check they are complete.
- H264 (RFC 6184): a key frame is a packet carrying an IDR slice (NAL type 5) or an SPS
  (type 7; encoders send SPS/PPS right before each IDR): a single NAL unit, any NAL inside
  a STAP-A (type 24), or the start fragment (S=1) of an FU-A (type 28).
"""

from __future__ import annotations

from dataclasses import dataclass

Payload = bytes | bytearray | memoryview

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28
_H264_KEY_TYPES = (H264_NAL_IDR, H264_NAL_SPS)


@dataclass(frozen=True)
class Vp8Descriptor:
    """The VP8 payload descriptor (RFC 7741 4.2). Absent optional fields are None.

    ``picture_id_bits`` is 7 or 15 when ``picture_id`` is present (the M bit), so a
    rewriter can keep the width. ``size`` is the descriptor's length in bytes: the VP8
    payload (header) starts there.
    """

    non_reference: bool  # N
    start_of_partition: bool  # S
    partition_index: int  # PID
    picture_id: int | None
    picture_id_bits: int | None
    tl0_pic_idx: int | None  # TL0PICIDX
    tid: int | None  # temporal layer index
    layer_sync: bool | None  # Y
    key_idx: int | None  # KEYIDX
    size: int


def parse_vp8_descriptor(payload: Payload) -> Vp8Descriptor | None:
    """Parse the VP8 payload descriptor at the start of ``payload``; None if malformed."""
    n = len(payload)
    if n < 1:
        return None
    b0 = payload[0]
    pos = 1
    picture_id = picture_id_bits = tl0 = tid = key_idx = None
    layer_sync = None
    if b0 & 0x80:  # X: extension octet follows
        if n < 2:
            return None
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: PictureID
            if pos >= n:
                return None
            if payload[pos] & 0x80:  # M: 15-bit PictureID
                if pos + 1 >= n:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                picture_id_bits = 15
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                picture_id_bits = 7
                pos += 1
        if x & 0x40:  # L: TL0PICIDX
            if pos >= n:
                return None
            tl0 = payload[pos]
            pos += 1
        if x & 0x30:  # T and/or K: one octet TID|Y|KEYIDX
            if pos >= n:
                return None
            b = payload[pos]
            if x & 0x20:
                tid = b >> 6
                layer_sync = bool(b & 0x20)
            if x & 0x10:
                key_idx = b & 0x1F
            pos += 1
    if pos > n:
        return None
    return Vp8Descriptor(
        non_reference=bool(b0 & 0x20),
        start_of_partition=bool(b0 & 0x10),
        partition_index=b0 & 0x07,  # 3 bits; 0x08 is reserved, and receivers ignore it
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        tl0_pic_idx=tl0,
        tid=tid,
        layer_sync=layer_sync,
        key_idx=key_idx,
        size=pos,
    )


def is_vp8_keyframe(payload: Payload) -> bool:
    """True if this VP8 packet starts a key frame.

    Walks the descriptor inline rather than through :func:`parse_vp8_descriptor` (it runs
    per video packet; this is ~4x cheaper than building the dataclass)."""
    n = len(payload)
    if n < 2:
        return False
    b0 = payload[0]
    if b0 & 0x17 != 0x10:  # S=1 and PID=0 (the R bit 0x08 is ignored)
        return False
    pos = 1
    if b0 & 0x80:
        x = payload[1]
        pos = 2
        if x & 0x80:
            if pos >= n:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    return pos < n and not payload[pos] & 0x01


def _vp9_descriptor_end(payload: Payload) -> int | None:
    """Length of the VP9 payload descriptor, or None if it is truncated."""
    n = len(payload)
    if n < 1:
        return None
    b0 = payload[0]
    i_bit, p_bit, l_bit, f_bit, v_bit = b0 & 0x80, b0 & 0x40, b0 & 0x20, b0 & 0x10, b0 & 0x02
    pos = 1
    if i_bit:
        if pos >= n:
            return None
        pos += 2 if payload[pos] & 0x80 else 1
    if l_bit:
        pos += 1 if f_bit else 2  # non-flexible mode adds TL0PICIDX
    if f_bit and p_bit:  # up to 3 reference indices, N bit says another follows
        for _ in range(3):
            if pos >= n:
                return None
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if v_bit:  # scalability structure
        if pos >= n:
            return None
        ss = payload[pos]
        pos += 1
        spatial_layers = (ss >> 5) + 1
        if ss & 0x10:  # Y: resolutions
            pos += 4 * spatial_layers
        if ss & 0x08:  # G: picture group description
            if pos >= n:
                return None
            groups = payload[pos]
            pos += 1
            for _ in range(groups):
                if pos >= n:
                    return None
                refs = (payload[pos] >> 2) & 0x03
                pos += 1 + refs
    return pos if pos <= n else None


def is_vp9_keyframe(payload: Payload) -> bool:
    """True if this VP9 packet starts a key frame (of the base spatial layer)."""
    if len(payload) < 1 or _vp9_descriptor_end(payload) is None:
        return False
    b0 = payload[0]
    if b0 & 0x40 or not b0 & 0x08:  # P set, or not the start of a frame
        return False
    if b0 & 0x20:  # L: layer indices; SID is bits 3..1 of that octet
        pos = 1
        if b0 & 0x80:
            pos += 2 if payload[1] & 0x80 else 1
        if (payload[pos] >> 1) & 0x07:
            return False
    return True


def is_h264_keyframe(payload: Payload) -> bool:
    """True if this H264 packet carries an IDR slice or an SPS (start of a key frame)."""
    n = len(payload)
    if n < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_TYPES:
        return True
    if nal_type == H264_STAP_A:
        pos = 1
        while pos + 2 < n:
            size = (payload[pos] << 8) | payload[pos + 1]
            if size == 0 or pos + 2 + size > n:
                return False
            if payload[pos + 2] & 0x1F in _H264_KEY_TYPES:
                return True
            pos += 2 + size
        return False
    if nal_type == H264_FU_A:
        if n < 2:
            return False
        fu_header = payload[1]
        return bool(fu_header & 0x80) and fu_header & 0x1F in _H264_KEY_TYPES
    return False


_DETECTORS = {
    "vp8": is_vp8_keyframe,
    "vp9": is_vp9_keyframe,
    "h264": is_h264_keyframe,
}


def is_keyframe(codec: str, payload: Payload) -> bool:
    """Key-frame detection by codec name (``"VP8"`` or a MIME type like ``"video/H264"``,
    any case). Codecs we cannot inspect answer False."""
    name = codec.rsplit("/", 1)[-1].lower()
    detector = _DETECTORS.get(name)
    return detector(payload) if detector is not None else False


def supports_keyframe_detection(codec: str) -> bool:
    return codec.rsplit("/", 1)[-1].lower() in _DETECTORS
