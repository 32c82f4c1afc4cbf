"""RTCP packets: parse and build compound RTCP (RFC 3550, 3611, 4585, 5104, REMB, transport-cc).

Control path, written for clarity. Every packet type is a small dataclass with
``serialize() -> bytes``; :func:`parse_compound` turns a compound packet into a list of them
and :func:`build_compound` concatenates them back.

What is understood:

=========  ====  ===  ===========================================================
type       PT    FMT  class
=========  ====  ===  ===========================================================
SR         200        :class:`SenderReport` (report blocks; profile extensions dropped)
RR         201        :class:`ReceiverReport`
SDES       202        :class:`SourceDescription` (CNAME kept, other items kept raw)
BYE        203        :class:`Bye`
RTPFB      205   1    :class:`Nack` (generic NACK, PID+BLP)
RTPFB      205   15   :class:`TransportFeedback` (transport-cc, kept as raw bytes)
PSFB       206   1    :class:`Pli`
PSFB       206   4    :class:`Fir`
PSFB       206   15   :class:`Remb` (only when the FCI starts with ``"REMB"``)
XR         207        :class:`ExtendedReport` (RFC 3611: RRTR and DLRR blocks; others
                      counted in ``other_blocks``)
=========  ====  ===  ===========================================================

APP (204), other feedback formats (TMMBR, SLI, RPSI, non-REMB AFB, ...) and unknown packet
types are recognised by their header, skipped, and counted in
:attr:`ParsedCompound.skipped`; they never raise. An XR whose blocks overrun it or have
the wrong size for their type is skipped and counted in :attr:`ParsedCompound.malformed_xr`
(the rest of the compound is still read).

Malformed input raises :class:`RtcpParseError` (a ``ValueError``) and nothing else. Each
loop step advances by the header's length field, which is at least 4 bytes, and every read
is bounds-checked first, so parsing always terminates.

Note: we deliberately do not reuse ``aiortc.rtp``'s RTCP classes: they read every RTPFB
packet as a NACK (so transport-cc feedback turns into garbage NACKs) and silently drop
APP/XR, which a caller could then neither count nor pass on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTCP_XR = 207

RTPFB_NACK = 1
RTPFB_TRANSPORT_CC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15

XR_RRTR = 4  # RFC 3611 4.4 Receiver Reference Time Report block
XR_DLRR = 5  # RFC 3611 4.5 DLRR block

SDES_END = 0
SDES_CNAME = 1

# The sender SSRC of the RTCP the relay sends as a receiver (RR, NACK, PLI, FIR, XR): a
# fixed non-zero value as mediasoup does (some stacks ignore feedback from SSRC 0). It lies
# outside the range the controller draws media SSRCs from (`relay.controller.ortc`), and the worker
# refuses a consumer SSRC equal to it, so it never collides with media we send.
RECEIVER_RTCP_SSRC = 0x52454C59  # "RELY"; above the controller's range (< 10**9)

_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IQIII")  # sender ssrc, ntp, rtp ts, packet count, octet count
_FB_HEADER = struct.Struct("!II")  # sender ssrc, media ssrc
_DLRR_SUB = struct.Struct("!III")  # ssrc, last RR (LRR), delay since last RR (DLRR)
_MAX_COUNT = 31  # 5-bit count field in the common header


class RtcpParseError(ValueError):
    """Raised for malformed RTCP. The only exception :func:`parse_compound` raises."""


def _header(count_or_fmt: int, packet_type: int, body_len: int, padding: bool = False) -> bytes:
    """The 4-byte common header for a packet whose body (after the header) is ``body_len``."""
    if body_len % 4:
        raise ValueError("RTCP body must be a multiple of 4 bytes")
    return _HEADER.pack(0x80 | (0x20 if padding else 0) | count_or_fmt, packet_type, body_len // 4)


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


@dataclass
class ReportBlock:
    """One reception report block (RFC 3550 6.4.1), 24 bytes on the wire.

    ``packets_lost`` is the signed 24-bit cumulative number of packets lost (clamped on
    build); ``fraction_lost`` is the 8-bit fixed-point fraction (lost/expected * 256);
    ``lsr`` and ``dlsr`` are in compact NTP (1/65536 s) units.
    """

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def serialize(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            self.fraction_lost & 0xFF,
            lost.to_bytes(3, "big"),
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes | memoryview, pos: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        packets_lost = int.from_bytes(lost, "big")
        if packets_lost & 0x800000:
            packets_lost -= 0x1000000
        return cls(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr)


def _check_report_count(reports: Sequence[ReportBlock]) -> None:
    if len(reports) > _MAX_COUNT:
        raise ValueError("at most 31 report blocks per SR/RR")


@dataclass
class SenderReport:
    """SR (PT 200). ``ntp_timestamp`` is the full 64-bit NTP timestamp."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        _check_report_count(self.reports)
        body = _SR_INFO.pack(
            self.ssrc,
            self.ntp_timestamp & 0xFFFFFFFFFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        ) + b"".join(r.serialize() for r in self.reports)
        return _header(len(self.reports), RTCP_SR, len(body)) + body


