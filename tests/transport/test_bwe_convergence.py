"""The send-side estimator against a simulated bottleneck (tests/transport/bwe_sim.py):
feedback goes through real transport-cc packets (TransportCcReceiver.build_feedback, then
parse_feedback), time is simulated. The issue's targets: within ±20 % of a 0.5, 2 and
5 Mbit/s bottleneck within 10 s; back within ±20 % within 2 s when the capacity halves; no
collapse under 2 % random loss without queueing."""

from __future__ import annotations

import pytest
from bwe_sim import Link, Simulation

from relay.transport.bwe import SendSideEstimator
from relay.transport.bwe.probe_controller import MAX_PROBE_OVER_WANTED, WANTED_HEADROOM

MIN_BPS = 30_000
MAX_BPS = 20_000_000


@pytest.mark.parametrize("initial", [300_000, 600_000])  # libwebrtc's and mediasoup's start
@pytest.mark.parametrize("capacity", [500_000, 2_000_000, 5_000_000])
def test_converges_to_bottleneck(capacity: int, initial: int) -> None:
    est = SendSideEstimator(initial, MIN_BPS, MAX_BPS)
    sim = Simulation(est, Link(lambda t: capacity, delay=0.025), demand_bps=10_000_000)
    trace = sim.run(20.0)
    settled = trace.settle_time()
    late = trace.between(10.0, 20.0)
    print(f"\n{capacity / 1e6} Mbit/s from {initial / 1e3:.0f} kbit/s: within ±20 % from "
          f"{settled:.2f} s on; 10–20 s: {min(late) / capacity:.2f}..{max(late) / capacity:.2f}"
          f" of capacity; {trace.clusters} probe clusters, {trace.feedback_packets} feedback")
    assert settled is not None and settled <= 10.0
    assert trace.feedback_packets > 150  # every ~100 ms through real feedback packets
    assert est.feedbacks == trace.feedback_packets
    assert est.history.unknown == 0 and est.history.duplicates == 0


@pytest.mark.parametrize("delay", [0.01, 0.05])
def test_backs_off_when_capacity_halves(delay: float) -> None:
    est = SendSideEstimator(600_000, MIN_BPS, MAX_BPS)
    sim = Simulation(est, Link(lambda t: 2_000_000 if t < 10.0 else 1_000_000, delay=delay),
                     demand_bps=10_000_000)
    trace = sim.run(20.0)
    before = trace.between(5.0, 10.0)
    assert min(before) >= 1_600_000 and max(before) <= 2_400_000
    settled = trace.settle_time(start=10.0)
    backoff = next(t for t, v in zip(trace.times, trace.targets, strict=True)
                   if t >= 10.0 and v <= 1_200_000) - 10.0
    after = trace.between(12.0, 20.0)
    print(f"\nhalved at 10 s (one-way delay {delay * 1e3:.0f} ms): under 1.2 Mbit/s after "
          f"{backoff:.2f} s, within ±20 % for good after {settled - 10.0:.2f} s; "
          f"12–20 s: {min(after) / 1e6:.2f}..{max(after) / 1e6:.2f} Mbit/s")
    assert settled is not None and settled - 10.0 <= 2.0


def test_random_loss_without_queueing_does_not_collapse() -> None:
    demand = 1_000_000
    est = SendSideEstimator(600_000, MIN_BPS, MAX_BPS)
    sim = Simulation(est, Link(lambda t: 50_000_000, delay=0.025, loss=0.02), demand_bps=demand,
                     seed=7)
    trace = sim.run(30.0)
    late = trace.between(2.0, 30.0)
    sent = trace.dropped_random + est.packets_reported - est.packets_lost
    print(f"\n2 % loss, demand 1 Mbit/s: estimate {min(late) / 1e6:.2f}..{max(late) / 1e6:.2f}"
          f" Mbit/s over 2–30 s; {trace.dropped_random} packets lost at random, "
          f"{est.packets_lost} reported lost")
    assert trace.dropped_random > 0.015 * sent  # the loss really happened
    assert est.packets_lost > 0.8 * trace.dropped_random  # and was reported
    assert trace.dropped_queue == 0
    assert min(late) >= demand  # the sender is never held under what it wants to send
    # probes are capped at twice what is wanted, with mediasoup's headroom
    assert max(late) <= 1.02 * MAX_PROBE_OVER_WANTED * WANTED_HEADROOM * demand
    assert all(rate == demand for t, rate in zip(trace.times, trace.media_rates, strict=True)
               if t >= 2.0)


LAYERS = [150_000, 500_000, 1_200_000, 2_000_000, 3_500_000]


@pytest.mark.parametrize("capacity, layer", [(1_000_000, 500_000), (2_500_000, 2_000_000)])
def test_probing_climbs_while_application_limited(capacity: int, layer: int) -> None:
    """An SFU forwards discrete layers, well under its estimate: the estimate can only climb
    through probes, and must not climb past the path (so the next layer is not picked)."""
    est = SendSideEstimator(300_000, MIN_BPS, MAX_BPS)
    sim = Simulation(est, Link(lambda t: capacity, delay=0.025), demand_bps=LAYERS[-1],
                     layers=LAYERS)
    trace = sim.run(20.0)
    settled = trace.settle_time()
    media = {rate for t, rate in zip(trace.times, trace.media_rates, strict=True) if t >= 10.0}
    print(f"\nlayers over {capacity / 1e6} Mbit/s: estimate within ±20 % from {settled:.2f} s;"
          f" forwarding {sorted(media)}; {trace.clusters} probe clusters")
    assert settled is not None and settled <= 10.0
    assert media == {layer}
    assert trace.clusters >= 3  # periodic probes while consumers want more


def test_probe_lowers_an_estimate_the_path_cannot_carry() -> None:
    """Started too high while forwarding little (no queue, so no overuse to learn from): the
    first probe saturates the path and brings the estimate down to it."""
    est = SendSideEstimator(3_000_000, MIN_BPS, MAX_BPS)
    sim = Simulation(est, Link(lambda t: 1_000_000, delay=0.025), demand_bps=LAYERS[-1],
                     layers=[150_000, 300_000, LAYERS[-1]])
    trace = sim.run(5.0)
    settled = trace.settle_time()
    print(f"\nstarted at 3 Mbit/s on a 1 Mbit/s path: within ±20 % from {settled:.2f} s")
    # (the probe's 100 ms at up to 9 Mbit/s take ~0.6 s to pass the 1 Mbit/s path)
    assert settled is not None and settled <= 2.0
