"""Builder -> parser round trips, property-based (hypothesis): structured values are where
hypothesis does better than a byte fuzzer. RTP (header, CSRCs, extensions, padding), RTX
wrap/unwrap, every RTCP packet type, NACK packing, RFC 4571 frames and the worker pipe's
frames cut at any read boundary, and the protocol's messages.

CI runs a bounded, derandomized number of examples; set RELAY_HYPOTHESIS_EXAMPLES for a
longer search (for example 20000).
"""

from __future__ import annotations

import os
import struct
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.rtp.nack_buffer import make_rtx_packet, parse_rtx_packet, rtp_payload_bounds
from relay.rtp.packet import (
    build_rtp,
    extension_bounds,
    parse_extensions,
    rtp_payload_offset,
)
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
    SdesChunk,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    build_compound,
    pack_nack_fci,
    parse_compound,
    unpack_nack_fci,
)
from relay.transport import tcp_framing
from worker_proto import framing as proto_framing
from worker_proto.errors import FrameTooLargeError
from worker_proto.messages import (
    MAX_REQUEST_ID,
    decode_message,
    encode_message,
    make_notification,
    make_request,
    parse_request,
    parse_worker_message,
)

EXAMPLES = int(os.environ.get("RELAY_HYPOTHESIS_EXAMPLES", "80"))
BOUNDED = settings(max_examples=EXAMPLES, deadline=timedelta(milliseconds=500),
                   derandomize="RELAY_HYPOTHESIS_EXAMPLES" not in os.environ, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

u8, u16, u32 = (st.integers(0, 2**bits - 1) for bits in (8, 16, 32))
u64 = st.integers(0, 2**64 - 1)


# -- RTP ------------------------------------------------------------------------------------

@st.composite
def rtp_fields(draw) -> dict:
    two_byte = draw(st.booleans())
    if two_byte:
        extensions = draw(st.dictionaries(st.integers(1, 255), st.binary(max_size=40),
                                          max_size=6))
    else:
        extensions = draw(st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16),
                                          max_size=6))
    return {"payload_type": draw(st.integers(0, 127)), "sequence_number": draw(u16),
            "timestamp": draw(u32), "ssrc": draw(u32), "marker": draw(st.booleans()),
            "payload": draw(st.binary(max_size=200)),
            "csrcs": tuple(draw(st.lists(u32, max_size=15))),
            "extensions": extensions, "two_byte_extensions": two_byte,
            "padding": draw(st.integers(0, 255))}


@BOUNDED
@given(rtp_fields())
def test_build_rtp_then_parse(fields):
    packet = build_rtp(**fields)
    n = len(packet)
    offset = rtp_payload_offset(packet, n)
    assert offset >= 12 + 4 * len(fields["csrcs"])
    start, end = rtp_payload_bounds(packet)
    assert start == offset and packet[start:end] == fields["payload"]
    b1, seq, ts, ssrc = struct.unpack_from("!BHII", packet, 1)
    assert (b1 >> 7, b1 & 0x7F, seq, ts, ssrc) == (
        fields["marker"], fields["payload_type"], fields["sequence_number"],
        fields["timestamp"], fields["ssrc"])
    assert [struct.unpack_from("!I", packet, 12 + 4 * i)[0]
            for i in range(len(fields["csrcs"]))] == list(fields["csrcs"])
    assert parse_extensions(packet, n) == fields["extensions"]
    profile, ext_start, ext_end = extension_bounds(packet, n)
    assert (profile != 0) == bool(fields["extensions"]) and ext_end <= offset


@BOUNDED
@given(rtp_fields(), u32, st.integers(0, 127), u16)
def test_rtx_wrap_then_unwrap(fields, rtx_ssrc, rtx_pt, rtx_seq):
    packet = build_rtp(**fields)
    rtx = make_rtx_packet(packet, rtx_ssrc, rtx_pt, rtx_seq)
    assert struct.unpack_from("!HI", rtx, 2)[0] == rtx_seq
    assert struct.unpack_from("!I", rtx, 8)[0] == rtx_ssrc
    original = parse_rtx_packet(rtx, fields["payload_type"], fields["ssrc"])
    assert original == build_rtp(**{**fields, "padding": 0})


# -- RTCP -----------------------------------------------------------------------------------

report_blocks = st.builds(ReportBlock, u32, u8, st.integers(-(2**23), 2**23 - 1), u32, u32,
                          u32, u32)
