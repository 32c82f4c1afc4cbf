"""Fuzz target for compound RTCP (relay/rtp/rtcp.py's parse_compound, and the header walk in
relay/rtp/packet.py that the transports use before it).

Contract (rtcp.py's docstring): parse_compound raises RtcpParseError and nothing else, and
always terminates. What it parses, serialize() writes back: parse → build → parse gives the
same packets (up to what the format documents as dropped: skipped packet types, SR profile
extensions, unknown XR blocks; NACK entries compare as a set, since packing may reorder
and deduplicate them).
"""

from __future__ import annotations

from dataclasses import replace

from relay.rtp.packet import iter_rtcp, keyframe_request_ssrcs
from relay.rtp.rtcp import (
    Bye,
    DlrrSubBlock,
    ExtendedReport,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    build_compound,
    parse_compound,
)

from .fuzz_support import check, expect, in_receive_buffer


def _normalised(packet: RtcpPacket) -> RtcpPacket:
    """What parse(serialize(packet)) gives back, by the documented losses."""
    if isinstance(packet, Bye) and packet.reason is not None:
        # A reason is at most 255 bytes on the wire; decoding replaced invalid UTF-8.
        return replace(packet, reason=packet.reason.encode()[:255].decode("utf-8", "replace"))
    if isinstance(packet, ExtendedReport):
        return replace(packet, other_blocks=0)
    return packet


def _comparable(packet: RtcpPacket) -> RtcpPacket:
    """NACK entries may come back packed in another order: compare them as a set."""
    return replace(packet, lost=sorted(set(packet.lost))) if isinstance(packet, Nack) else packet


def fuzz_rtcp(data: bytes) -> None:
    n = len(data)
    buf = in_receive_buffer(data)
    parsed = expect(lambda: parse_compound(data), (RtcpParseError,), "parse_compound")
    from_view = expect(lambda: parse_compound(memoryview(buf)[:n]), (RtcpParseError,),
                       "parse_compound")
    check(type(parsed) is type(from_view)
          and (isinstance(parsed, RtcpParseError) or parsed == from_view),
          "parse_compound depends on the buffer type")

    walk = expect(lambda: list(iter_rtcp(buf, n)), (), "iter_rtcp")
    position = 0
    for _pt, _count, offset, size in walk:
        check(offset == position and size >= 4 and offset + size <= n,
              f"iter_rtcp yielded {offset}+{size} at position {position} of {n}")
        position += size
    requested = expect(lambda: keyframe_request_ssrcs(buf, n), (), "keyframe_request_ssrcs")
    check(requested == keyframe_request_ssrcs(data, n), "keyframe_request_ssrcs read past n")
    if isinstance(parsed, RtcpParseError):
        return

    check(position == n, "parse_compound accepted what the header walk stops short of")
    from_parse = [s for p in parsed.packets if isinstance(p, Pli) for s in (p.media_ssrc,)]
    from_parse += [ssrc for p in parsed.packets if isinstance(p, Fir) for ssrc, _ in p.entries]
    check(sorted(requested) == sorted(from_parse),
          f"key-frame requests: the walk says {requested}, the parser {from_parse}")

    if not parsed.packets:
        return  # only skipped packets: nothing to rebuild
    rebuilt = expect(lambda: build_compound(parsed.packets), (), "build_compound")
    again = expect(lambda: parse_compound(rebuilt), (), "parse_compound of a rebuilt packet")
    check(again.skipped == 0 and again.malformed_xr == 0, "rebuilt packets were skipped")
    expected = [_comparable(_normalised(p)) for p in parsed.packets]
    got = [_comparable(p) for p in again.packets]
    check(got == expected, f"parse -> build -> parse changed the packets:\n{expected}\n{got}")


def seeds_rtcp() -> list[bytes]:
    block = ReportBlock(ssrc=0x1111, fraction_lost=12, packets_lost=-3, highest_sequence=70000,
                        jitter=40, lsr=0x12345678, dlsr=655)
    sr = SenderReport(0x2222, 0xE1234567_89ABCDEF, 90000, 10, 2000, [block])
    rr = ReceiverReport(0x3333, [block, replace(block, ssrc=0x4444)])
    sdes = SourceDescription([SdesChunk(0x2222, [(1, b"cname@relay"), (5, b"x")])])
    packets = [
        [sr, sdes],
        [rr, sdes, Bye([0x2222], "gone")],
        [rr, Nack(0x3333, 0x1111, [1, 2, 5, 17, 40000])],
        [Pli(0x3333, 0x1111), Fir(0x3333, [(0x1111, 3), (0x5555, 4)])],
        [Remb(0x3333, 1_500_000, [0x1111, 0x5555])],
        [ExtendedReport(0x3333, rrtr=0xE1234567_89ABCDEF,
                        dlrr=[DlrrSubBlock(0x1111, 0x456789AB, 3000)])],
        [rr, TransportFeedback(0x3333, 0x1111, bytes.fromhex(
            "8fcd0005000033330000111100010002000000002000c800"))],
    ]
    seeds = [build_compound(p) for p in packets]
    seeds.append(bytes.fromhex("80cc0002" "00003333" "41424344"))  # APP: skipped
    seeds.append(bytes.fromhex("a0c90002" "00003333" "00000004"))  # RR with 4 bytes of padding
    seeds.append(FIR_WITH_PADDING)
    return seeds


# A FIR whose 8 bytes of padding (P bit) the key-frame-request scan read as a second entry.
FIR_WITH_PADDING = bytes.fromhex("a4ce0006" "00000001" "00000000" "00001111" "03000000"
                                 "00000000" "00000008")
