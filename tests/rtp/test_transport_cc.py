"""relay.rtp.transport_cc: transport-wide sequence numbers, arrival recording, feedback
packets (byte for byte against hand-built cases), the feedback interval, and the parser."""

from __future__ import annotations

import random
import struct

import pytest

from relay.rtp.packet import build_rtp
from relay.rtp.rtcp import RtcpParseError, TransportFeedback, parse_compound
from relay.rtp.transport_cc import (
    TRANSPORT_CC_URI,
    TransportCcParseError,
    TransportCcReceiver,
    feedback_interval,
    parse_feedback,
    read_transport_seq,
)

SENDER = 0x52454C59
MEDIA = 0x000004D2
T0 = 1.0  # 1 000 000 µs: reference time 15 (960 000 µs), first delta 40 ms = 160 ticks


def header(length_words: int, padded: bool) -> str:
    """The hex of the RTCP header, sender and media SSRC of a feedback packet."""
    b0 = 0x80 | (0x20 if padded else 0) | 15
    return f"{b0:02x}cd{length_words:04x}{SENDER:08x}{MEDIA:08x}"


def receiver_with(arrivals: list[tuple[int, float]], **kw) -> TransportCcReceiver:
    r = TransportCcReceiver(**kw)
    for seq, t in arrivals:
        r.on_packet(seq, t, MEDIA)
    return r


# --- reading the header extension -------------------------------------------------------------


def test_uri_is_the_drafts():
    assert TRANSPORT_CC_URI == (
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    )


def test_read_transport_seq_one_and_two_byte_forms():
    exts = {3: b"\x12\x34\x56", 5: b"\xbe\xef", 1: b"\x01"}
    p = build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x" * 20,
                  extensions=exts)
    assert read_transport_seq(p, len(p), 5) == 0xBEEF
    assert read_transport_seq(p, len(p), 4) is None
    assert read_transport_seq(p, len(p), 1) is None  # 1 byte: too short for a seq
    p2 = build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x",
                   extensions={20: b"\x00\x07\x80\x01", 5: b"\xff\xfe"}, two_byte_extensions=True)
    assert read_transport_seq(p2, len(p2), 5) == 0xFFFE
    assert read_transport_seq(p2, len(p2), 20) == 7  # transport-cc-02 form: seq first
    plain = build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x")
    assert read_transport_seq(plain, len(plain), 5) is None


def test_read_transport_seq_never_reads_past_the_packet():
    p = bytearray(build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3,
                            extensions={5: b"\xbe\xef"}))
    # The extension block is 4 + 4 bytes after the 12-byte header.
    for n in range(0, 20):
        assert read_transport_seq(p, n, 5) is None
    assert read_transport_seq(p, 20, 5) == 0xBEEF
    bad = bytearray(p)
    bad[16] = (5 << 4) | 7  # the element claims 8 bytes in a 4-byte block
    assert read_transport_seq(bad, len(bad), 5) is None
    bad[16] = 0xF1  # id 15 stops parsing
    assert read_transport_seq(bad, len(bad), 5) is None
    rng = random.Random(1)
    for _ in range(3000):  # garbage: None or an int, never an exception
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        value = read_transport_seq(junk, len(junk), rng.randrange(1, 15))
        assert value is None or 0 <= value <= 0xFFFF


# --- chunk types, byte for byte ---------------------------------------------------------------


def test_run_length_chunk():
    r = receiver_with([(i, T0 + i * 0.001) for i in range(20)])
    assert r.pending
    (packet,) = r.build_feedback(SENDER)
    # base 0, count 20, reference 15, fb count 0; run-length chunk T=0 S=01 length 20;
    # deltas 160 then 19 x 4 ticks (1 ms); 42 bytes + 2 bytes of padding (P bit).
    expected = (header(10, True) + "0000" "0014" "00000f" "00" + "2014"
                + "a0" + "04" * 19 + "0002")
    assert packet.hex() == expected
    assert r.build_feedback(SENDER) == []  # nothing new
    assert not r.pending


