import pytest

from relay.rtp.receive_stats import (
    NTP_EPOCH_OFFSET,
    NtpRtpMapping,
    ReceiveStats,
    SendStats,
    build_sender_report,
    compact_ntp,
    ntp_from_unix,
    ntp_to_unix,
    rtt_from_report_block,
)
from relay.rtp.rtcp import ReportBlock, SenderReport, parse_compound


def feed(stats: ReceiveStats, seqs, now=0.0):
    for seq in seqs:
        assert stats.on_packet(seq, 0, now, size=100)


def test_loss_and_fraction_lost_per_interval():
    stats = ReceiveStats(90000)
    feed(stats, [0, 1, 2, 5, 6, 7, 8, 9])  # 3 and 4 lost
    block = stats.report_block(ssrc=0xABCD, now=1.0)
    assert block.ssrc == 0xABCD
    assert block.highest_sequence == 9
    assert block.packets_lost == 2
    assert block.fraction_lost == (2 << 8) // 10  # 51
    assert stats.bytes_received == 800

    feed(stats, range(10, 20))  # a clean interval: fraction 0, cumulative unchanged
    block = stats.report_block(ssrc=0xABCD, now=2.0)
    assert (block.fraction_lost, block.packets_lost, block.highest_sequence) == (0, 2, 19)

    feed(stats, [20, 23])  # 2 lost of 4 expected
    assert stats.report_block(ssrc=0xABCD, now=3.0).fraction_lost == 128


def test_sequence_wrap_extends_highest_sequence():
    stats = ReceiveStats(48000)
    seqs = list(range(65530, 65536)) + list(range(0, 6))
    feed(stats, seqs)
    assert stats.cycles == 65536
    assert stats.extended_highest_sequence == 65536 + 5
    assert stats.expected == 12
    assert stats.cumulative_lost == 0
    block = stats.report_block(1, 0.0)
    assert block.highest_sequence == 0x00010005


def test_reordering_and_duplicates():
    stats = ReceiveStats(90000)
    feed(stats, [10, 12, 11, 13])  # reordered: nothing lost
    assert stats.cumulative_lost == 0
    assert stats.extended_highest_sequence == 13
    feed(stats, [13])  # duplicate: counted, so cumulative loss goes negative (RFC 3550 6.4.1)
    assert stats.cumulative_lost == -1
    block = stats.report_block(1, 0.0)
    assert block.packets_lost == -1 and block.fraction_lost == 0
    parsed = ReportBlock.parse(block.serialize(), 0)
    assert parsed.packets_lost == -1


def test_large_jump_needs_two_sequential_packets():
    stats = ReceiveStats(90000)
    feed(stats, range(5))
    assert stats.on_packet(20000, 0, 0.0) is False  # not counted, remembered
    assert stats.dropped_out_of_range == 1
    assert stats.extended_highest_sequence == 4
    assert stats.on_packet(20001, 0, 0.0) is True  # follows it: the sender restarted
    assert stats.restarts == 1
    assert stats.base_seq == 20001 and stats.extended_highest_sequence == 20001
    assert stats.expected == 1 and stats.received == 1


def test_jitter_after_known_arrivals():
    # 20 ms packets at 90 kHz (1800 ticks each); the third arrives 5 ms late.
    stats = ReceiveStats(90000)
    stats.on_packet(0, 0, 0.000)
    stats.on_packet(1, 1800, 0.020)  # transit unchanged: J = 0
    assert stats.jitter == 0
    stats.on_packet(2, 3600, 0.045)  # D = 450: J = 450/16 = 28.125
    assert stats.jitter == 28
    assert stats.jitter_seconds == pytest.approx(28.125 / 90000)
    stats.on_packet(3, 5400, 0.060)  # D = -450: J = 28.125 + (450 - 28.125)/16 = 54.49
    assert stats.jitter == 54
    assert stats.report_block(1, 0.1).jitter == 54


def test_jitter_ignores_retransmissions_and_reordered_packets():
    stats = ReceiveStats(90000)
    stats.on_packet(0, 0, 0.000)
    stats.on_packet(2, 3600, 0.040)
    stats.on_packet(1, 1800, 0.500)  # reordered: not in order, no jitter update
    assert stats.jitter == 0
    stats.on_packet(3, 5400, 0.500, retransmission=True)  # in order but a (late) repair
    assert stats.jitter == 0
    assert stats.cumulative_lost == 0
    stats.on_packet(4, 7200, 0.500)  # a late original does count: D = 45000 - 7200 = 37800
    assert stats.jitter == 37800 // 16


