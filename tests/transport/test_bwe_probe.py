"""Probing: when and how fast (probe_controller.py), and reading the results
(probe_result.py)."""

from __future__ import annotations

import pytest

from relay.transport.bwe.probe_controller import (
    MIN_PROBE_DURATION,
    MIN_PROBE_PACKETS,
    PROBE_DURATION,
    PROBE_INTERVAL,
    ProbeCluster,
    ProbeController,
    ProbeState,
)
from relay.transport.bwe.probe_result import ProbeBitrateEstimator, ProbeResult

# --- results --------------------------------------------------------------------------------


def _cluster(rate: int = 1_000_000, cid: int = 1) -> ProbeCluster:
    return ProbeCluster(cid, rate, MIN_PROBE_PACKETS, int(rate * MIN_PROBE_DURATION / 8))


def _send(est: ProbeBitrateEstimator, cluster: ProbeCluster, packets: int, size: int,
          send_rate: float, recv_rate: float, start: float = 10.0) -> list[ProbeResult]:
    """Packets sent at ``send_rate`` and arriving spaced at ``recv_rate``; then a later
    packet is reported, so the cluster is complete."""
    send = start
    for i in range(packets):
        send = start + i * size * 8 / send_rate
        est.on_packet(cluster.id, send, 100.0 + i * size * 8 / recv_rate, size)
    return est.fetch(send + 0.001)


def test_unsaturated_probe_measures_what_was_sent() -> None:
    est = ProbeBitrateEstimator()
    cluster = _cluster()
    est.add_cluster(cluster)
    for i in range(6):
        est.on_packet(cluster.id, 10.0 + i * 0.0096, 100.0 + i * 0.0096, 1200)
        if i < 3:  # under 80 % of the 5 packets asked
            assert est.fetch(20.0) == []
    assert est.fetch(10.0 + 5 * 0.0096) == []  # nothing sent after the last packet reported
    [result] = est.fetch(20.0)
    assert result.bps == pytest.approx(1_000_000) and not result.saturated
    assert est.fetch(20.0) == []  # fetched once


def test_saturated_probe_measures_95_percent_of_the_receive_rate() -> None:
    est = ProbeBitrateEstimator()
    cluster = _cluster(2_000_000)
    est.add_cluster(cluster)
    [result] = _send(est, cluster, 8, 1000, 2_000_000, 800_000)
    assert result.bps == pytest.approx(0.95 * 800_000) and result.saturated