@dataclass
class ReceiverReport:
    """RR (PT 201)."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        _check_report_count(self.reports)
        body = struct.pack("!I", self.ssrc) + b"".join(r.serialize() for r in self.reports)
        return _header(len(self.reports), RTCP_RR, len(body)) + body


@dataclass
class SdesChunk:
    """One SDES chunk: a source and its items as (type, value) pairs, in wire order."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for item_type, value in self.items:
            if not 0 < item_type < 256 or len(value) > 255:
                raise ValueError("SDES item type must be 1..255 and value at most 255 bytes")
            out += bytes((item_type, len(value))) + value
        # At least one null octet ends the item list, then pad the chunk to 32 bits.
        out += b"\x00"
        return _pad4(bytes(out))


@dataclass
class SourceDescription:
    """SDES (PT 202)."""

    chunks: list[SdesChunk] = field(default_factory=list)

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls([SdesChunk(ssrc, [(SDES_CNAME, cname.encode())])])

    def serialize(self) -> bytes:
        if len(self.chunks) > _MAX_COUNT:
            raise ValueError("at most 31 SDES chunks per packet")
        body = b"".join(c.serialize() for c in self.chunks)
        return _header(len(self.chunks), RTCP_SDES, len(body)) + body


@dataclass
class Bye:
    """BYE (PT 203)."""

    sources: list[int] = field(default_factory=list)
    reason: str | None = None

    def serialize(self) -> bytes:
        if len(self.sources) > _MAX_COUNT:
            raise ValueError("at most 31 sources per BYE")
        body = b"".join(struct.pack("!I", s) for s in self.sources)
        if self.reason is not None:
            text = self.reason.encode()[:255]
            body += _pad4(bytes((len(text),)) + text)
        return _header(len(self.sources), RTCP_BYE, len(body)) + body


def pack_nack_fci(lost: Iterable[int]) -> list[tuple[int, int]]:
    """Pack lost sequence numbers into (PID, BLP) pairs (RFC 4585 6.2.1).

    Sequence numbers are taken in the order given (give them oldest first, as a NACK
    generator produces them, for the fewest pairs): a number 1..16 after the current PID
    sets BLP bit (n - PID - 1), anything else starts a new pair. Duplicates are harmless.

    A BLP bit never reaches across the 65535 -> 0 wrap: a new pair starts at 0 instead.
    That is valid RFC 4585 either way, but aiortc (1.16) expands PID + bit without the
    modulo and would look up sequence number 65536, so it never retransmits those.
    """
    pairs: list[list[int]] = []
    for seq in lost:
        seq &= 0xFFFF
        if pairs:
            delta = (seq - pairs[-1][0]) & 0xFFFF
            if delta == 0:
                continue
            if delta <= 16 and pairs[-1][0] + delta <= 0xFFFF:
                pairs[-1][1] |= 1 << (delta - 1)
                continue
        pairs.append([seq, 0])
    return [(pid, blp) for pid, blp in pairs]


