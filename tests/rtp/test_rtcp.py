import random

import pytest

from relay.rtp.rtcp import (
    Bye,
    ExtendedReport,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    build_compound,
    pack_nack_fci,
    parse_compound,
    unpack_nack_fci,
)

BLOCK = ReportBlock(
    ssrc=0x55667788,
    fraction_lost=0x40,
    packets_lost=3,
    highest_sequence=0x0001FFFF,
    jitter=0x20,
    lsr=0x03040506,
    dlsr=0x00010000,
)
BLOCK_BYTES = bytes.fromhex("55667788" "40000003" "0001ffff" "00000020" "03040506" "00010000")


def parse_one(data: bytes):
    parsed = parse_compound(data)
    assert parsed.skipped == 0
    assert len(parsed.packets) == 1
    return parsed.packets[0]


def test_report_block_bytes_and_negative_loss():
    assert BLOCK.serialize() == BLOCK_BYTES
    negative = ReportBlock(ssrc=1, packets_lost=-1)
    assert negative.serialize()[5:8] == b"\xff\xff\xff"
    assert ReportBlock.parse(negative.serialize(), 0).packets_lost == -1
    # Out-of-range cumulative loss is clamped to 24 signed bits, not wrapped.
    assert ReportBlock(ssrc=1, packets_lost=1 << 30).serialize()[5:8] == b"\x7f\xff\xff"
    assert ReportBlock(ssrc=1, packets_lost=-(1 << 30)).serialize()[5:8] == b"\x80\x00\x00"


def test_sender_report_bytes_and_round_trip():
    sr = SenderReport(
        ssrc=0x11223344,
        ntp_timestamp=0x0102030405060708,
        rtp_timestamp=0xAABBCCDD,
        packet_count=10,
        octet_count=1000,
        reports=[BLOCK],
    )
    expected = (
        bytes.fromhex("81c8000c" "11223344" "0102030405060708" "aabbccdd" "0000000a" "000003e8")
        + BLOCK_BYTES
    )
    assert sr.serialize() == expected
    assert parse_one(expected) == sr


def test_receiver_report_bytes_and_round_trip():
    rr = ReceiverReport(ssrc=0x01020304, reports=[BLOCK, ReportBlock(ssrc=9, packets_lost=-2)])
    data = rr.serialize()
    assert data[:8] == bytes.fromhex("82c9000d01020304")
    assert data[8:32] == BLOCK_BYTES
    assert parse_one(data) == rr
    assert parse_one(ReceiverReport(ssrc=7).serialize()) == ReceiverReport(ssrc=7)


def test_sdes_cname():
    sdes = SourceDescription.with_cname(0x01020304, "abc")
    data = sdes.serialize()
    # chunk: ssrc, CNAME(1) len 3 "abc", end octet, padded to 12 bytes
    assert data == bytes.fromhex("81ca0003" "01020304" "0103616263" "00" "0000")
    parsed = parse_one(data)
    assert parsed.chunks[0].ssrc == 0x01020304
    assert parsed.chunks[0].cname == "abc"


def test_sdes_two_chunks_and_other_items():
    sdes = SourceDescription(
        [SdesChunk(1, [(1, b"user@host"), (6, b"tool")]), SdesChunk(2, [(1, b"abcd")])]
    )
    parsed = parse_one(sdes.serialize())
    assert parsed == sdes
    assert [c.cname for c in parsed.chunks] == ["user@host", "abcd"]
    assert SdesChunk(3).cname is None


def test_bye():
    bye = Bye([1, 2], "bye")
    data = bye.serialize()
    assert data == bytes.fromhex("82cb0003" "00000001" "00000002" "03627965")
    assert parse_one(data) == bye
    assert parse_one(Bye([5]).serialize()) == Bye([5], None)


def test_nack_pid_blp_packing():
    assert pack_nack_fci([100, 101, 103, 117, 118]) == [(100, 0b101), (117, 0b1)]
    assert pack_nack_fci([100, 116]) == [(100, 0x8000)]  # 16 after the PID is the last bit
    assert pack_nack_fci([100, 117]) == [(100, 0), (117, 0)]
    # Not across the wrap (aiortc would read 65536, 65537): a new PID at 0.
    assert pack_nack_fci([65534, 65535, 0, 1]) == [(65534, 0b1), (0, 0b1)]
    assert pack_nack_fci([5, 5, 6]) == [(5, 0b1)]
    assert unpack_nack_fci([(65534, 0b111)]) == [65534, 65535, 0, 1]
    assert unpack_nack_fci([(10, 0xFFFF)]) == list(range(10, 27))