def test_jitter_across_rtp_timestamp_wrap():
    stats = ReceiveStats(90000)
    start = (1 << 32) - 900
    stats.on_packet(0, start, 0.0)
    stats.on_packet(1, (start + 1800) & 0xFFFFFFFF, 0.020)
    assert stats.jitter == 0


def test_lsr_dlsr_from_last_sender_report():
    stats = ReceiveStats(90000)
    feed(stats, [1])
    assert (stats.report_block(1, 0.0).lsr, stats.report_block(1, 0.0).dlsr) == (0, 0)
    sr = SenderReport(ssrc=5, ntp_timestamp=0x0102030405060708, rtp_timestamp=1000,
                      packet_count=0, octet_count=0)
    stats.on_sender_report(sr, now=10.0)
    block = stats.report_block(5, now=10.5)
    assert block.lsr == 0x03040506
    assert block.dlsr == 32768  # 0.5 s in 1/65536 s
    assert stats.mapping() == NtpRtpMapping(0x0102030405060708, 1000, 90000)


def test_rtt_rfc3550_example():
    # RFC 3550 6.4.1 figure: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000.
    block = ReportBlock(ssrc=1, lsr=0xB7052000, dlsr=0x00054000)
    arrival = 0xB7108000 << 16
    assert compact_ntp(arrival) == 0xB7108000
    assert rtt_from_report_block(block, arrival) == 6.125
    assert rtt_from_report_block(ReportBlock(ssrc=1), arrival) is None
    # A report claiming more delay than elapsed: clamped to 0.
    assert rtt_from_report_block(ReportBlock(ssrc=1, lsr=0xB7108000, dlsr=0x10), arrival) == 0.0


def test_rtt_round_trip_through_our_own_sr_and_rr():
    # Sender side sends an SR at t0; receiver answers 0.25 s later; it arrives at t0 + 0.4.
    t0 = ntp_from_unix(1_700_000_000.0)
    sender_sr = SenderReport(ssrc=9, ntp_timestamp=t0, rtp_timestamp=0, packet_count=0,
                             octet_count=0)
    receiver = ReceiveStats(90000)
    feed(receiver, [1, 2, 3])
    receiver.on_sender_report(sender_sr, now=100.0)
    block = receiver.report_block(9, now=100.25)
    arrival = ntp_from_unix(1_700_000_000.4)
    assert rtt_from_report_block(block, arrival) == pytest.approx(0.15, abs=1 / 65536 * 2)


def test_ntp_conversions():
    assert ntp_from_unix(0.0) == NTP_EPOCH_OFFSET << 32
    assert ntp_from_unix(1.5) == ((NTP_EPOCH_OFFSET + 1) << 32) | 0x80000000
    assert ntp_to_unix(ntp_from_unix(1234.25)) == 1234.25


def test_ntp_rtp_mapping():
    n0 = ntp_from_unix(1000.0)
    mapping = NtpRtpMapping(n0, 1000, 90000)
    assert mapping.rtp_timestamp_at(n0) == 1000
    assert mapping.rtp_timestamp_at(n0 + (1 << 31)) == 1000 + 45000  # +0.5 s
    assert mapping.rtp_timestamp_at(n0 - (1 << 32)) == (1000 - 90000) & 0xFFFFFFFF  # -1 s
    wrapping = NtpRtpMapping(n0, 0xFFFFFFFF - 10, 48000)
    assert wrapping.rtp_timestamp_at(n0 + (1 << 32)) == 48000 - 11


def test_consumer_sender_report_from_producer_mapping():
    producer_sr_ntp = ntp_from_unix(5000.0)
    mapping = NtpRtpMapping(producer_sr_ntp, 123456, 90000)
    stats = SendStats()
    for size in (1000, 1100, 900):
        stats.on_packet(size)
    stats.on_packet(1000, retransmission=True)  # not in the SR counters
    now = producer_sr_ntp + (1 << 32) * 2  # 2 s later
    sr = build_sender_report(
        ssrc=0xC0FFEE, ntp=now, mapping=mapping, stats=stats, timestamp_offset=-123456
    )
    assert sr.rtp_timestamp == 180000  # 2 s of 90 kHz after the producer's 123456, re-based
    assert (sr.packet_count, sr.octet_count) == (3, 3000)
    assert (stats.retransmitted_packets, stats.retransmitted_octets) == (1, 1000)
    parsed = parse_compound(sr.serialize()).packets[0]
    assert parsed == sr
    assert parsed.ntp_timestamp == now and parsed.ssrc == 0xC0FFEE


def test_bad_clock_rate_rejected():
    with pytest.raises(ValueError):
        ReceiveStats(0)