def test_a_token_bucket_passes_the_head_and_the_tail_shows_the_bottleneck() -> None:
    """A shallow token bucket (4.5 kB at 600 kbit/s) lets a 1.2 Mbit/s cluster's first
    packets through at its rate; only the rest arrive at 600 kbit/s. Over the whole cluster
    the receive rate reads ~800 kbit/s; its second half shows the 600."""
    est = ProbeBitrateEstimator()
    cluster = ProbeCluster(1, 1_200_000, MIN_PROBE_PACKETS, int(1_200_000 * 0.1 / 8))
    est.add_cluster(cluster)
    size, rate, capacity = 300, 1_200_000 / 8, 600_000 / 8  # bytes, bytes per second
    tokens, free, last_send = 4500.0, 0.0, 0.0
    for i in range(cluster.min_bytes // size):
        send = last_send = i * size / rate
        tokens = min(4500.0, tokens + (max(send, free) - free) * capacity)
        start = max(send, free)
        free = start + max(0.0, size - tokens) / capacity
        tokens = max(0.0, tokens - size)
        est.on_packet(1, send, free, size)
    [result] = est.fetch(last_send + 0.001)
    assert result.saturated
    assert 0.95 * 560_000 <= result.bps <= 0.95 * 640_000


def test_invalid_probes() -> None:
    est = ProbeBitrateEstimator()
    too_fast = _cluster(1_000_000, 1)
    est.add_cluster(too_fast)
    # received 3x faster than sent
    assert _send(est, too_fast, 6, 1200, 1_000_000, 3_000_000) == [] and est.invalid > 0
    slow = _cluster(10_000, 2)
    est.add_cluster(slow)
    assert _send(est, slow, 6, 1200, 10_000, 10_000, start=20.0) == []  # over 1 s long
    assert _send(est, _cluster(1_000_000, 99), 6, 1200, 1e6, 1e6, start=30.0) == []  # unknown
    assert est.unknown == 6


# --- controller -----------------------------------------------------------------------------


def test_no_probe_while_consumers_want_no_more() -> None:
    pc = ProbeController(600_000)
    # What they want counts 1.35 times (mediasoup's headroom): 440 kbit/s is 594.
    assert pc.request(0.0, 440_000, 600_000, 10e6, True, True) == []
    assert pc.request(0.1, 460_000, 600_000, 10e6, True, True) == []  # 621: within 5 %
    assert pc.state is ProbeState.INIT
    assert pc.request(0.2, 600_000, 600_000, 10e6, True, True) != []  # 810


def test_initial_exponential_probes_then_further_then_done() -> None:
    pc = ProbeController(600_000)
    clusters = pc.request(0.0, 10_000_000, 600_000, 20e6, True, False)
    assert [c.bitrate_bps for c in clusters] == [1_800_000, 3_600_000]
    assert clusters[0].min_packets == MIN_PROBE_PACKETS
    # libwebrtc's 15 ms would fit a shallow token bucket whole: ours last 100 ms
    # (up to what twice the estimate sends then: 1.2 Mbit/s for 100 ms)
    assert clusters[0].min_bytes == int(1_200_000 * PROBE_DURATION / 8) > 15 * 1_800_000 / 8000
    assert clusters[1].min_bytes == clusters[0].min_bytes
    assert clusters[1].id == clusters[0].id + 1
    assert pc.state is ProbeState.WAITING
    # The first cluster's result is held: the round's last cluster will tell more.
    assert pc.on_result(clusters[0].id, 1_800_000, False) is None
    # The last one's, above 70 % of its rate: held, and a further probe at twice it.
    assert pc.on_result(clusters[1].id, 3_400_000, False) is None
    [further] = pc.request(0.3, 10_000_000, 600_000, 20e6, True, False)
    assert further.bitrate_bps == 6_800_000
    # It saturates: the path's capacity is measured, that is the round's outcome.
    assert pc.on_result(further.id, 4_000_000, True) == 4_000_000
    assert pc.state is ProbeState.COMPLETE
    assert pc.take_held() is None


def test_a_round_without_saturation_ends_on_its_highest_result() -> None:
    pc = ProbeController(600_000)
    first, second = pc.request(0.0, 10_000_000, 600_000, 20e6, True, False)
    assert pc.on_result(first.id, 1_800_000, False) is None
    assert pc.on_result(second.id, 2_000_000, False) == 2_000_000  # under 70 % of 3.6 M
    assert pc.state is ProbeState.COMPLETE
    assert pc.request(0.2, 10_000_000, 2_000_000, 20e6, True, False) == []


def test_held_results_are_dropped_or_taken_when_the_round_times_out() -> None:
    pc = ProbeController(600_000)
    first, _ = pc.request(0.0, 10_000_000, 600_000, 20e6, True, False)
    assert pc.on_result(first.id, 1_800_000, False) is None
    assert pc.take_held() is None  # the round goes on
    pc.request(1.5, 10_000_000, 600_000, 20e6, True, False)  # the second never reported
    assert pc.state is ProbeState.COMPLETE
    assert pc.take_held() == 1_800_000
    assert pc.take_held() is None
    pc2 = ProbeController(600_000)
    first, _ = pc2.request(0.0, 10_000_000, 600_000, 20e6, True, False)
    pc2.on_result(first.id, 1_800_000, False)
    pc2.drop_held()  # the delay detector saw overuse
    pc2.request(1.5, 10_000_000, 600_000, 20e6, True, False)
    assert pc2.take_held() is None


def test_probes_are_capped_by_the_maximum() -> None:
    pc = ProbeController(600_000)
    clusters = pc.request(0.0, 10_000_000, 600_000, 2_000_000, True, True)
    assert [c.bitrate_bps for c in clusters] == [1_800_000, 2_000_000]
    # no further probe above the maximum, whatever the result
    assert pc.on_result(clusters[-1].id, 2_000_000, False) == 2_000_000
    assert pc.state is ProbeState.COMPLETE


def test_waiting_times_out_after_1_s() -> None:
    pc = ProbeController(600_000)
    pc.request(0.0, 10_000_000, 600_000, 20e6, True, True)
    assert pc.state is ProbeState.WAITING
    pc.request(1.5, 10_000_000, 600_000, 20e6, True, True)
    assert pc.state is ProbeState.COMPLETE


def _complete(pc: ProbeController) -> None:
    clusters = pc.request(0.0, 10_000_000, 600_000, 2_000_000, True, True)
    pc.on_result(clusters[-1].id, 1_000_000, True)
    assert pc.state is ProbeState.COMPLETE


def test_periodic_probe_when_application_limited() -> None:
    pc = ProbeController(600_000)
    _complete(pc)
    # Consumers still want what they wanted at the last probe (2 Mbit/s, the maximum then,
    # with the headroom: 1.48 x 1.35).
    assert pc.request(PROBE_INTERVAL - 0.1, 1_480_000, 1_000_000, 20e6, True, True) == []
    [probe] = pc.request(PROBE_INTERVAL, 1_480_000, 1_000_000, 20e6, True, True)
    assert probe.bitrate_bps == 2_000_000  # twice the estimate
    assert pc.state is ProbeState.WAITING


def test_no_periodic_probe_when_the_estimate_is_used_or_not_allowed() -> None:
    pc = ProbeController(600_000)
    _complete(pc)
    assert pc.request(10.0, 3_000_000, 1_000_000, 20e6, True, False) == []  # not app-limited
    assert pc.request(10.0, 3_000_000, 1_000_000, 20e6, False, True) == []  # overuse / loss


def test_probe_soon_when_consumers_want_more() -> None:
    pc = ProbeController(600_000)
    _complete(pc)
    assert pc.request(0.5, 2_500_000, 1_000_000, 20e6, True, True) == []  # not within 1 s
    assert pc.request(1.5, 1_600_000, 1_000_000, 20e6, True, True) == []  # 2.16 M: < 10 %
    assert pc.request(1.5, 2_500_000, 1_000_000, 20e6, True, True) != []  # grew > 10 %