def test_one_bit_vector_chunk():
    # seqs 0..13, 2 and 5 lost: symbols 1 1 0 1 1 0 1 1 1 1 1 1 1 1 (14 symbols, all small).
    arrivals = [(i, T0 + i * 0.001) for i in range(14) if i not in (2, 5)]
    (packet,) = receiver_with(arrivals).build_feedback(SENDER)
    # one-bit vector: 1 0 | 11011011111111 = 0xB6FF; deltas 160, 4, 8, 4, 8, 4 x 7.
    deltas = "a0" "04" "08" "04" "08" + "04" * 7
    expected = header(8, True) + "0000" "000e" "00000f" "00" + "b6ff" + deltas + "0002"
    assert packet.hex() == expected


def test_two_bit_vector_chunk_with_large_deltas():
    # seq 2 comes 100 ms after seq 1 (400 ticks: large), seq 3 is lost, seq 4 1 ms later.
    arrivals = [(0, T0), (1, T0 + 0.001), (2, T0 + 0.101), (4, T0 + 0.102)]
    (packet,) = receiver_with(arrivals).build_feedback(SENDER)
    # two-bit vector: 1 1 | 01 01 10 00 01 00 00 = 0xD610; deltas a0, 04, 0190, 04.
    expected = header(6, True) + "0000" "0005" "00000f" "00" + "d610" + "a0040190" "04" + "01"
    assert packet.hex() == expected


def test_two_bit_vector_emitted_mid_stream_keeps_the_rest_pending():
    # symbols 1 2 1 1 1 1 1 | 1 1 1: the large delta closes a two-bit vector of 7, the
    # rest becomes a run-length chunk of 3.
    times = [T0, T0 + 0.1, T0 + 0.101, T0 + 0.102, T0 + 0.103, T0 + 0.104, T0 + 0.105,
             T0 + 0.106, T0 + 0.107, T0 + 0.108]
    (packet,) = receiver_with(list(enumerate(times))).build_feedback(SENDER)
    # 0xC000 | 1<<12 | 2<<10 | 1<<8 | 1<<6 | 1<<4 | 1<<2 | 1 = 0xD955; then 0x2003.
    deltas = "a0" "0190" + "04" * 8
    expected = header(8, True) + "0000" "000a" "00000f" "00" + "d955" "2003" + deltas + "01"
    assert packet.hex() == expected


def test_reordering_gives_a_negative_delta():
    # seq 2 arrives before seq 1: in sequence order the last delta is -1 ms (-4 ticks).
    r = receiver_with([(0, T0), (2, T0 + 0.001), (1, T0 + 0.002)])
    (packet,) = r.build_feedback(SENDER)
    # two-bit vector 1 1 2 = 0xD600; deltas a0, 08, fffc.
    expected = header(6, True) + "0000" "0003" "00000f" "00" + "d600" + "a008fffc" + "0002"
    assert packet.hex() == expected
    fb = parse_feedback(packet)
    assert [(p.seq, p.arrival_us) for p in fb.received] == [
        (0, 1_000_000), (1, 1_002_000), (2, 1_001_000)]


def test_gap_longer_than_8191():
    r = receiver_with([(0, T0), (10000, T0 + 0.01)])
    (packet,) = r.build_feedback(SENDER)
    # [1, 13 x 0] one-bit 0xA000; 8191 x 0 run 0x1FFF; 1795 x 0 run 0x0703; [1] run 0x2001.
    expected = (header(7, True) + "0000" "2711" "00000f" "00" + "a000" "1fff" "0703" "2001"
                + "a0" "28" + "0002")
    assert packet.hex() == expected
    fb = parse_feedback(packet)
    assert fb.status_count == 10001
    assert [p.seq for p in fb.received] == [0, 10000]
    assert len(fb.lost()) == 9999


def test_sequence_wraps_from_65535_to_0():
    r = receiver_with([(65533 + i, T0 + i * 0.001) for i in range(3)]
                      + [(i, T0 + 0.003 + i * 0.001) for i in range(2)])
    (packet,) = r.build_feedback(SENDER)
    expected = header(6, True) + "fffd" "0005" "00000f" "00" + "2005" + "a0" + "04" * 4 + "01"
    assert packet.hex() == expected
    fb = parse_feedback(packet)
    assert [p.seq for p in fb.received] == [65533, 65534, 65535, 0, 1]
    r.on_packet(2, T0 + 0.01)
    r.on_packet(3, T0 + 0.011)
    fb2 = parse_feedback(r.build_feedback(SENDER)[0])
    assert fb2.base_seq == 2 and fb2.status_count == 2


