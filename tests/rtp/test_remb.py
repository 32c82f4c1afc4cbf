"""relay.rtp.remb: abs-send-time, the REMB estimator (aiortc's, fed and throttled), and REMB
packets byte for byte (draft-alvestrand-rmcat-remb-03)."""

from __future__ import annotations

import random

import pytest

from relay.rtp.packet import build_pli, build_rtp
from relay.rtp.remb import (
    ABS_SEND_TIME_URI,
    MAX_REMB_BITRATE,
    MAX_SSRCS,
    REMB_INTERVAL,
    RembEstimator,
    build_remb,
    parse_remb,
    read_abs_send_time,
)

PACKET = 1000  # bytes of payload per packet


def abs_send_time(seconds: float) -> int:
    """6.18 fixed-point seconds, 24 bits."""
    return int(seconds * (1 << 18)) & 0xFFFFFF


def stream(est: RembEstimator, start: float, duration: float, rate_bps: float,
           delay=lambda send: 0.02, ssrcs=(1111, 2222)):
    """Send `rate_bps` of PACKET-byte packets from `start` for `duration` s (arriving
    `delay(send)` later, on a clock 100 s ahead); return the REMBs due as (arrival time,
    bitrate, ssrcs)."""
    out = []
    interval = PACKET * 8 / rate_bps
    send, i = start, 0
    while send < start + duration:
        arrival = 100.0 + send + delay(send)
        due = est.on_packet(arrival, abs_send_time(send), PACKET, ssrcs[i % len(ssrcs)])
        if due is not None:
            out.append((arrival, *due))
        send += interval
        i += 1
    return out


def test_read_abs_send_time():
    assert ABS_SEND_TIME_URI == "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    p = build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3,
                  extensions={1: b"\x01", 3: b"\xab\xcd\xef", 5: b"\x00\x01"})
    assert read_abs_send_time(p, len(p), 3) == 0xABCDEF
    assert read_abs_send_time(p, len(p), 5) is None  # 2 bytes: too short
    assert read_abs_send_time(p, len(p), 7) is None
    p2 = build_rtp(payload_type=96, sequence_number=1, timestamp=2, ssrc=3,
                   extensions={200: b"\x12\x34\x56"}, two_byte_extensions=True)
    assert read_abs_send_time(p2, len(p2), 200) == 0x123456
    for n in range(len(p)):
        value = read_abs_send_time(p, n, 3)
        assert value is None or n >= 12 + 4 + 8


def test_remb_bytes_match_the_drafts_layout():
    # 1 000 000 bps: mantissa 250 000 (0x3D090, 18 bits), exponent 2.
    packet = build_remb(0x11223344, 1_000_000, [0xAABBCCDD, 1])
    expected = ("8fce0006" "11223344" "00000000" "52454d42"  # V=2 FMT=15 PT=206, len 6
                "02" "0b" "d090"  # 2 SSRCs; exp 2 << 2 | mantissa >> 16 (3); mantissa low
                "aabbccdd" "00000001")
    assert packet.hex() == expected
    assert parse_remb(packet) == (1_000_000, [0xAABBCCDD, 1])
    # Not representable exactly: rounded down to the mantissa's precision.
    bitrate, _ = parse_remb(build_remb(1, 1_000_003, []))
    assert bitrate == 1_000_000
    bitrate, _ = parse_remb(build_remb(1, 0x3FFFF, []))
    assert bitrate == 0x3FFFF  # the largest exponent-0 value is exact
    with pytest.raises(ValueError):
        build_remb(1, 1000, list(range(256)))


def test_parse_remb_rejects_other_and_broken_packets():
    good = build_remb(7, 500_000, [1, 2, 3])
    for data in (build_pli(1, 2), good[:-4], good[:10], b"", b"\x8f\xce\x00\x06" + bytes(24)):
        with pytest.raises(ValueError):
            parse_remb(data)
    short = bytearray(good)
    short[16] = 9  # 9 SSRCs announced, 3 there
    with pytest.raises(ValueError):
        parse_remb(bytes(short))
    # Inside a compound packet it is found.
    assert parse_remb(build_pli(1, 2) + good) == (500_000, [1, 2, 3])


def test_estimate_on_a_constant_rate_stream_is_near_the_sent_rate():
    est = RembEstimator()
    rembs = stream(est, 0.0, 20.0, 1_000_000)
    assert rembs, "no REMB in 20 s"
    first_at, first, ssrcs = rembs[0]
    assert first_at < 104.0  # aiortc's estimator needs about 3 s of throughput first
    assert first == pytest.approx(1_000_000, rel=0.05)
    assert sorted(ssrcs) == [1111, 2222]
    # AIMD probes up to 1.5 x the measured throughput (+10 kbps) and stays there.
    for _, bitrate, _ in rembs:
        assert 0.95e6 <= bitrate <= 1.5 * 1.01e6 + 10_000
    # No drop: one REMB about every second.
    gaps = [b[0] - a[0] for a, b in zip(rembs, rembs[1:], strict=False)]
    assert all(REMB_INTERVAL - 1e-6 <= g < REMB_INTERVAL + 0.05 for g in gaps)
    assert est.rembs == len(rembs)


