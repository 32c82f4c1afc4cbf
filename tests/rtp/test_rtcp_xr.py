"""RFC 3611 XR: RRTR and DLRR blocks, byte for byte; malformed XRs skipped and counted
without costing the rest of the compound; the DLRR round-trip arithmetic by hand."""

from __future__ import annotations

import pytest

from relay.rtp.receive_stats import compact_ntp, rtt_from_dlrr
from relay.rtp.rtcp import (
    DlrrSubBlock,
    ExtendedReport,
    Pli,
    ReceiverReport,
    parse_compound,
)


def test_rrtr_bytes_and_round_trip():
    xr = ExtendedReport(0x52454C59, rrtr=0x0123456789ABCDEF)
    data = xr.serialize()
    # V=2, PT 207, length 4 words | sender SSRC | BT 4, reserved, block length 2 | NTP
    assert data == bytes.fromhex("80cf0004" "52454c59" "04000002" "0123456789abcdef")
    assert parse_compound(data).packets == [xr]


def test_dlrr_bytes_and_round_trip():
    xr = ExtendedReport(1111, dlrr=[DlrrSubBlock(0x52454C59, 0x45670000, 0x8000),
                                    DlrrSubBlock(7, 1, 2)])
    data = xr.serialize()
    # BT 5, block length 3 words per sub-block: (SSRC, LRR, DLRR)
    assert data == bytes.fromhex(
        "80cf0008" "00000457" "05000006"
        "52454c59" "45670000" "00008000"
        "00000007" "00000001" "00000002")
    assert parse_compound(data).packets == [xr]


def test_rrtr_and_dlrr_in_one_xr_and_unknown_blocks_skipped():
    data = bytes.fromhex(
        "80cf000a" "00000009"
        "07000001" "deadbeef"  # BT 7 (VoIP metrics, here cut short): skipped, counted
        "04000002" "0000000100000002"
        "05000003" "00000003" "00000004" "00000005")
    (xr,) = parse_compound(data).packets
    assert xr == ExtendedReport(9, rrtr=(1 << 32) | 2, dlrr=[DlrrSubBlock(3, 4, 5)],
                                other_blocks=1)


def test_xr_without_blocks():
    assert parse_compound(bytes.fromhex("80cf0001" "00000001")).packets == [ExtendedReport(1)]


@pytest.mark.parametrize("xr", [
    "80cf0000",  # no SSRC
    "80cf0002" "00000001" "04000000",  # RRTR with a wrong block length (0, not 2)
    "80cf0002" "00000001" "05000001",  # DLRR block overruns the packet
    "80cf0003" "00000001" "05000001" "00000000",  # DLRR length not a multiple of 3 words
    "80cf0003" "00000001" "0400" "0002" "00000000",  # RRTR cut short
], ids=["no-ssrc", "rrtr-length", "dlrr-overrun", "dlrr-length", "rrtr-short"])
def test_malformed_xr_is_counted_and_the_compound_still_read(xr):
    rr = ReceiverReport(5)
    pli = Pli(1, 2)
    parsed = parse_compound(rr.serialize() + bytes.fromhex(xr) + pli.serialize())
    assert parsed.packets == [rr, pli]
    assert parsed.malformed_xr == 1


def test_rtt_from_dlrr_by_hand():
    # Our RRTR went out at NTP 1000.5 s; the sender held it 0.25 s (DLRR = 0.25 * 65536)
    # and its answer arrived at NTP 1000.875 s: RTT = 0.875 - 0.5 - 0.25 = 0.125 s.
    sent = (1000 << 32) | (1 << 31)
    arrived = (1000 << 32) | (7 << 29)
    lrr = compact_ntp(sent)
    assert lrr == (1000 << 16) | 0x8000
    assert rtt_from_dlrr(lrr, 0x4000, arrived) == 0.125
    assert rtt_from_dlrr(0, 0x4000, arrived) is None  # LRR 0: no RRTR of ours answered
    assert rtt_from_dlrr(lrr, 0x8000, arrived) == 0.0  # a negative result (bogus DLRR)
    # the 32-bit compact time wraps: an RRTR just before a wrap, the answer after it
    assert rtt_from_dlrr(0xFFFFF000, 0x1000, (1 << 48) | (0x1000 << 16)) == 0x1000 / 65536