def test_padding_matches_the_length():
    # 5 deltas + 1 chunk + 20 = 27 bytes → 1 byte of padding, P bit set, last byte 1.
    r = receiver_with([(i, T0 + i * 0.001) for i in range(5)])
    (packet,) = r.build_feedback(SENDER)
    assert len(packet) == 28 and packet[0] & 0x20 and packet[-1] == 1
    # Without padding the P bit is clear.
    r = receiver_with([(i, T0 + i * 0.001) for i in range(6)])
    (packet,) = r.build_feedback(SENDER)
    assert len(packet) == 28 and not packet[0] & 0x20


# --- late packets, duplicates, history --------------------------------------------------------


def test_late_packet_is_re_reported_and_a_duplicate_changes_nothing():
    r = receiver_with([(0, T0), (1, T0 + 0.001), (3, T0 + 0.003)])
    fb1 = parse_feedback(r.build_feedback(SENDER)[0])
    assert fb1.statuses == bytes([1, 1, 0, 1])
    assert r.on_packet(2, T0 + 0.050)  # late, after it was reported lost
    fb2 = parse_feedback(r.build_feedback(SENDER)[0])
    assert fb2.base_seq == 2 and fb2.fb_count == 1
    assert [(p.seq, p.arrival_us) for p in fb2.received] == [(2, 1_050_000), (3, 1_003_000)]
    # A duplicate of a recorded packet: not recorded, nothing re-reported.
    assert not r.on_packet(1, T0 + 0.06)
    assert not r.on_packet(2, T0 + 0.06)
    assert r.duplicates == 2
    assert r.build_feedback(SENDER) == []


def test_late_packet_beyond_the_history_is_refused():
    r = receiver_with([(i, T0 + i * 0.01) for i in range(10)])
    r.build_feedback(SENDER)
    r.on_packet(10, T0 + 1.0)  # everything reported: arrivals older than 0.5 s are dropped
    assert len(r) == 1
    assert not r.on_packet(5, T0 + 1.001)
    assert r.refused == 1
    fb = parse_feedback(r.build_feedback(SENDER)[0])
    assert [p.seq for p in fb.received] == [10]


def test_late_packet_before_the_first_one_is_taken():
    r = receiver_with([(100, T0), (101, T0 + 0.001), (99, T0 + 0.002)])
    fb = parse_feedback(r.build_feedback(SENDER)[0])
    assert fb.base_seq == 99
    assert [p.seq for p in fb.received] == [99, 100, 101]


def test_history_is_kept_until_reported():
    # No feedback for a while: nothing is dropped, whatever the arrival times.
    r = receiver_with([(i, T0 + i * 0.1) for i in range(30)])
    assert len(r) == 30
    fb = parse_feedback(r.build_feedback(SENDER)[0])
    assert len(fb.received) == 30


# --- packet limits ----------------------------------------------------------------------------


def test_split_into_several_packets():
    r = receiver_with([(i, T0 + i * 0.001) for i in range(100)])
    packets = r.build_feedback(SENDER, max_packet_size=64)
    assert [len(p) for p in packets] == [64, 64, 40]
    parsed = [parse_feedback(p) for p in packets]
    # 20-byte header + one run-length chunk + 42 one-byte deltas = 64.
    assert [(f.base_seq, f.status_count, f.fb_count) for f in parsed] == [
        (0, 42, 0), (42, 42, 1), (84, 16, 2)]
    seen = [p.seq for f in parsed for p in f.received]
    assert seen == list(range(100))
    # Each packet carries its own reference time: the arrivals come out right.
    for f in parsed:
        for p in f.received:
            assert abs(p.arrival_us - round((T0 + p.seq * 0.001) * 1e6)) <= 125


def test_split_with_a_large_gap_and_mixed_chunks_stays_within_the_size():
    rng = random.Random(7)
    arrivals = []
    t = T0
    for seq in range(3000):
        t += rng.choice((0.0005, 0.002, 0.07))
        if rng.random() < 0.2:
            continue  # lost
        arrivals.append((seq, t))
    r = receiver_with(arrivals)
    packets = r.build_feedback(SENDER, max_packet_size=200)
    assert len(packets) > 5
    assert all(len(p) <= 200 for p in packets)
    got = {p.seq: p.arrival_us for pkt in packets for p in parse_feedback(pkt).received}
    assert set(got) == {s for s, _ in arrivals}
    for s, t in arrivals:
        assert abs(got[s] - round(t * 1e6)) <= 125


