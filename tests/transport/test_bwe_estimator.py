"""The send history, the acknowledged bitrate and the estimator's inputs and bounds
(relay/transport/bwe/send_history.py, acked_bitrate.py, estimator.py)."""

from __future__ import annotations

import random

import pytest
from bwe_sim import Link, Simulation

from relay.rtp.transport_cc import TransportCcReceiver, parse_feedback
from relay.transport.bwe import SendHistory, SendSideEstimator, feedback_packets
from relay.transport.bwe.acked_bitrate import MAX_WINDOW_PACKETS, AckedBitrateEstimator
from relay.transport.bwe.estimator import ARRIVAL_WRAP

# --- send history ---------------------------------------------------------------------------


def test_history_matches_reports_across_the_16_bit_wrap() -> None:
    h = SendHistory()
    for i, seq in enumerate((65534, 65535, 0, 1)):
        h.on_sent(seq, 1.0 + i, 1000 + i, cluster=7 if seq == 0 else None)
    p = h.on_report(65535, 5.0)
    assert p is not None and (p.send_time, p.size, p.cluster, p.arrival) == (2.0, 1001, None, 5.0)
    p = h.on_report(0, 5.1)
    assert p is not None and p.cluster == 7 and p.seq == 0
    assert h.on_report(0, 5.1) is None and h.duplicates == 1  # overlapping feedback
    assert h.on_report(2, 5.2) is None and h.unknown == 1  # never sent


def test_history_lost_then_late() -> None:
    h = SendHistory()
    h.on_sent(10, 0.0, 500)
    lost = h.on_report(10, None)
    assert lost is not None and lost.arrival is None
    assert h.on_report(10, None) is None  # reported lost again: nothing new
    late = h.on_report(10, 3.0)
    assert late is not None and late.was_lost and late.arrival == 3.0
    assert h.on_report(10, None) is None


def test_history_is_bounded() -> None:
    h = SendHistory(capacity=16)
    for seq in range(40):
        h.on_sent(seq, seq * 0.01, 100)
    assert h.on_report(5, 1.0) is None  # pushed out
    assert h.on_report(39, 1.0) is not None
    assert h.unknown == 1 and h.sent == 40
    assert SendHistory().on_report(1, 1.0) is None  # nothing sent yet
    with pytest.raises(ValueError):
        SendHistory(capacity=100)
    with pytest.raises(ValueError):
        SendHistory(capacity=1 << 16)


# --- acknowledged bitrate -------------------------------------------------------------------


def _steady(est: AckedBitrateEstimator, rate: float, seconds: float, start: float = 0.0,
            size: int = 1200) -> float:
    interval = size * 8 / rate
    t = start
    for _ in range(int(seconds / interval)):
        est.update(t + 0.05, t, size)
        t += interval
    return t


def test_acked_bitrate_needs_10_packets_then_reads_the_rate() -> None:
    est = AckedBitrateEstimator()
    for i in range(9):
        est.update(i * 0.01, i * 0.01, 1200)
    assert est.bitrate is None
    _steady(est, 1_000_000, 2.0, start=1.0)
    assert est.bitrate == pytest.approx(1_000_000, rel=0.02)


def test_acked_bitrate_ignores_one_receive_gap_and_is_capped_by_the_send_rate() -> None:
    est = AckedBitrateEstimator()
    for i in range(105):  # sent steadily at 1 Mbit/s; the path delay grows 200 ms midway
        send = i * 0.0096
        est.update(send + (0.05 if i < 50 else 0.25), send, 1200)
    assert est.bitrate == pytest.approx(1_000_000, rel=0.03)
    burst = AckedBitrateEstimator()
    for i in range(50):  # sent at 1 Mbit/s, released by a queue at 10 Mbit/s
        burst.update(5.0 + i * 0.00096, i * 0.0096, 1200)
    assert burst.bitrate == pytest.approx(1_000_000, rel=0.05)