def unpack_nack_fci(pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Expand (PID, BLP) pairs into the sequence numbers they name, in order."""
    out: list[int] = []
    for pid, blp in pairs:
        out.append(pid)
        for bit in range(16):
            if blp & (1 << bit):
                out.append((pid + bit + 1) & 0xFFFF)
    return out


@dataclass
class Nack:
    """Generic NACK (RTPFB FMT 1): the sequence numbers ``lost`` of ``media_ssrc``."""

    sender_ssrc: int
    media_ssrc: int
    lost: list[int] = field(default_factory=list)

    def serialize(self) -> bytes:
        fci = b"".join(struct.pack("!HH", pid, blp) for pid, blp in pack_nack_fci(self.lost))
        body = _FB_HEADER.pack(self.sender_ssrc, self.media_ssrc) + fci
        return _header(RTPFB_NACK, RTCP_RTPFB, len(body)) + body


@dataclass
class TransportFeedback:
    """transport-cc feedback (RTPFB FMT 15): not interpreted; ``data`` is the whole packet
    exactly as received, so it can be passed through untouched."""

    sender_ssrc: int
    media_ssrc: int
    data: bytes

    def serialize(self) -> bytes:
        return self.data


@dataclass
class Pli:
    """Picture Loss Indication (PSFB FMT 1)."""

    sender_ssrc: int
    media_ssrc: int

    def serialize(self) -> bytes:
        body = _FB_HEADER.pack(self.sender_ssrc, self.media_ssrc)
        return _header(PSFB_PLI, RTCP_PSFB, len(body)) + body


@dataclass
class Fir:
    """Full Intra Request (PSFB FMT 4, RFC 5104 4.3.1): ``entries`` are (ssrc, seq nr).

    The command sequence number is 8 bits and must be incremented for each new request to
    the same source (repetitions of one request keep it).
    """

    sender_ssrc: int
    entries: list[tuple[int, int]] = field(default_factory=list)

    def serialize(self) -> bytes:
        # The media source field of a FIR is unused and set to 0 (RFC 5104 4.3.1.2).
        body = _FB_HEADER.pack(self.sender_ssrc, 0) + b"".join(
            struct.pack("!IB3x", ssrc, seq_nr & 0xFF) for ssrc, seq_nr in self.entries
        )
        return _header(PSFB_FIR, RTCP_PSFB, len(body)) + body


@dataclass
class Remb:
    """Receiver Estimated Maximum Bitrate (PSFB FMT 15, draft-alvestrand-rmcat-remb).

    ``bitrate`` is in bits per second; on build it is encoded as an 18-bit mantissa and a
    6-bit exponent, rounding down.
    """

    sender_ssrc: int
    bitrate: int
    ssrcs: list[int] = field(default_factory=list)

    def serialize(self) -> bytes:
        if len(self.ssrcs) > 255:
            raise ValueError("at most 255 SSRCs in a REMB")
        mantissa, exponent = max(0, self.bitrate), 0
        while mantissa > 0x3FFFF:
            mantissa >>= 1
            exponent += 1
        if exponent > 63:
            raise ValueError("REMB bitrate out of range")
        body = (
            _FB_HEADER.pack(self.sender_ssrc, 0)
            + b"REMB"
            + struct.pack(
                "!BBH", len(self.ssrcs), (exponent << 2) | (mantissa >> 16), mantissa & 0xFFFF
            )
            + b"".join(struct.pack("!I", s) for s in self.ssrcs)
        )
        return _header(PSFB_AFB, RTCP_PSFB, len(body)) + body


@dataclass
class DlrrSubBlock:
    """One DLRR sub-block (RFC 3611 4.5): the answer to the RRTR of receiver ``ssrc``;
    ``lrr`` is the middle 32 bits of that RRTR's NTP timestamp, ``dlrr`` the delay since it
    arrived, both in 1/65536 s (as LSR/DLSR)."""

    ssrc: int
    lrr: int
    dlrr: int


@dataclass
class ExtendedReport:
    """XR (PT 207, RFC 3611) with the blocks we use: Receiver Reference Time (RRTR, BT 4:
    a 64-bit NTP timestamp from a receiver that sends no SR) and DLRR (BT 5). Other block
    types are skipped when parsing and counted in ``other_blocks``."""

    ssrc: int
    rrtr: int | None = None  # the RRTR block's NTP timestamp, if there is one
    dlrr: list[DlrrSubBlock] = field(default_factory=list)
    other_blocks: int = 0

    def serialize(self) -> bytes:
        body = bytearray(struct.pack("!I", self.ssrc))
        if self.rrtr is not None:
            body += struct.pack("!BBHQ", XR_RRTR, 0, 2, self.rrtr & 0xFFFFFFFFFFFFFFFF)
        if self.dlrr:
            body += struct.pack("!BBH", XR_DLRR, 0, 3 * len(self.dlrr))
            for sub in self.dlrr:
                body += _DLRR_SUB.pack(sub.ssrc, sub.lrr & 0xFFFFFFFF, sub.dlrr & 0xFFFFFFFF)
        return _header(0, RTCP_XR, len(body)) + bytes(body)


def _parse_xr(body: memoryview) -> ExtendedReport | None:
    """An XR's report blocks; None if it is malformed (the caller counts and skips it: an
    XR we can't read must not cost the rest of the compound)."""
    if len(body) < 4:
        return None
    report = ExtendedReport(int.from_bytes(body[0:4], "big"))
    pos = 4
    while pos < len(body):
        if pos + 4 > len(body):
            return None
        block_type, _, words = struct.unpack_from("!BBH", body, pos)
        start, end = pos + 4, pos + 4 + 4 * words
        if end > len(body):
            return None
        if block_type == XR_RRTR:
            if words != 2:
                return None
            report.rrtr = struct.unpack_from("!Q", body, start)[0]
        elif block_type == XR_DLRR:
            if words % 3:
                return None
            report.dlrr.extend(DlrrSubBlock(*_DLRR_SUB.unpack_from(body, i))
                               for i in range(start, end, _DLRR_SUB.size))
        else:
            report.other_blocks += 1
        pos = end
    return report


RtcpPacket = (
    SenderReport
    | ReceiverReport
    | SourceDescription
    | Bye
    | Nack
    | TransportFeedback
    | Pli
    | Fir
    | Remb
    | ExtendedReport
)


@dataclass
class ParsedCompound:
    """The result of :func:`parse_compound`: the understood packets in wire order, and how
    many recognised-but-unhandled packets (APP, other feedback formats) were skipped."""

    packets: list[RtcpPacket]
    skipped: int = 0
    malformed_xr: int = 0  # XR packets whose blocks could not be read (skipped)


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound RTCP packet (RFC 3550 6.1).

    RFC 3550 wants an SR or RR first and an SDES with CNAME in every compound packet; the
    caller chooses the order (RFC 5506 reduced-size feedback-only packets are allowed).
    """
    return b"".join(p.serialize() for p in packets)


def _parse_report_blocks(body: memoryview, pos: int, count: int) -> list[ReportBlock]:
    if pos + count * _REPORT_BLOCK.size > len(body):
        raise RtcpParseError("report blocks exceed packet length")
    return [ReportBlock.parse(body, pos + i * _REPORT_BLOCK.size) for i in range(count)]


def _parse_sdes(body: memoryview, count: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise RtcpParseError("SDES chunk truncated")
        chunk = SdesChunk(int.from_bytes(body[pos : pos + 4], "big"))
        pos += 4
        while True:
            if pos >= len(body):
                raise RtcpParseError("SDES item list not terminated")
            item_type = body[pos]
            if item_type == SDES_END:
                pos += 1
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise RtcpParseError("SDES item truncated")
            length = body[pos + 1]
            chunk.items.append((item_type, bytes(body[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        pos += -pos % 4  # each chunk starts on a 32-bit boundary
        chunks.append(chunk)
    return SourceDescription(chunks)


def _parse_bye(body: memoryview, count: int) -> Bye:
    if count * 4 > len(body):
        raise RtcpParseError("BYE sources exceed packet length")
    sources = [int.from_bytes(body[i * 4 : i * 4 + 4], "big") for i in range(count)]
    reason = None
    pos = count * 4
    if pos < len(body):
        length = body[pos]
        if pos + 1 + length > len(body):
            raise RtcpParseError("BYE reason truncated")
        reason = bytes(body[pos + 1 : pos + 1 + length]).decode("utf-8", "replace")
    return Bye(sources, reason)


def _parse_rtpfb(fmt: int, body: memoryview, whole: memoryview) -> RtcpPacket | None:
    sender, media = _FB_HEADER.unpack_from(body, 0)
    if fmt == RTPFB_NACK:
        fci = body[8:]
        if len(fci) % 4:
            raise RtcpParseError("NACK FCI not a multiple of 4 bytes")
        pairs = [struct.unpack_from("!HH", fci, i) for i in range(0, len(fci), 4)]
        return Nack(sender, media, unpack_nack_fci(pairs))
    if fmt == RTPFB_TRANSPORT_CC:
        return TransportFeedback(sender, media, bytes(whole))
    return None


def _parse_psfb(fmt: int, body: memoryview) -> RtcpPacket | None:
    sender, media = _FB_HEADER.unpack_from(body, 0)
    if fmt == PSFB_PLI:
        return Pli(sender, media)
    if fmt == PSFB_FIR:
        fci = body[8:]
        if len(fci) % 8:
            raise RtcpParseError("FIR FCI not a multiple of 8 bytes")
        return Fir(sender, [struct.unpack_from("!IB", fci, i) for i in range(0, len(fci), 8)])
    if fmt == PSFB_AFB and len(body) >= 16 and body[8:12] == b"REMB":
        num_ssrc = body[12]
        exponent = body[13] >> 2
        mantissa = ((body[13] & 0x03) << 16) | int.from_bytes(body[14:16], "big")
        if 16 + 4 * num_ssrc > len(body):
            raise RtcpParseError("REMB SSRC list exceeds packet length")
        ssrcs = [int.from_bytes(body[16 + 4 * i : 20 + 4 * i], "big") for i in range(num_ssrc)]
        return Remb(sender, mantissa << exponent, ssrcs)
    return None


def parse_compound(data: bytes | bytearray | memoryview) -> ParsedCompound:
    """Parse a (compound) RTCP packet. Raises :class:`RtcpParseError` if malformed."""
    view = memoryview(data)
    if len(view) < 4:
        raise RtcpParseError("RTCP packet shorter than a header")
    packets: list[RtcpPacket] = []
    skipped = 0
    malformed_xr = 0
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise RtcpParseError("trailing bytes after last RTCP packet")
        first, packet_type, length_words = _HEADER.unpack_from(view, pos)
        if first >> 6 != 2:
            raise RtcpParseError(f"bad RTCP version {first >> 6}")
        end = pos + 4 + 4 * length_words
        if end > len(view):
            raise RtcpParseError("RTCP length field exceeds datagram")
        whole = view[pos:end]
        body = view[pos + 4 : end]
        if first & 0x20:  # padding: the last octet counts the padding octets, itself included
            pad = body[-1] if len(body) else 0
            if pad == 0 or pad > len(body):
                raise RtcpParseError("bad RTCP padding")
            body = body[: len(body) - pad]
        count = first & 0x1F
        pos = end

        packet: RtcpPacket | None
        if packet_type == RTCP_SR:
            if len(body) < _SR_INFO.size:
                raise RtcpParseError("SR truncated")
            ssrc, ntp, rtp_ts, packet_count, octet_count = _SR_INFO.unpack_from(body, 0)
            reports = _parse_report_blocks(body, _SR_INFO.size, count)
            packet = SenderReport(ssrc, ntp, rtp_ts, packet_count, octet_count, reports)
        elif packet_type == RTCP_RR:
            if len(body) < 4:
                raise RtcpParseError("RR truncated")
            ssrc = int.from_bytes(body[0:4], "big")
            packet = ReceiverReport(ssrc, _parse_report_blocks(body, 4, count))
        elif packet_type == RTCP_SDES:
            packet = _parse_sdes(body, count)
        elif packet_type == RTCP_BYE:
            packet = _parse_bye(body, count)
        elif packet_type in (RTCP_RTPFB, RTCP_PSFB):
            if len(body) < 8:
                raise RtcpParseError("feedback packet truncated")
            if packet_type == RTCP_RTPFB:
                packet = _parse_rtpfb(count, body, whole)
            else:
                packet = _parse_psfb(count, body)
        elif packet_type == RTCP_XR:
            packet = _parse_xr(body)
            if packet is None:
                malformed_xr += 1
                continue
        else:
            packet = None  # APP or unknown: skipped

        if packet is None:
            skipped += 1
        else:
            packets.append(packet)
    return ParsedCompound(packets, skipped, malformed_xr)
