"""Inputs the fuzz harnesses found, kept as regression tests once the parser was fixed; and
checks that the harnesses notice a parser that breaks its contract (a harness that cannot
fail is no test)."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from relay.rtp.keyframe import is_vp8_keyframe, parse_vp8_descriptor
from relay.rtp.packet import keyframe_request_ssrcs
from relay.rtp.rtcp import Fir, parse_compound
from tests.fuzz import targets_framing, targets_rtcp, targets_rtp
from tests.fuzz.fuzz_support import ContractError
from tests.fuzz.targets_rtcp import FIR_WITH_PADDING, seeds_rtcp

# Found by the keyframe harness (its seed corpus, within 3 inputs): the VP8 descriptor's
# first octet is X|R|N|S|R|PID (RFC 7741 4.2): PID is 3 bits and the 0x08 bit is reserved,
# which receivers must ignore. parse_vp8_descriptor read PID as 4 bits, so a packet with that
# bit set had partition index 8..15, disagreed with is_vp8_keyframe, and the producer's
# temporal-layer switch did not see the start of a TL0 frame.
VP8_RESERVED_BIT_KEY_FRAME = bytes.fromhex("18009d012a")


def test_vp8_reserved_bit_is_not_part_of_the_partition_index():
    descriptor = parse_vp8_descriptor(VP8_RESERVED_BIT_KEY_FRAME)
    assert descriptor is not None
    assert descriptor.start_of_partition and descriptor.partition_index == 0
    assert is_vp8_keyframe(VP8_RESERVED_BIT_KEY_FRAME)
    targets_rtp.fuzz_keyframe(VP8_RESERVED_BIT_KEY_FRAME)
    # the full 3-bit PID still reads through the reserved bit
    assert parse_vp8_descriptor(b"\x1f\x00\x00").partition_index == 7


# The rtcp harness's cross-check (keyframe_request_ssrcs against parse_compound) fails on a
# padded FIR; 230k random inputs did not produce one, so it was found by writing this seed:
# the scan walked a FIR's FCI up to the end of the packet, padding included, so 8 bytes of
# RTCP padding read as a request for SSRC 0. (The worker parses RTCP with parse_compound; the
# scan serves tests and tools.)
def test_key_frame_request_scan_skips_rtcp_padding():
    assert parse_compound(FIR_WITH_PADDING).packets == [Fir(1, [(0x1111, 3)])]
    assert keyframe_request_ssrcs(FIR_WITH_PADDING, len(FIR_WITH_PADDING)) == [0x1111]
    targets_rtcp.fuzz_rtcp(FIR_WITH_PADDING)
    bad_padding = FIR_WITH_PADDING[:-1] + b"\x40"  # counts more than the packet holds
    assert keyframe_request_ssrcs(bad_padding, len(bad_padding)) == []


def test_keyframe_harness_notices_the_old_vp8_pid(monkeypatch):
    def four_bit_pid(payload):
        d = parse_vp8_descriptor(payload)
        return None if d is None else replace(d, partition_index=payload[0] & 0x0F)

    monkeypatch.setattr(targets_rtp, "parse_vp8_descriptor", four_bit_pid)
    with pytest.raises(ContractError):
        targets_rtp.fuzz_keyframe(VP8_RESERVED_BIT_KEY_FRAME)


def test_rtcp_harness_notices_an_undocumented_exception(monkeypatch):
    def leaky(data):
        if len(data) > 40:
            raise IndexError("index out of range")  # what a missing bounds check raises
        return parse_compound(data)

    monkeypatch.setattr(targets_rtcp, "parse_compound", leaky)
    with pytest.raises(ContractError, match="IndexError"):
        for seed in seeds_rtcp():
            targets_rtcp.fuzz_rtcp(seed)


def test_framing_harness_notices_a_decoder_that_loses_a_split_header(monkeypatch):
    real = targets_framing.proto_framing.FrameDecoder

    class LosesPartialHeaders(real):
        def feed(self, data):
            if self.buffered == 0 and len(data) < 4:
                return []  # forgets a header cut by the read
            return super().feed(data)

    monkeypatch.setattr(targets_framing.proto_framing, "FrameDecoder", LosesPartialHeaders)
    stream = b"".join(struct.pack(">I", 5) + b"hello" for _ in range(40))
    with pytest.raises(ContractError, match="cut"):
        for cut_seed in range(1, 40):
            targets_framing.fuzz_proto_framing(bytes([cut_seed * 4]) + stream)