def test_nack_bytes_and_round_trip():
    nack = Nack(sender_ssrc=0x0A0B0C0D, media_ssrc=0x01020304, lost=[100, 101, 103, 117, 118])
    data = nack.serialize()
    assert data == bytes.fromhex("81cd0004" "0a0b0c0d" "01020304" "00640005" "00750001")
    assert parse_one(data) == nack


def test_pli_fir_remb():
    pli = Pli(sender_ssrc=1, media_ssrc=2)
    assert pli.serialize() == bytes.fromhex("81ce0002" "00000001" "00000002")
    assert parse_one(pli.serialize()) == pli

    fir = Fir(sender_ssrc=1, entries=[(0xAABBCCDD, 7)])
    assert fir.serialize() == bytes.fromhex("84ce0004" "00000001" "00000000" "aabbccdd" "07000000")
    assert parse_one(fir.serialize()) == fir

    remb = Remb(sender_ssrc=1, bitrate=1_000_000, ssrcs=[0x11223344])
    # 1e6 = 250000 << 2: exponent 2, mantissa 250000 = 0x3d090
    assert remb.serialize() == bytes.fromhex(
        "8fce0005" "00000001" "00000000" "52454d42" "01" "0b" "d090" "11223344"
    )
    assert parse_one(remb.serialize()) == remb
    # Mantissa rounding: 2**20 + 1 loses its low bits.
    assert parse_one(Remb(1, (1 << 20) + 1).serialize()).bitrate == 1 << 20


def test_transport_cc_is_passed_through_untouched():
    # RTPFB FMT 15: base seq 0x0010, status count 3, ref time, fb count, one chunk + deltas.
    raw = bytes.fromhex("8fcd0005" "00000001" "00000002" "00100003" "00000102" "20030a0b")
    packet = parse_one(raw)
    assert isinstance(packet, TransportFeedback)
    assert (packet.sender_ssrc, packet.media_ssrc) == (1, 2)
    assert packet.serialize() == raw
    assert build_compound([packet]) == raw


def test_app_xr_and_unknown_feedback_are_skipped():
    rr = ReceiverReport(ssrc=1)
    app = bytes.fromhex("80cc0003" "00000001") + b"name" + b"data"
    xr = bytes.fromhex("80cf0002" "00000001" "07000000")  # XR: only a block type we skip
    sli = bytes.fromhex("82ce0003" "00000001" "00000002" "00000000")  # PSFB FMT 2
    tmmbr = bytes.fromhex("83cd0004" "00000001" "00000000" "00000002" "00000000")
    other_afb = bytes.fromhex("8fce0003" "00000001" "00000000" "58595a57")
    unknown_type = bytes.fromhex("80c30001" "00000000")  # PT 195 (IJ)
    pli = Pli(1, 2)
    data = (
        rr.serialize() + app + xr + sli + tmmbr + other_afb + unknown_type + pli.serialize()
    )
    parsed = parse_compound(data)
    assert parsed.packets == [rr, ExtendedReport(1, other_blocks=1), pli]
    assert parsed.skipped == 5


def test_compound_round_trip():
    packets = [
        SenderReport(1, 2, 3, 4, 5, [BLOCK]),
        SourceDescription.with_cname(1, "relay"),
        Nack(1, 2, [65535, 0, 2]),
        Pli(1, 2),
        Fir(1, [(2, 255)]),
        Remb(1, 300_000, [2, 3]),
        Bye([1], "done"),
    ]
    assert parse_compound(build_compound(packets)).packets == packets