def test_a_drop_is_reported_at_once():
    est = RembEstimator()
    before = stream(est, 0.0, 10.0, 1_000_000)

    # Then 1.6 Mbps into a 1.2 Mbps bottleneck: the queue (one-way delay) grows.
    queue = {"free_at": 0.0}

    def bottleneck(send: float) -> float:
        start = max(send, queue["free_at"])
        queue["free_at"] = start + PACKET * 8 / 1_200_000
        return queue["free_at"] - send + 0.02

    after = stream(est, 10.0, 5.0, 1_600_000, delay=bottleneck)
    last_before = before[-1][1]
    drops = [(t, b) for t, b, _ in after if b <= 0.97 * last_before]
    assert drops, "the overuse was never reported"
    t_drop, bitrate = drops[0]
    assert bitrate < 1_200_000  # below the bottleneck
    # It did not wait for the 1 s interval: it came right after the previous REMB.
    previous = max(t for t, *_ in before + after if t < t_drop)
    assert t_drop - previous < REMB_INTERVAL


def test_max_bitrate_caps_what_is_reported():
    est = RembEstimator()
    stream(est, 0.0, 6.0, 1_000_000)
    assert est.estimate is not None and est.estimate > 600_000
    assert est.set_max_bitrate(600_000, now=106.0) == (600_000, [1111, 2222])  # at once
    later = stream(est, 6.0, 5.0, 1_000_000)
    assert later and all(bitrate == 600_000 for _, bitrate, _ in later)
    due = est.set_max_bitrate(None, now=111.1)
    assert due is not None and due[0] == est.estimate > 600_000
    # Setting the same cap again changes nothing, so nothing is due before the interval.
    est.set_max_bitrate(None, now=111.2)
    assert est.set_max_bitrate(None, now=111.3) is None
    for bad in (-1, MAX_REMB_BITRATE + 1):
        with pytest.raises(ValueError):
            est.set_max_bitrate(bad, now=111.4)
    assert parse_remb(build_remb(1, MAX_REMB_BITRATE, []))[0] == MAX_REMB_BITRATE


def test_cap_is_reported_before_there_is_an_estimate():
    est = RembEstimator(max_bitrate=300_000)
    due = est.on_packet(100.0, abs_send_time(0.0), PACKET, 5)
    assert due == (300_000, [5])
    assert est.estimate is None and est.bitrate == 300_000
    assert RembEstimator().on_packet(100.0, 0, PACKET, 5) is None  # nothing to report yet


def test_ssrc_list_is_bounded_and_forgets_stopped_streams():
    est = RembEstimator(max_bitrate=1_000_000)
    for i in range(MAX_SSRCS + 50):
        est.on_packet(100.0 + i * 0.001, abs_send_time(i * 0.001), PACKET, 10_000 + i)
    assert len(est.ssrcs) == MAX_SSRCS and est.ssrcs_refused == 50
    # 3 s later only one stream still sends: the others leave the REMB.
    due = est.on_packet(103.5, abs_send_time(3.5), PACKET, 10_000)
    assert due is not None and due[1] == [10_000]


def test_silence_restarts_the_estimator():
    est = RembEstimator()
    stream(est, 0.0, 5.0, 1_000_000)
    estimate = est.estimate
    # Ten minutes of silence: aiortc's rate window would walk every millisecond of it, so the
    # estimator starts over instead (counted; no wall-clock assertion, which load would flake).
    est.on_packet(100.0 + 600.0, abs_send_time(600.0), PACKET, 1111)
    assert est.resets == 1 and est.estimate == estimate  # kept until a new one comes
    rembs = stream(est, 600.0, 5.0, 500_000)
    assert rembs and rembs[-1][1] < estimate


def test_garbage_abs_send_time_never_raises():
    rng = random.Random(2)
    est = RembEstimator()
    t = 100.0
    for _ in range(5000):
        t += rng.choice((0.0, 0.001, 0.01, 0.3))
        est.on_packet(t, rng.getrandbits(24), rng.randrange(0, 1500), rng.getrandbits(32))
    assert est.packets == 5000
    bitrate = est.bitrate
    assert bitrate is None or bitrate >= 0
    assert len(est.ssrcs) <= MAX_SSRCS
