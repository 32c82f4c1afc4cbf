"""relay.rtp.packet: validation, RTCP demux, header-extension id rewriting, RTCP feedback."""

from __future__ import annotations

import struct

import pytest

from relay.rtp.packet import (
    build_pli,
    build_rtp,
    extension_bounds,
    is_rtcp,
    iter_rtcp,
    keyframe_request_ssrcs,
    parse_extensions,
    rewrite_extension_ids,
    rtp_payload_offset,
)


def make(**kw) -> bytearray:
    args = dict(payload_type=111, sequence_number=7, timestamp=99, ssrc=0x1234, payload=b"pay")
    args.update(kw)
    return bytearray(build_rtp(**args))


def test_payload_offset_of_valid_packets():
    assert rtp_payload_offset(make(), 15) == 12
    p = make(csrcs=(1, 2))
    assert rtp_payload_offset(p, len(p)) == 20
    p = make(extensions={1: b"\x01"})
    assert rtp_payload_offset(p, len(p)) == 20  # 4-byte ext header + 4 bytes of elements
    p = make(padding=4)
    assert rtp_payload_offset(p, len(p)) == 12 and p[-1] == 4


@pytest.mark.parametrize("packet", [
    b"",
    b"\x80" * 11,
    b"\x40" + bytes(make()[1:]),  # version 1
    b"\x00" + bytes(make()[1:]),  # version 0 (e.g. STUN)
    bytes([0x82]) + bytes(make()[1:]),  # 2 CSRCs announced, 3 bytes there
    bytes([0x90]) + bytes(make()[1:12]),  # extension header missing
    bytes([0x90]) + bytes(make()[1:12]) + b"\xbe\xde\x00\x01",  # one word announced, none there
    bytes([0xA0]) + bytes(make()[1:14]) + b"\x00",  # padding 0
    bytes([0xA0]) + bytes(make()[1:14]) + b"\x09",  # padding beyond the payload
])
def test_malformed_packets_are_rejected(packet):
    assert rtp_payload_offset(packet, len(packet)) == -1


def test_rtcp_demux_rfc5761():
    for pt in range(192, 224):
        assert is_rtcp(pt)
    for b1 in (0, 96, 111, 127, 0x80 | 111, 0x80 | 96, 0x80 | 63, 96 | 0x80):
        assert not is_rtcp(b1)
    assert is_rtcp(0x80 | 72) and is_rtcp(72)  # marker set + 72 == 200 (SR)


def test_one_byte_extension_ids_rewritten_and_unknown_neutralised():
    p = make(extensions={1: b"\xaa", 2: b"\xbb\xcc", 5: b"\x01\x02\x03\x04"})
    table = bytearray(256)
    table[1] = 9
    table[2] = 2
    # 5 unmapped → zeros
    profile, start, end = extension_bounds(p, len(p))
    assert rewrite_extension_ids(p, start, end, profile, bytes(table))
    assert parse_extensions(p, len(p)) == {9: b"\xaa", 2: b"\xbb\xcc"}
    assert p[-3:] == b"pay"


def test_one_byte_form_cannot_carry_ids_above_14():
    p = make(extensions={1: b"\xaa", 2: b"\xbb"})
    table = bytearray(256)
    table[1] = 20
    table[2] = 3
    profile, start, end = extension_bounds(p, len(p))
    assert rewrite_extension_ids(p, start, end, profile, bytes(table))
    assert parse_extensions(p, len(p)) == {3: b"\xbb"}


def test_two_byte_extension_ids_rewritten():
    p = make(extensions={1: b"", 30: b"x" * 17, 4: b"y"}, two_byte_extensions=True)
    table = bytearray(256)
    table[1] = 200
    table[30] = 31
    profile, start, end = extension_bounds(p, len(p))
    assert profile & 0xFFF0 == 0x1000
    assert rewrite_extension_ids(p, start, end, profile, bytes(table))
    assert parse_extensions(p, len(p)) == {200: b"", 31: b"x" * 17}


def test_malformed_extension_elements_are_reported():
    # one-byte element claiming 16 bytes in a 4-byte block
    p = bytearray(make()[:12]) + b"\xbe\xde\x00\x01" + b"\x1f\x00\x00\x00"
    p[0] |= 0x10
    assert rtp_payload_offset(p, len(p)) == 20
    profile, start, end = extension_bounds(p, len(p))
    assert not rewrite_extension_ids(p, start, end, profile, bytes(256))
    # two-byte element whose length overruns
    p = bytearray(make()[:12]) + b"\x10\x00\x00\x01" + b"\x01\x09\x00\x00"
    p[0] |= 0x10
    profile, start, end = extension_bounds(p, len(p))
    assert not rewrite_extension_ids(p, start, end, profile, bytes(256))
    # id 15 stops parsing (RFC 8285), unknown profile is opaque: both fine
    p = bytearray(make()[:12]) + b"\xbe\xde\x00\x01" + b"\xf3\x00\x00\x00"
    p[0] |= 0x10
    profile, start, end = extension_bounds(p, len(p))
    assert rewrite_extension_ids(p, start, end, profile, bytes(256))
    assert rewrite_extension_ids(p, start, end, 0x1234, bytes(256))


def test_pli_and_fir_parsing_is_defensive():
    pli = build_pli(1, 0xCAFE)
    assert len(pli) == 12 and pli[0] == 0x81 and pli[1] == 206
    fir = struct.pack("!BBHII", 0x84, 206, 6, 1, 0) + struct.pack("!IBBH", 7, 1, 0, 0) + struct.pack("!IBBH", 8, 1, 0, 0)
    rr = struct.pack("!BBHI", 0x80, 201, 1, 5)
    compound = rr + pli + fir
    assert [pt for pt, *_ in iter_rtcp(compound, len(compound))] == [201, 206, 206]
    assert keyframe_request_ssrcs(compound, len(compound)) == [0xCAFE, 7, 8]
    # a truncated or garbage tail stops the walk without raising
    assert keyframe_request_ssrcs(compound[:-3], len(compound) - 3) == [0xCAFE]
    assert keyframe_request_ssrcs(b"\x00" * 20, 20) == []
    assert keyframe_request_ssrcs(b"\x81\xce\x00\x00", 4) == []  # PLI without its SSRCs
    assert keyframe_request_ssrcs(b"\x81", 1) == []