sdes_items = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)), max_size=4)
rtcp_packets = st.one_of(
    st.builds(SenderReport, u32, u64, u32, u32, u32, st.lists(report_blocks, max_size=8)),
    st.builds(ReceiverReport, u32, st.lists(report_blocks, max_size=8)),
    st.builds(SourceDescription, st.lists(st.builds(SdesChunk, u32, sdes_items), max_size=6)),
    st.builds(Bye, st.lists(u32, max_size=8),
              st.one_of(st.none(), st.text(max_size=80))),
    st.builds(Pli, u32, u32),
    st.builds(Fir, u32, st.lists(st.tuples(u32, u8), max_size=20)),
    st.builds(Remb, u32, st.integers(0, 0x3FFFF) .flatmap(
        lambda m: st.integers(0, 40).map(lambda e: m << e)), st.lists(u32, max_size=20)),
    st.builds(ExtendedReport, u32, st.one_of(st.none(), u64),
              st.lists(st.builds(DlrrSubBlock, u32, u32, u32), max_size=10)),
)


@BOUNDED
@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_build_then_parse(packets):
    parsed = parse_compound(build_compound(packets))
    assert parsed.skipped == parsed.malformed_xr == 0
    expected = [Bye(p.sources, p.reason.encode()[:255].decode("utf-8", "replace"))
                if isinstance(p, Bye) and p.reason is not None else p for p in packets]
    assert parsed.packets == expected


@BOUNDED
@given(u32, u32, st.lists(u16, max_size=200))
def test_nack_pack_then_unpack(sender, media, lost):
    pairs = pack_nack_fci(lost)
    assert all(0 <= blp <= 0xFFFF and pid + blp.bit_length() <= 0xFFFF or blp == 0
               for pid, blp in pairs)  # a BLP bit never reaches across the 16-bit wrap
    assert set(unpack_nack_fci(pairs)) == set(lost)
    (nack,) = parse_compound(Nack(sender, media, lost).serialize()).packets
    assert set(nack.lost) == set(lost) and (nack.sender_ssrc, nack.media_ssrc) == (sender, media)


@BOUNDED
@given(u32, u32, st.binary(max_size=60).map(lambda b: b + bytes(-len(b) % 4)))
def test_transport_cc_feedback_passes_through_untouched(sender, media, fci):
    data = struct.pack("!BBHII", 0x8F, 205, (8 + len(fci)) // 4, sender, media) + fci
    (packet,) = parse_compound(data).packets
    assert packet == TransportFeedback(sender, media, data) and packet.serialize() == data


# -- stream framings ------------------------------------------------------------------------

def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in zip(points, points[1:], strict=False)]


@BOUNDED
@given(st.lists(st.binary(max_size=300), max_size=12), st.lists(st.integers(0, 10**6),
                                                               max_size=30))
def test_rfc4571_frames_survive_any_read_boundaries(frames, cuts):
    stream = b"".join(tcp_framing.encode_frame(f) for f in frames)
    decoder = tcp_framing.FrameDecoder()
    got = [frame for piece in _cut(stream, cuts) for frame in decoder.feed(piece)]
    assert got == [f for f in frames if f]
    assert decoder.empty_frames == frames.count(b"") and decoder.buffered == 0


@BOUNDED
@given(st.lists(st.binary(max_size=120), max_size=12), st.lists(st.integers(0, 10**6),
                                                               max_size=30))
def test_pipe_frames_survive_any_read_boundaries_and_oversized_ones(payloads, cuts):
    limit = 64  # payloads above it are skipped and reported, the stream stays in sync
    stream = b"".join(struct.pack(">I", len(p)) + p for p in payloads)
    decoder = proto_framing.FrameDecoder(limit)
    got = [item for piece in _cut(stream, cuts) for item in decoder.feed(piece)]
    assert [type(g) for g in got] == [FrameTooLargeError if len(p) > limit else bytes
                                      for p in payloads]
    assert [g for g in got if isinstance(g, bytes)] == [p for p in payloads if len(p) <= limit]
    assert decoder.buffered == 0


# -- protocol messages ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8)


@BOUNDED
@given(st.integers(0, MAX_REQUEST_ID), st.text(min_size=1, max_size=30), st.text(max_size=30),
       st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_request_encode_then_parse(request_id, method, handler_id, data):
    request = parse_request(decode_message(encode_message(
        make_request(request_id, method, handler_id, data))))
    assert (request.id, request.method, request.handler_id, request.data) == (
        request_id, method, handler_id, data)


@BOUNDED
@given(st.text(max_size=30), st.text(max_size=30), json_values)
def test_notification_encode_then_parse(handler_id, event, data):
    notification = parse_worker_message(decode_message(encode_message(
        make_notification(handler_id, event, data))))
    assert (notification.handler_id, notification.event, notification.data) == (
        handler_id, event, data)