def test_delta_too_large_for_16_bits_starts_a_new_packet():
    # 9 s between two arrivals (over 8191.75 ms): the second gets its own reference time.
    r = receiver_with([(0, T0), (1, T0 + 9.0)])
    p1, p2 = r.build_feedback(SENDER)
    assert p1.hex() == header(5, True) + "0000" "0001" "00000f" "00" + "2001" "a0" + "01"
    # 10 s = 156 x 64 ms + 16 ms (64 ticks).
    assert p2.hex() == header(5, True) + "0001" "0001" "00009c" "01" + "2001" "40" + "01"
    # The same backwards: a packet 9 s earlier in arrival, later in sequence.
    r = receiver_with([(1, T0), (0, T0 + 9.0)])
    p1, p2 = r.build_feedback(SENDER)
    assert parse_feedback(p1).status_count == 1 and parse_feedback(p2).base_seq == 1


def test_feedback_packet_count_wraps():
    r = TransportCcReceiver()
    for i in range(300):
        r.on_packet(i, T0 + i * 0.1)
        (packet,) = r.build_feedback(SENDER)
        fb = parse_feedback(packet)
        assert fb.fb_count == i & 0xFF
        assert fb.base_seq == i and fb.status_count == 1
        assert fb.reference_time == round((T0 + i * 0.1) * 1e6) // 64_000
    assert r.feedback_packets == 300


def test_long_missing_run_moves_the_base_forward():
    r = TransportCcReceiver(max_leading_missing=100)
    r.on_packet(0, T0)
    r.build_feedback(SENDER)
    r.on_packet(500, T0 + 0.01)
    fb = parse_feedback(r.build_feedback(SENDER)[0])
    # 499 missing before 500; only the last 100 are reported.
    assert fb.base_seq == 400 and fb.status_count == 101
    assert fb.lost() == list(range(400, 500))


def test_the_widest_span_still_encodes():
    # The status count never needs to pass 0xFFFF: the table spans at most 32768.
    r = TransportCcReceiver(max_span=1 << 15)
    r.on_packet(0, T0)
    r.build_feedback(SENDER)
    r.on_packet(32000, T0 + 0.01)
    (packet,) = r.build_feedback(SENDER)
    fb = parse_feedback(packet)
    assert fb.base_seq == 1 and fb.status_count == 32000
    assert len(packet) == 20 + 2 * 5 + 2  # four 8191-runs (the last partial) + the arrival


# --- bounds -----------------------------------------------------------------------------------


def test_table_is_bounded_whatever_a_stranger_sends():
    rng = random.Random(3)
    r = TransportCcReceiver(max_span=1024)
    t = T0
    for i in range(20000):
        t += 0.0001
        r.on_packet(rng.getrandbits(16), t, rng.getrandbits(32))
        assert len(r) <= 1024
        if i % 500 == 0:
            for packet in r.build_feedback(SENDER):
                assert parse_feedback(packet).status_count <= 1024
    assert r._capacity <= 1024
    assert r.resets > 0 and r.evicted > 0


def test_span_bound_evicts_the_oldest_and_counts_them():
    r = TransportCcReceiver(max_span=64)
    for i in range(10):
        r.on_packet(i, T0 + i * 0.001)
    r.on_packet(70, T0 + 0.02)  # needs 71 numbers: 0..6 go
    assert len(r) <= 64
    assert r.evicted == 7
    fb = parse_feedback(r.build_feedback(SENDER)[0])
    assert [p.seq for p in fb.received] == [7, 8, 9, 70]
    assert not r.on_packet(3, T0 + 0.03)  # below what was dropped
    assert r.refused == 1
    r.on_packet(70 + 64, T0 + 0.04)  # a jump of the whole span: start over
    assert r.resets == 1 and len(r) == 1


def test_max_packet_size_must_leave_room():
    with pytest.raises(ValueError):
        TransportCcReceiver().build_feedback(SENDER, max_packet_size=40)
    with pytest.raises(ValueError):
        TransportCcReceiver(max_span=1000)


# --- the feedback interval --------------------------------------------------------------------


