import random

import pytest

from relay.rtp.nack_buffer import NackBuffer, RtxStream, parse_rtx_packet
from relay.rtp.nack_generator import NackGenerator
from relay.rtp.rtcp import Nack, parse_compound


def test_gap_is_nacked_at_once_and_recovery_clears_it():
    gen = NackGenerator()
    assert gen.on_packet(1, now=0.0) == []
    assert gen.on_packet(2, now=0.0) == []
    assert gen.on_packet(5, now=0.0) == [3, 4]
    assert gen.pending == [3, 4]
    assert gen.on_packet(3, now=0.01) == []  # the retransmission arrives
    assert gen.pending == [4]
    assert gen.stats.recovered == 1
    assert gen.stats.nacks_sent == 2
    assert not gen.take_keyframe_request()


def test_duplicates_and_late_unlisted_packets_are_ignored():
    gen = NackGenerator()
    gen.on_packet(10, now=0.0)
    gen.on_packet(12, now=0.0)
    assert gen.on_packet(12, now=0.0) == []  # duplicate of the newest
    assert gen.on_packet(11, now=0.0) == []  # recovered
    assert gen.on_packet(11, now=0.0) == []  # duplicate of a recovered one
    assert gen.on_packet(9, now=0.0) == []  # older than anything seen: not a loss
    assert gen.stats.recovered == 1
    assert len(gen) == 0


def test_wrap_around():
    gen = NackGenerator()
    gen.on_packet(65534, now=0.0)
    assert gen.on_packet(65535, now=0.0) == []
    assert gen.on_packet(2, now=0.0) == [0, 1]
    assert gen.on_packet(0, now=0.0) == []
    assert gen.pending == [1]


def test_retries_spaced_by_rtt_and_bounded():
    gen = NackGenerator(max_retries=3, rtt=0.1)
    gen.on_packet(1, now=0.0)
    assert gen.on_packet(3, now=0.0) == [2]  # NACK 1 of 3
    assert gen.on_timer(now=0.05) == []  # before one RTT
    assert gen.on_timer(now=0.1) == [2]  # NACK 2
    assert gen.on_timer(now=0.15) == []
    assert gen.on_timer(now=0.2) == [2]  # NACK 3
    assert not gen.take_keyframe_request()
    assert gen.on_timer(now=0.3) == []  # out of retries: given up
    assert gen.pending == []
    assert gen.stats.given_up == 1
    assert gen.stats.nacks_sent == 3
    assert gen.take_keyframe_request()  # an unrecoverable loss needs a key frame
    assert not gen.take_keyframe_request()  # the flag clears


def test_min_retry_interval_with_tiny_rtt():
    gen = NackGenerator(rtt=0.1)
    gen.set_rtt(0.001)
    gen.on_packet(1, now=0.0)
    gen.on_packet(3, now=0.0)
    assert gen.on_timer(now=0.01) == []
    assert gen.on_timer(now=0.02) == [2]


def test_default_ten_retries():
    gen = NackGenerator()
    gen.on_packet(1, now=0.0)
    gen.on_packet(3, now=0.0)
    sent = 1
    t = 0.0
    while gen.pending:
        t += 0.1
        sent += len(gen.on_timer(now=t))
    assert sent == 10


def test_audio_does_not_request_keyframes():
    gen = NackGenerator(max_retries=1, keyframe_on_unrecoverable=False)
    gen.on_packet(1, now=0.0)
    gen.on_packet(3, now=0.0)
    gen.on_timer(now=1.0)
    assert gen.stats.given_up == 1
    assert not gen.take_keyframe_request()


def test_large_forward_jump_is_a_reset():
    gen = NackGenerator()  # max_nack_packets 1000
    gen.on_packet(10, now=0.0)
    assert gen.on_packet(10 + 1001, now=0.0) == list(range(11, 1011))  # 1000 missing: NACKed
    gen2 = NackGenerator()
    gen2.on_packet(10, now=0.0)
    assert gen2.on_packet(10 + 1002, now=0.0) == []  # 1001 missing: a reset
    assert gen2.stats.resets == 1
    assert gen2.take_keyframe_request()
    assert gen2.on_packet(1013, now=0.0) == []  # continues from the new number
    assert gen2.on_packet(1015, now=0.0) == [1014]


def test_large_backward_jump_is_a_reset():
    gen = NackGenerator()  # max_packet_age 10000
    gen.on_packet(20000, now=0.0)
    gen.on_packet(20002, now=0.0)
    assert gen.on_packet(20002 - 10000, now=0.0) == []  # just a very late packet
    assert gen.stats.resets == 0 and gen.pending == [20001]
    assert gen.on_packet(5000, now=0.0) == []  # 15000 behind: the sender restarted
    assert gen.stats.resets == 1
    assert gen.pending == []
    assert gen.take_keyframe_request()
    assert gen.on_packet(5002, now=0.0) == [5001]