def test_padding_is_honoured():
    # RR with the P bit: 4 octets of padding, the last one counting them.
    data = bytes.fromhex("a0c90002" "00000007" "00000004")
    assert parse_one(data) == ReceiverReport(ssrc=7)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9\x00",
        bytes.fromhex("40c90001" "00000001"),  # version 1
        bytes.fromhex("80c90002" "00000001"),  # length beyond datagram
        bytes.fromhex("81c90001" "00000001"),  # RR announcing a block it does not have
        bytes.fromhex("80c80001" "00000001"),  # SR truncated
        bytes.fromhex("81ca0002" "00000001" "01056162"),  # SDES item overruns
        bytes.fromhex("81ca0002" "00000001" "01026162"),  # SDES never terminated
        bytes.fromhex("81cb0000"),  # BYE with a missing source
        bytes.fromhex("81cb0002" "00000001" "09616263"),  # BYE reason overruns
        bytes.fromhex("81cd0001" "00000001"),  # feedback truncated
        bytes.fromhex("84ce0003" "00000001" "00000000" "00000002"),  # FIR entry truncated
        bytes.fromhex("8fce0004" "00000001" "00000000" "52454d42" "02000000"),  # REMB ssrcs
        bytes.fromhex("a0c90001" "00000000"),  # padding count 0
        bytes.fromhex("a0c90001" "00000009"),  # padding longer than packet
        bytes.fromhex("81ce0002" "00000001" "00000002") + b"\x81",  # trailing garbage
    ],
)
def test_malformed_raises_parse_error(data):
    with pytest.raises(RtcpParseError):
        parse_compound(data)


def test_fuzz_never_raises_anything_else():
    rng = random.Random(1234)
    valid = build_compound(
        [
            SenderReport(1, 2, 3, 4, 5, [BLOCK, BLOCK]),
            SourceDescription.with_cname(1, "relay"),
            Nack(1, 2, [1, 2, 40]),
            Fir(1, [(2, 1)]),
            Remb(1, 12345, [2]),
            Bye([1], "x"),
        ]
    )
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))]
        try:
            parse_compound(bytes(data))
            outcomes["ok"] += 1
        except RtcpParseError:
            outcomes["error"] += 1
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        try:
            parse_compound(b"\x80" + data)
        except RtcpParseError:
            pass
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


def test_interoperates_with_aiortc():
    """aiortc (what our test peers run) reads what we build, and we read what it builds."""
    from aiortc import rtp as a

    ours = [
        SenderReport(1, 0x0102030405060708, 3, 4, 5, [BLOCK]),
        ReceiverReport(2, [ReportBlock(9, 10, -3, 70000, 11, 12, 13)]),
        SourceDescription.with_cname(1, "relay"),
        Nack(1, 2, [65535, 0, 2, 40]),
        Pli(1, 2),
        Bye([1, 2]),
    ]
    theirs = a.RtcpPacket.parse(build_compound(ours))
    assert theirs[0].sender_info.ntp_timestamp == 0x0102030405060708
    assert theirs[0].reports[0].packets_lost == 3 and theirs[0].reports[0].lsr == 0x03040506
    assert theirs[1].reports[0].packets_lost == -3
    assert theirs[1].reports[0].highest_sequence == 70000
    assert theirs[2].chunks[0].items == [(1, b"relay")]
    assert theirs[3].lost == [65535, 0, 2, 40]  # no BLP bit across the wrap: aiortc reads it
    assert (theirs[4].fmt, theirs[4].media_ssrc) == (1, 2)
    assert theirs[5].sources == [1, 2]

    built = b"".join(
        bytes(p)
        for p in [
            a.RtcpSrPacket(
                ssrc=1,
                sender_info=a.RtcpSenderInfo(0x0102030405060708, 3, 4, 5),
                reports=[a.RtcpReceiverInfo(9, 10, 3, 70000, 11, 12, 13)],
            ),
            a.RtcpSdesPacket(chunks=[a.RtcpSourceInfo(ssrc=1, items=[(1, b"peer")])]),
            a.RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[100, 101, 120]),
            a.RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2),
        ]
    )
    packets = parse_compound(built).packets
    assert packets[0] == SenderReport(
        1, 0x0102030405060708, 3, 4, 5, [ReportBlock(9, 10, 3, 70000, 11, 12, 13)]
    )
    assert packets[1].chunks[0].cname == "peer"
    assert packets[2] == Nack(1, 2, [100, 101, 120])
    assert packets[3] == Pli(1, 2)