def test_feedback_interval():
    assert feedback_interval(None) == 0.1
    assert feedback_interval(0) == 0.25
    assert feedback_interval(20_000) == 0.25  # 5 % is 1000 bps: below a report per 250 ms
    assert feedback_interval(200_000) == pytest.approx(544 / 10_000)  # 68 bytes at 10 kbps
    assert feedback_interval(100_000) == pytest.approx(544 / 5_000)
    assert feedback_interval(1_000_000) == 0.05
    values = [feedback_interval(b) for b in range(0, 2_000_000, 10_000)]
    assert all(0.05 <= v <= 0.25 for v in values)
    assert values == sorted(values, reverse=True)


# --- the parser -------------------------------------------------------------------------------


def test_parser_reads_what_the_rtcp_module_passes_through():
    r = receiver_with([(i, T0 + i * 0.001) for i in range(5)])
    (packet,) = r.build_feedback(SENDER)
    (tf,) = parse_compound(packet).packets
    assert isinstance(tf, TransportFeedback)
    fb = parse_feedback(tf.data)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.status_count) == (SENDER, MEDIA, 0, 5)
    assert fb.reference_time == 15 and fb.reference_time_us == 960_000
    assert [p.received for p in fb.packets()] == [True] * 5


def test_parser_reads_a_foreign_layout():
    # As older libwebrtc writes: zero padding without the P bit; a last run-length chunk
    # longer than the count (clamped); a negative reference time.
    body = (struct.pack("!IIHHI", 1, 2, 7, 3, (0xFFFFFF << 8) | 9)
            + struct.pack("!H", 0x2000 | 5) + b"\x01\x02\x03" + b"\x00\x00\x00")
    packet = struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body
    fb = parse_feedback(packet)
    assert fb.reference_time == -1 and fb.fb_count == 9 and fb.status_count == 3
    assert [(p.seq, p.delta_us, p.arrival_us) for p in fb.received] == [
        (7, 250, -64000 + 250), (8, 500, -64000 + 750), (9, 750, -64000 + 1500)]


def collect(r: TransportCcReceiver, size: int, got: dict[int, int]) -> None:
    """Build the feedback due, check it, and note every reported arrival in ``got``."""
    for packet in r.build_feedback(SENDER, size):
        assert len(packet) <= size
        fb = parse_feedback(packet)
        assert len(fb.packets()) == fb.status_count
        for p in fb.received:
            got[p.seq] = p.arrival_us


def test_round_trip_random_streams():
    rng = random.Random(11)
    for _ in range(60):
        r = TransportCcReceiver(max_span=rng.choice((256, 4096, 16384)))
        start = rng.getrandbits(16)
        t = rng.uniform(0, 1000)
        truth: dict[int, int] = {}
        size = rng.choice((64, 100, 300, 1200))
        got: dict[int, int] = {}
        every = rng.randrange(1, 60)
        seqs = list(range(rng.randrange(1, 600)))
        for i in range(len(seqs) - 1):  # some reordering
            if rng.random() < 0.05:
                seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
        newest = -1
        for s in seqs:
            t += rng.choice((0.0, 0.0003, 0.001, 0.02, 0.1, 0.5))
            if rng.random() < 0.1:
                continue
            wide = (start + s) & 0xFFFF
            if not r.on_packet(wide, t, 5):
                assert s < newest  # only a late packet, once its slot left the history
                continue
            newest = max(newest, s)
            truth[wide] = round(t * 1e6)
            if len(truth) % every == 0:
                collect(r, size, got)
        collect(r, size, got)
        assert set(got) == set(truth)
        for s, us in truth.items():
            assert abs(got[s] - us) <= 125


