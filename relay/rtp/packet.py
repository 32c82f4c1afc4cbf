"""RTP and RTCP header parsing on a buffer, by `struct` offsets (RFC 3550, RFC 8285, RFC 4585).

Nothing here builds an object per packet: the hot-path functions take a bytearray/memoryview
and a length and return ints (offsets, -1 for a malformed packet), or rewrite bytes in place.
The builders (`build_rtp`, `build_pli`) and `parse_extensions` are control-path helpers, used by
tests, benchmarks and RTCP feedback.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

RTP_HEADER_SIZE = 12
RTP_VERSION = 2
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # RFC 8285 §4.3: 0x100 in the top 12 bits, "appbits" in the low 4
TWO_BYTE_PROFILE_MASK = 0xFFF0
ONE_BYTE_MAX_ID = 14  # 15 is reserved and stops parsing (RFC 8285 §4.2)

RTCP_PT_SR = 200
RTCP_PT_RR = 201
RTCP_PT_RTPFB = 205
RTCP_PT_PSFB = 206
PSFB_FMT_PLI = 1
PSFB_FMT_FIR = 4

# seq (16), timestamp (32), ssrc (32) at offset 2; the hot path reads them with one call.
RTP_SEQ_TS_SSRC = struct.Struct("!HII")
# byte 1 (marker | payload type), seq, timestamp, ssrc at offset 1: one call rewrites them.
RTP_B1_SEQ_TS_SSRC = struct.Struct("!BHII")
_U16_U16 = struct.Struct("!HH")
_RTCP_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_PLI = struct.Struct("!BBHII")


def is_rtcp(second_byte: int) -> bool:
    """RFC 5761 §4: with the marker bit masked, RTCP packet types 192–223 read as 64–95."""
    return 64 <= (second_byte & 0x7F) <= 95


def rtp_payload_offset(buf: bytearray | memoryview | bytes, length: int) -> int:
    """Validate the RTP header of `buf[:length]`; return the payload offset, or -1 if malformed.

    Checks: version 2, room for the CSRC list and the extension header and its declared length,
    and a padding count that fits (non-zero, not eating into the header).
    """
    if length < RTP_HEADER_SIZE:
        return -1
    b0 = buf[0]
    if b0 >> 6 != RTP_VERSION:
        return -1
    offset = RTP_HEADER_SIZE + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if offset + 4 > length:
            return -1
        offset += 4 + (_U16_U16.unpack_from(buf, offset)[1] << 2)
    if offset > length:
        return -1
    if b0 & 0x20:
        padding = buf[length - 1]
        if padding == 0 or offset + padding > length:
            return -1
    return offset


def extension_bounds(buf: bytearray | memoryview | bytes, length: int) -> tuple[int, int, int]:
    """(profile, start, end) of the header-extension data of a *validated* packet, or
    (0, 0, 0) when it has none."""
    b0 = buf[0]
    if not b0 & 0x10:
        return 0, 0, 0
    offset = RTP_HEADER_SIZE + ((b0 & 0x0F) << 2)
    profile, words = _U16_U16.unpack_from(buf, offset)
    return profile, offset + 4, offset + 4 + (words << 2)


def rewrite_extension_ids(
    buf: bytearray | memoryview, start: int, end: int, profile: int, table: bytes
) -> bool:
    """Rewrite the ids of the RFC 8285 elements in `buf[start:end]` in place through `table`
    (256 entries: old id → new id; 0 = not negotiated by the receiver).

    An element whose new id is 0, or above 14 in the one-byte form (which can't carry it), is
    overwritten with zero bytes: zeros are padding in both forms, so the packet keeps its length
    and the receiver skips them. Returns False if the element list is malformed (the packet must
    then be dropped). A profile that is neither form is left alone (opaque to us).
    """
    i = start
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = buf[i]
            if b == 0:  # padding
                i += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:  # reserved: stop parsing, keep the rest as is
                return True
            size = (b & 0x0F) + 1
            if i + 1 + size > end:
                return False
            new_id = table[ext_id]
            if new_id != ext_id:
                if new_id == 0 or new_id > ONE_BYTE_MAX_ID:
                    buf[i : i + 1 + size] = bytes(1 + size)
                else:
                    buf[i] = (new_id << 4) | (b & 0x0F)
            i += 1 + size
        return True
    if profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while i < end:
            ext_id = buf[i]
            if ext_id == 0:  # padding
                i += 1
                continue
            if i + 2 > end:
                return False
            size = buf[i + 1]
            if i + 2 + size > end:
                return False
            new_id = table[ext_id]
            if new_id != ext_id:
                if new_id == 0:
                    buf[i : i + 2 + size] = bytes(2 + size)
                else:
                    buf[i] = new_id
            i += 2 + size
        return True
    return True


def parse_extensions(buf: bytearray | memoryview | bytes, length: int) -> dict[int, bytes]:
    """id → value of every extension element of a packet (control path: tests, debugging).
    Raises ValueError on a malformed packet."""
    if rtp_payload_offset(buf, length) < 0:
        raise ValueError("malformed RTP packet")
    profile, start, end = extension_bounds(buf, length)
    result: dict[int, bytes] = {}
    i = start
    one_byte = profile == ONE_BYTE_PROFILE
    if not one_byte and profile & TWO_BYTE_PROFILE_MASK != TWO_BYTE_PROFILE:
        return result
    while i < end:
        if buf[i] == 0:
            i += 1
            continue
        if one_byte:
            ext_id, size, head = buf[i] >> 4, (buf[i] & 0x0F) + 1, 1
            if ext_id == 15:
                break
        else:
            if i + 2 > end:
                raise ValueError("truncated two-byte extension element")
            ext_id, size, head = buf[i], buf[i + 1], 2
        if i + head + size > end:
            raise ValueError("extension element overruns the extension block")
        result[ext_id] = bytes(buf[i + head : i + head + size])
        i += head + size
    return result


def build_rtp(
    *,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes = b"",
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extensions: Mapping[int, bytes] | None = None,
    two_byte_extensions: bool = False,
    padding: int = 0,
) -> bytes:
    """Build an RTP packet (control path: tests, benchmarks)."""
    ext_block = b""
    if extensions:
        body = bytearray()
        for ext_id, value in extensions.items():
            if two_byte_extensions:
                body += bytes((ext_id, len(value))) + value
            else:
                if not 1 <= ext_id <= ONE_BYTE_MAX_ID or not 1 <= len(value) <= 16:
                    raise ValueError("one-byte extension ids are 1–14, values 1–16 bytes")
                body += bytes(((ext_id << 4) | (len(value) - 1),)) + value
        body += bytes(-len(body) % 4)
        profile = TWO_BYTE_PROFILE if two_byte_extensions else ONE_BYTE_PROFILE
        ext_block = _U16_U16.pack(profile, len(body) // 4) + bytes(body)
    b0 = (RTP_VERSION << 6) | (0x20 if padding else 0) | (0x10 if ext_block else 0) | len(csrcs)
    b1 = (0x80 if marker else 0) | payload_type
    header = struct.pack("!BBHII", b0, b1, sequence_number & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    header += b"".join(_U32.pack(c) for c in csrcs)
    tail = bytes(padding - 1) + bytes((padding,)) if padding else b""
    return header + ext_block + payload + tail


def iter_rtcp(buf: bytearray | memoryview | bytes, length: int) -> Iterator[tuple[int, int, int, int]]:
    """Walk a compound RTCP packet: yield (packet type, count/FMT, offset, size) per packet.
    Stops silently at the first malformed header (the caller counts what it got)."""
    offset = 0
    while offset + 4 <= length:
        b0, pt, words = _RTCP_HEADER.unpack_from(buf, offset)
        size = (words + 1) << 2
        if b0 >> 6 != RTP_VERSION or offset + size > length:
            return
        yield pt, b0 & 0x1F, offset, size
        offset += size


def keyframe_request_ssrcs(buf: bytearray | memoryview | bytes, length: int) -> list[int]:
    """Media SSRCs for which a compound RTCP packet asks a key frame (PLI, or FIR entries)."""
    ssrcs: list[int] = []
    for pt, fmt, offset, size in iter_rtcp(buf, length):
        if pt != RTCP_PT_PSFB:
            continue
        if buf[offset] & 0x20:  # padding (RFC 3550 6.4.1): its last octet counts it
            padding = buf[offset + size - 1]
            if not 0 < padding <= size - 4:
                continue
            size -= padding
        if fmt == PSFB_FMT_PLI and size >= 12:
            ssrcs.append(_U32.unpack_from(buf, offset + 8)[0])
        elif fmt == PSFB_FMT_FIR:
            # FCI entries of 8 bytes (SSRC, seq nr, reserved) after the 12-byte common part.
            for entry in range(offset + 12, offset + size - 7, 8):
                ssrcs.append(_U32.unpack_from(buf, entry)[0])
    return ssrcs


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RTCP PSFB, FMT=1 (Picture Loss Indication, RFC 4585 §6.3.1): 12 bytes."""
    return _PLI.pack((RTP_VERSION << 6) | PSFB_FMT_PLI, RTCP_PT_PSFB, 2, sender_ssrc, media_ssrc)
