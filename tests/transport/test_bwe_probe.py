"""Probing: when and how fast (probe_controller.py), and reading the results
(probe_result.py)."""

from __future__ import annotations

import pytest

from relay.transport.bwe.probe_controller import (
    MIN_PROBE_DURATION,
    MIN_PROBE_PACKETS,
    PROBE_INTERVAL,
    ProbeCluster,
    ProbeController,
    ProbeState,
)
from relay.transport.bwe.probe_result import ProbeBitrateEstimator

# --- results --------------------------------------------------------------------------------


def _cluster(rate: int = 1_000_000, cid: int = 1) -> ProbeCluster:
    return ProbeCluster(cid, rate, MIN_PROBE_PACKETS, int(rate * MIN_PROBE_DURATION / 8))


def _send(est: ProbeBitrateEstimator, cluster: ProbeCluster, packets: int, size: int,
          send_rate: float, recv_rate: float, start: float = 10.0) -> list[float | None]:
    """Packets sent at ``send_rate`` and arriving spaced at ``recv_rate``."""
    results = []
    for i in range(packets):
        send = start + i * size * 8 / send_rate
        arrival = 100.0 + i * size * 8 / recv_rate
        results.append(est.on_packet(cluster.id, send, arrival, size))
    return results


def test_unsaturated_probe_measures_what_was_sent() -> None:
    est = ProbeBitrateEstimator()
    cluster = _cluster()
    est.add_cluster(cluster)
    results = _send(est, cluster, 6, 1200, 1_000_000, 1_000_000)
    assert results[:3] == [None, None, None]  # under 80 % of the 5 packets asked
    assert results[-1] == pytest.approx(1_000_000)
    assert est.fetch() == pytest.approx(1_000_000)
    assert est.fetch() is None  # fetched once


def test_saturated_probe_measures_95_percent_of_the_receive_rate() -> None:
    est = ProbeBitrateEstimator()
    cluster = _cluster(2_000_000)
    est.add_cluster(cluster)
    _send(est, cluster, 8, 1000, 2_000_000, 800_000)
    assert est.fetch() == pytest.approx(0.95 * 800_000)


def test_invalid_probes() -> None:
    est = ProbeBitrateEstimator()
    too_fast = _cluster(1_000_000, 1)
    est.add_cluster(too_fast)
    _send(est, too_fast, 6, 1200, 1_000_000, 3_000_000)  # received 3x faster than sent
    assert est.fetch() is None and est.invalid > 0
    slow = _cluster(10_000, 2)
    est.add_cluster(slow)
    _send(est, slow, 6, 1200, 10_000, 10_000, start=20.0)  # over 1 s long
    assert est.fetch() is None
    _send(est, _cluster(1_000_000, 99), 6, 1200, 1e6, 1e6, start=30.0)  # never issued
    assert est.fetch() is None and est.unknown == 6


# --- controller -----------------------------------------------------------------------------


def test_no_probe_while_consumers_want_no_more() -> None:
    pc = ProbeController(600_000)
    assert pc.request(0.0, 600_000, 600_000, 10e6, True, True) == []
    assert pc.request(0.1, 620_000, 600_000, 10e6, True, True) == []  # within 5 %
    assert pc.state is ProbeState.INIT


def test_initial_exponential_probes_then_further_then_done() -> None:
    pc = ProbeController(600_000)
    clusters = pc.request(0.0, 10_000_000, 600_000, 20e6, True, False)
    assert [c.bitrate_bps for c in clusters] == [1_800_000, 3_600_000]
    assert clusters[0].min_packets == MIN_PROBE_PACKETS
    assert clusters[0].min_bytes == int(1_800_000 * MIN_PROBE_DURATION / 8)
    assert clusters[1].id == clusters[0].id + 1
    assert pc.state is ProbeState.WAITING
    pc.on_estimate(2_000_000)  # under 70 % of 3.6 Mbit/s: no further probe
    assert pc.request(0.2, 10_000_000, 2_000_000, 20e6, True, False) == []
    pc.on_estimate(3_400_000)  # above: probe at twice the result
    [further] = pc.request(0.3, 10_000_000, 3_400_000, 20e6, True, False)
    assert further.bitrate_bps == 6_800_000
    # The next one would pass the maximum: capped there, and the round ends.
    pc.on_estimate(4_900_000)
    [last] = pc.request(0.4, 10_000_000, 4_900_000, 8e6, True, False)
    assert last.bitrate_bps == 8_000_000
    assert pc.state is ProbeState.COMPLETE


def test_probes_are_capped_by_the_maximum() -> None:
    pc = ProbeController(600_000)
    clusters = pc.request(0.0, 10_000_000, 600_000, 2_000_000, True, True)
    assert [c.bitrate_bps for c in clusters] == [1_800_000, 2_000_000]
    assert pc.state is ProbeState.COMPLETE


def test_waiting_times_out_after_1_s() -> None:
    pc = ProbeController(600_000)
    pc.request(0.0, 10_000_000, 600_000, 20e6, True, True)
    assert pc.state is ProbeState.WAITING
    pc.request(1.5, 10_000_000, 600_000, 20e6, True, True)
    assert pc.state is ProbeState.COMPLETE


def _complete(pc: ProbeController) -> None:
    pc.request(0.0, 10_000_000, 600_000, 2_000_000, True, True)  # capped: complete at once
    assert pc.state is ProbeState.COMPLETE


def test_periodic_probe_when_application_limited() -> None:
    pc = ProbeController(600_000)
    _complete(pc)
    # Consumers still want what they wanted at the last probe (2 Mbit/s, the maximum then).
    assert pc.request(PROBE_INTERVAL - 0.1, 2_000_000, 1_000_000, 20e6, True, True) == []
    [probe] = pc.request(PROBE_INTERVAL, 2_000_000, 1_000_000, 20e6, True, True)
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
    assert pc.request(1.5, 2_100_000, 1_000_000, 20e6, True, True) == []  # grew < 10 %
    assert pc.request(1.5, 2_500_000, 1_000_000, 20e6, True, True) != []  # grew > 10 %