def test_parser_rejects_malformed_input():
    r = receiver_with([(0, T0), (1, T0 + 0.001), (2, T0 + 0.101), (4, T0 + 0.102)])
    (good,) = r.build_feedback(SENDER)
    content = len(good) - good[-1]  # without padding
    for cut in range(len(good)):
        with pytest.raises(TransportCcParseError):
            parse_feedback(good[:cut])
        if cut % 4 == 0 and 4 <= cut < content:
            # The length field made to agree, the P bit cleared: the content is short.
            short = bytearray(good[:cut])
            short[0] &= ~0x20
            short[2:4] = struct.pack("!H", cut // 4 - 1)
            with pytest.raises(TransportCcParseError):
                parse_feedback(bytes(short))

    def variant(**fields) -> bytes:
        data = bytearray(good)
        for offset, value in fields.values():
            data[offset] = value
        return bytes(data)

    bad = [
        variant(version=(0, 0x4F)),
        variant(pt=(1, 206)),
        variant(fmt=(0, 0xA1)),
        variant(count_hi=(14, 0), count_lo=(15, 0)),  # status count 0
        variant(count_lo=(15, 7), chunk2=(21, 0x11)),  # a 7th arrival without its delta
        variant(chunk=(20, 0x60), chunk2=(21, 0x05)),  # run of the reserved symbol 3
        variant(chunk=(20, 0xFF), chunk2=(21, 0xFF)),  # two-bit vector of symbol 3
        variant(padding=(len(good) - 1, 0)),
        variant(padding=(len(good) - 1, 200)),
        variant(length=(3, good[3] + 1)),  # one word more than there is
        variant(length=(3, good[3] - 1)),  # one word less than there is
        good + b"\x00\x00\x00\x00",  # a second packet's worth of bytes
        b"\x8f\xcd\x00\x07" + good[4:-1] + b"\x00" * 5,  # 5 bytes left after the deltas
    ]
    for data in bad:
        with pytest.raises(TransportCcParseError):
            parse_feedback(data)
    # Symbol 3 is reserved, even where its "deltas" would be there.
    reserved = struct.pack("!BBHIIHHI", 0x8F, 205, 6, 1, 2, 0, 1, 0) + b"\x60\x01" + bytes(6)
    with pytest.raises(TransportCcParseError, match="reserved"):
        parse_feedback(reserved)
    for junk in (None, 123, "text", [1, 2]):
        with pytest.raises(TransportCcParseError):
            parse_feedback(junk)  # type: ignore[arg-type]
    assert issubclass(TransportCcParseError, RtcpParseError)
    assert issubclass(TransportCcParseError, ValueError)


def test_parser_never_raises_anything_else_on_garbage():
    rng = random.Random(5)
    r = receiver_with([(i, T0 + i * rng.choice((0.001, 0.07))) for i in range(200)
                       if rng.random() < 0.8])
    samples = r.build_feedback(SENDER, 300)
    for _ in range(4000):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        try:
            fb = parse_feedback(bytes(data))
        except TransportCcParseError:
            continue
        assert 1 <= fb.status_count <= 0xFFFF
        assert len(fb.statuses) == fb.status_count
    for _ in range(3000):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        if len(junk) >= 4 and rng.random() < 0.7:  # make the header plausible
            junk = bytes([0x8F | (junk[0] & 0x20), 205]) + struct.pack(
                "!H", len(junk) // 4 - 1) + junk[4:len(junk) // 4 * 4]
        try:
            parse_feedback(junk)
        except TransportCcParseError:
            pass


def test_parser_work_is_bounded_by_the_packet_size():
    # 24 bytes claiming 65535 lost packets: the statuses are a cheap run, nothing per packet.
    body = struct.pack("!IIHHI", 1, 2, 0, 0xFFFF, 0) + struct.pack("!9H", *([0x1FFF] * 9)) + bytes(2)
    packet = struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body
    fb = parse_feedback(packet)
    assert fb.status_count == 0xFFFF and fb.received == [] and len(fb.statuses) == 0xFFFF
    # The same claiming 65535 received packets fails at once (no delta bytes).
    body = struct.pack("!IIHHI", 1, 2, 0, 0xFFFF, 0) + struct.pack("!9H", *([0x3FFF] * 9)) + bytes(2)
    packet = struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body
    with pytest.raises(TransportCcParseError):
        parse_feedback(packet)


# --- the chunk encoder against a symbol-by-symbol model of libwebrtc's LastChunk ---------------


class LastChunkModel:
    """libwebrtc's TransportFeedback::LastChunk, one symbol at a time (the reference)."""

    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.syms: list[int] = []  # every pending symbol
        self.same = True
        self.large = False

    def can_add(self, s: int) -> bool:
        n = len(self.syms)
        if n < 7:
            return True
        if n < 14 and not self.large and s != 2:
            return True
        return n < 8191 and self.same and self.syms[0] == s

    def set_pending(self, syms: list[int]) -> None:
        self.syms = syms
        self.same = all(x == syms[0] for x in syms)
        self.large = 2 in syms

    def emit(self) -> None:
        syms = self.syms
        if self.same:
            self.chunks.append((syms[0] << 13) | len(syms))
            self.set_pending([])
        elif len(syms) == 14:
            self.chunks.append(0x8000 | sum(s << (13 - i) for i, s in enumerate(syms)))
            self.set_pending([])
        else:
            self.chunks.append(0xC000 | sum(s << (2 * (6 - i)) for i, s in enumerate(syms[:7])))
            self.set_pending(syms[7:])

    def add(self, s: int) -> None:
        if not self.can_add(s):
            self.emit()
        self.syms.append(s)
        self.same = self.same and s == self.syms[0]
        self.large = self.large or s == 2

    def encoded(self) -> list[int]:
        syms = self.syms
        if not syms:
            return self.chunks
        if self.same:
            last = (syms[0] << 13) | len(syms)
        elif len(syms) <= 7:
            last = 0xC000 | sum(s << (2 * (6 - i)) for i, s in enumerate(syms))
        else:
            last = 0x8000 | sum(s << (13 - i) for i, s in enumerate(syms))
        return [*self.chunks, last]


def test_chunk_encoder_matches_libwebrtcs_greedy_choice():
    from relay.rtp.transport_cc import encode_chunks

    rng = random.Random(9)
    for case in range(400):
        runs: list[tuple[int, int]] = []
        for _ in range(rng.randrange(1, 25)):
            sym = rng.choice((0, 1, 1, 1, 2))
            runs.append((sym, rng.choice((1, 1, 2, 3, 6, 7, 8, 13, 14, 15, 40))))
        if case % 20 == 0:  # a run past the run-length maximum
            runs.insert(rng.randrange(len(runs) + 1), (rng.choice((0, 1, 2)), 8191 + 700))
        model = LastChunkModel()
        for sym, count in runs:
            for _ in range(count):
                model.add(sym)
        assert encode_chunks(runs) == model.encoded(), runs


# --- the fast paths give what the general ones give ------------------------------------------


def _slow_receiver(**kw) -> TransportCcReceiver:
    """A receiver whose feedback is always built arrival by arrival."""
    r = TransportCcReceiver(**kw)
    r._build_whole = lambda *args: None  # type: ignore[method-assign]
    return r


@pytest.mark.parametrize("seed", range(3))
def test_bulk_feedback_is_byte_for_byte_the_general_one(seed):
    """Random windows: loss, reordering (negative deltas), gaps in time (large deltas),
    times on 125 µs ties, long missing runs, windows too big for one packet; the bulk
    encoder must give the bytes the arrival-by-arrival one gives, or leave it to it."""
    rng = random.Random(seed)
    fast, slow = TransportCcReceiver(), _slow_receiver()
    seq, t, took_bulk = 60000, 5.0, 0
    for _ in range(60):
        n = rng.choice((1, 3, 20, 200, 1500))
        tie = rng.random() < 0.3
        for _ in range(n):
            r = rng.random()
            if r < 0.05:
                seq += rng.choice((1, 3, 40, 9000))  # loss, or a long missing run
            t += rng.choice((0.0, 0.000125, 0.000250, 0.001)) if tie else rng.expovariate(2000)
            if rng.random() < 0.01:
                t += 0.1  # a large delta
            s = seq
            if rng.random() < 0.03:
                s -= rng.randint(1, 5)  # late (reordered) or a duplicate
            else:
                seq += 1
            fast.on_packet(s & 0xFFFF, t, MEDIA)
            slow.on_packet(s & 0xFFFF, t, MEDIA)
        before = fast.feedback_packets
        size = rng.choice((1200, 200, 64))
        out = fast.build_feedback(SENDER, size)
        assert out == slow.build_feedback(SENDER, size)
        took_bulk += len(out) == 1 and fast.feedback_packets == before + 1
        assert (fast.packets, fast.duplicates, fast.refused, fast.evicted) == \
            (slow.packets, slow.duplicates, slow.refused, slow.evicted)
    assert took_bulk > 10


@pytest.mark.parametrize("seed", range(4))
def test_bulk_feedback_of_more_than_one_packet_is_byte_for_byte_the_general_one(seed):
    """High rates without loss: a feedback interval holds more arrivals than one packet
    (at 25,000 pkt/s, 50 ms is 1,250); the bulk encoder fills each packet with the first
    arrivals that fit, as the general one does, a leading missing run included."""
    rng = random.Random(100 + seed)
    fast, slow = TransportCcReceiver(), _slow_receiver()
    seq, t, took_bulk = 65000, 5.0, 0
    for _ in range(30):
        if rng.random() < 0.4:
            seq += rng.choice((1, 2, 13, 300, 9000))  # lost just after the last feedback
        for _ in range(rng.choice((900, 1177, 1178, 1179, 1250, 2600, 9000))):
            t += rng.choice((0.00004, 0.000125, 0.0002))
            fast.on_packet(seq & 0xFFFF, t, MEDIA)
            slow.on_packet(seq & 0xFFFF, t, MEDIA)
            seq += 1
        before = fast.feedback_packets
        size = rng.choice((1200, 1200, 200, 64))
        out = fast.build_feedback(SENDER, size)
        assert out == slow.build_feedback(SENDER, size)
        took_bulk += len(out) > 1 and fast.feedback_packets == before + len(out)
    assert took_bulk > 10


def _chrome_packet(seq: int, wide: int | None, layout: int) -> bytearray:
    """Chrome-like one-byte extensions in a few layouts: abs-send-time first (the usual),
    audio level first, transport-cc first, with padding bytes, a two-byte form, the
    element missing, or the RTP padding bit set (a probe)."""
    if wide is None:
        exts = {2: b"\x01\x02\x03"}
    elif layout == 0:
        exts = {2: b"\x01\x02\x03", 3: wide.to_bytes(2, "big"), 4: b"0"}
    elif layout == 1:
        exts = {1: b"\x90", 3: wide.to_bytes(2, "big")}
    else:
        exts = {3: wide.to_bytes(2, "big"), 2: b"\x01\x02\x03"}
    two_byte = layout == 4 and wide is not None
    packet = bytearray(build_rtp(payload_type=96, sequence_number=seq & 0xFFFF, timestamp=0,
                                 ssrc=0x1234, payload=b"\x33" * 30, extensions=exts,
                                 padding=4 if layout == 5 else 0,
                                 two_byte_extensions=two_byte))
    if layout == 3 and wide is not None:  # a padding byte before the element: not the usual
        packet[16:16] = b"\x00\x00\x00\x00"
        packet[15] += 1
    return packet


def test_on_rtp_records_what_on_packet_records():
    """Every layout change, reordering, duplicates, loss, wrap-around and feedback rounds
    in between: on_rtp (fast path or not) leaves the receiver as on_packet does."""
    rng = random.Random(7)
    fast, slow = TransportCcReceiver(ext_id=3), TransportCcReceiver()
    wide, t = 65000, 1.0
    layout = 0
    for i in range(3000):
        if rng.random() < 0.02:
            layout = rng.randrange(6)
        w: int | None = wide
        r = rng.random()
        if r < 0.02:
            w = wide - rng.randint(1, 30)  # late or duplicate
        elif r < 0.04:
            wide += rng.randint(1, 50)  # loss
            w = wide
        elif r < 0.045:
            w = None  # no transport-cc element
        t += rng.expovariate(1000)
        packet = _chrome_packet(i, None if w is None else w & 0xFFFF, layout)
        fast.on_rtp(packet, len(packet), 0x1234, t)
        if w is not None:
            slow.on_packet(w & 0xFFFF, t, 0x1234)
            if w == wide:
                wide += 1
        assert fast.packets == slow.packets
        if rng.random() < 0.01:
            assert fast.build_feedback(SENDER) == slow.build_feedback(SENDER)
    assert fast.build_feedback(SENDER) == slow.build_feedback(SENDER)
    assert (fast.packets, fast.duplicates, fast.refused, len(fast)) == \
        (slow.packets, slow.duplicates, slow.refused, len(slow))
    assert fast.packets > 2500


def test_on_rtp_never_reads_past_a_short_packet():
    r = TransportCcReceiver(ext_id=3)
    packet = _chrome_packet(1, 100, 0)
    r.on_rtp(packet, len(packet), 1, 1.0)  # caches the layout
    for cut in range(len(packet)):
        r.on_rtp(bytes(packet[:cut]), cut, 1, 1.0)  # no exception
    assert r.packets == 1