def test_overflow_drops_entries_before_last_keyframe():
    gen = NackGenerator(max_nack_packets=10, max_packet_age=100)
    gen.on_packet(0, now=0.0)
    assert gen.on_packet(6, now=0.0) == [1, 2, 3, 4, 5]
    gen.on_packet(7, now=0.0, is_keyframe=True)
    assert gen.on_packet(14, now=0.0) == [8, 9, 10, 11, 12, 13]  # 5 + 6 > 10
    assert gen.pending == [8, 9, 10, 11, 12, 13]  # 1..5 precede the key frame: dropped
    assert gen.stats.dropped_too_old == 5
    assert not gen.take_keyframe_request()


def test_overflow_without_keyframe_clears_and_requests_one():
    gen = NackGenerator(max_nack_packets=10, max_packet_age=100)
    gen.on_packet(0, now=0.0)
    assert gen.on_packet(6, now=0.0) == [1, 2, 3, 4, 5]
    assert gen.on_packet(13, now=0.0) == []  # 5 + 6 > 10, no key frame to cut at
    assert gen.pending == []
    assert gen.stats.overflows == 1
    assert gen.take_keyframe_request()
    assert gen.on_packet(15, now=0.0) == [14]


def test_entries_too_old_by_sequence_are_dropped():
    gen = NackGenerator(max_nack_packets=10, max_packet_age=20)
    gen.on_packet(0, now=0.0)
    assert gen.on_packet(2, now=0.0) == [1]
    for seq in range(3, 21):
        gen.on_packet(seq, now=0.0)
    assert gen.pending == [1]  # 20 behind: still kept
    gen.on_packet(22, now=0.0)  # now 1 is 21 behind; 21 itself is new and missing
    assert gen.pending == [21]
    assert gen.stats.dropped_too_old == 1
    assert gen.take_keyframe_request()


def test_bad_thresholds():
    with pytest.raises(ValueError):
        NackGenerator(max_nack_packets=100, max_packet_age=50)


def test_memory_is_bounded_under_heavy_loss():
    rng = random.Random(7)
    gen = NackGenerator(max_nack_packets=200, max_packet_age=1000)
    seq = 0
    t = 0.0
    for _ in range(50_000):
        seq = (seq + 1 + (rng.randrange(5) if rng.random() < 0.3 else 0)) & 0xFFFF
        t += 0.001
        gen.on_packet(seq, now=t)
        if rng.random() < 0.05:
            gen.on_timer(now=t)
        assert len(gen) <= 200
    assert len(gen._keyframes) <= 64


def test_lossy_link_repaired_end_to_end():
    """Generator (receiver) + NACK over RTCP + NackBuffer and RTX (sender), no sockets:
    a 10 % lossy link on both the media and the retransmissions still delivers every
    packet when the retry budget is enough."""
    rng = random.Random(42)
    media_ssrc, rtx_ssrc = 0x1111, 0x2222
    buffer = NackBuffer(capacity=2500, max_age=2.0)
    rtx = RtxStream(rtx_ssrc, 97, initial_seq=100)
    gen = NackGenerator(rtt=0.02)
    received: set[int] = set()

    def deliver(packet: bytes, now: float) -> None:
        if rng.random() < 0.10:
            return  # lost on the way
        if int.from_bytes(packet[8:12], "big") == rtx_ssrc:
            packet = parse_rtx_packet(packet, 96, media_ssrc)
        seq = int.from_bytes(packet[2:4], "big")
        received.add(seq)
        nacks = gen.on_packet(seq, now)
        answer_nacks(nacks, now)

    def answer_nacks(seqs: list[int], now: float) -> None:
        if not seqs:
            return
        rtcp = Nack(sender_ssrc=1, media_ssrc=media_ssrc, lost=seqs).serialize()
        for packet in parse_compound(rtcp).packets:
            for seq in packet.lost:
                stored = buffer.get(seq, now)
                if stored is not None:
                    deliver(rtx.wrap(stored), now)

    first = 65000  # crosses the wrap
    count = 2000
    t = 0.0
    for i in range(count):
        seq = (first + i) & 0xFFFF
        packet = b"\x80\x60" + seq.to_bytes(2, "big") + b"\x00" * 4 + media_ssrc.to_bytes(4, "big")
        packet += b"payload"
        buffer.store(seq, packet, t)
        deliver(packet, t)
        t += 0.005
        answer_nacks(gen.on_timer(t), t)
    for _ in range(20):  # let the last retries run (a last packet lost is never detected)
        t += 0.02
        answer_nacks(gen.on_timer(t), t)
    expected = {(first + i) & 0xFFFF for i in range(count)}
    missing = expected - received
    assert missing <= {(first + count - 1) & 0xFFFF}  # only a lost tail can't be detected
    assert gen.stats.given_up == 0
    assert buffer.stats.hits == rtx.packets_sent > 150
    assert gen.stats.recovered >= 150