def test_acked_bitrate_window_is_bounded() -> None:
    est = AckedBitrateEstimator()
    _steady(est, 50_000_000, 1.0)
    assert len(est._window) <= MAX_WINDOW_PACKETS
    assert est.bitrate == pytest.approx(50_000_000, rel=0.02)


# --- estimator ------------------------------------------------------------------------------


def test_feedback_round_trip() -> None:
    est = SendSideEstimator(1_000_000)
    rx = TransportCcReceiver()
    for seq in range(20):
        est.history.on_sent(seq, seq * 0.01, 1000)
        if seq != 7:
            rx.on_packet(seq, 100.0 + seq * 0.01)
    [data] = rx.build_feedback(1)
    packets = feedback_packets(parse_feedback(data))
    assert [seq for seq, _ in packets] == list(range(20))
    assert packets[7][1] is None
    assert packets[8][1] == pytest.approx(100.08, abs=0.00025)  # 250 µs ticks
    est.on_feedback(0.3, packets)
    assert (est.feedbacks, est.packets_reported, est.packets_lost) == (1, 20, 1)


def test_remb_and_max_cap_the_estimate() -> None:
    est = SendSideEstimator(1_000_000, 50_000, 5_000_000)
    est.on_remb(400_000)
    assert est.target_bps == 400_000
    assert est.trace()["remb_bitrate"] == 400_000
    est.on_remb(0)
    assert est.target_bps == 1_000_000
    est.set_max(700_000)
    assert est.target_bps == 700_000 == est.available_bitrate
    est.set_max(10)  # never under the minimum
    assert est.target_bps == 50_000
    with pytest.raises(ValueError):
        SendSideEstimator(1_000_000, 0, 10)


def test_receiver_report_loss_stands_in_only_without_transport_cc() -> None:
    est = SendSideEstimator(1_000_000)
    est.on_receiver_report(1.0, 0.5, 0.08)
    assert est.target_bps == pytest.approx(750_000, abs=1)  # 1 - 0.5 / 2
    assert est.rtt == 0.08
    # With transport-cc flowing (no loss in it), an RR's loss is not used.
    sim = Simulation(est, Link(lambda t: 10e6), demand_bps=500_000)
    sim.run(3.0)
    before = est.target_bps
    est.on_receiver_report(3.05, 0.5, 0.08)
    assert est.target_bps >= before


def test_arrival_clock_wraps_change_nothing() -> None:
    """The 24-bit reference time wraps every ~12.4 days and reads negative past half of it:
    the estimator unwraps both. Here the wrap comes at 3 s, the capacity halves at 5 s."""
    runs = []
    for offset in (1234.5, ARRIVAL_WRAP / 2 - 3.0, ARRIVAL_WRAP - 3.0):
        est = SendSideEstimator(600_000, 30_000, 20_000_000)
        sim = Simulation(est, Link(lambda t: 2e6 if t < 5.0 else 1e6), demand_bps=10e6,
                         receiver_clock_offset=offset)
        runs.append(sim.run(8.0).targets)
        assert est.trace()["acked_bitrate"] == pytest.approx(1e6, rel=0.2)
    for other in runs[1:]:
        assert max(abs(a - b) for a, b in zip(runs[0], other, strict=True)) <= 10


def test_hostile_feedback_is_survived() -> None:
    rng = random.Random(5)
    est = SendSideEstimator(1_000_000, 50_000, 5_000_000)
    for seq in range(2000):
        est.history.on_sent(seq, seq * 0.001, 1200, cluster=rng.choice([None, 1, 2]))
    est.probe_request(0.0, 10_000_000)
    for i in range(300):
        packets = [(rng.randrange(0x10000),
                    None if rng.random() < 0.3 else rng.uniform(-1e7, 1e7))
                   for _ in range(rng.randrange(1, 60))]
        est.on_feedback(2.0 + i * 0.1, packets)
        est.probe_request(2.0 + i * 0.1, 10_000_000)
        assert 50_000 <= est.target_bps <= 5_000_000
    assert est.history.unknown > 0
    assert set(est.trace()) >= {"available_bitrate", "delay_state", "rtt", "probe_state"}
