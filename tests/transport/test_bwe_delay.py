"""Inter-group delay variation and the trendline overuse detector with its adaptive
threshold (relay/transport/bwe/inter_arrival.py, trendline.py)."""

from __future__ import annotations

import pytest

from relay.transport.bwe.inter_arrival import InterArrival
from relay.transport.bwe.trendline import (
    INITIAL_THRESHOLD,
    MAX_ADAPT_OFFSET,
    MIN_THRESHOLD,
    WINDOW_SIZE,
    BandwidthUsage,
    TrendlineEstimator,
)

# --- inter-arrival groups -------------------------------------------------------------------


def test_groups_by_send_time_and_reports_deltas_between_group_ends() -> None:
    ia = InterArrival()
    # Group A: sent at 0, 1, 2 ms; group B: 10, 11 ms; group C starts at 20 ms.
    assert ia.compute(0.000, 1.000, 5.0, 100) is None
    assert ia.compute(0.001, 1.002, 5.0, 100) is None
    assert ia.compute(0.002, 1.004, 5.0, 100) is None
    assert ia.compute(0.010, 1.013, 5.1, 200) is None  # B starts: A is complete, no pair yet
    assert ia.compute(0.011, 1.016, 5.1, 200) is None
    deltas = ia.compute(0.020, 1.030, 5.2, 50)  # C starts: the pair (A, B) is ready
    assert deltas is not None
    send_delta, arrival_delta, size_delta = deltas
    assert send_delta == pytest.approx(0.011 - 0.002)  # last send of B - last send of A
    assert arrival_delta == pytest.approx(1.016 - 1.004)  # last arrival of B - of A
    assert size_delta == 400 - 300


def test_a_burst_released_by_a_queue_joins_the_group() -> None:
    ia = InterArrival()
    ia.compute(0.000, 1.000, 5.0, 100)
    # Sent 20 ms later but arriving 1 ms after: released at once by a queue ahead of us.
    assert ia.compute(0.020, 1.001, 5.0, 100) is None
    ia.compute(0.040, 1.050, 5.0, 100)  # a new group: the burst was one group with the first
    deltas = ia.compute(0.060, 1.070, 5.0, 100)
    assert deltas is not None
    assert deltas[0] == pytest.approx(0.040 - 0.020)  # the burst group ended at send 20 ms
    assert deltas[2] == 100 - 200


def test_reordered_packet_is_skipped() -> None:
    ia = InterArrival()
    ia.compute(0.010, 1.010, 5.0, 100)
    assert ia.compute(0.005, 1.012, 5.0, 100) is None  # sent before the group started
    ia.compute(0.020, 1.020, 5.0, 100)
    deltas = ia.compute(0.030, 1.030, 5.0, 100)
    assert deltas is not None and deltas[2] == 0  # the reordered packet was not counted


def test_receiver_clock_jump_resets() -> None:
    ia = InterArrival()
    ia.compute(0.000, 1.0, 5.0, 100)
    ia.compute(0.010, 1.01, 5.01, 100)
    ia.compute(0.020, 9.0, 5.02, 100)  # arrival jumps 8 s while our clock moves 10 ms
    assert ia.compute(0.030, 9.01, 5.03, 100) is None  # that group is compared: reset
    assert ia.resets == 1
    assert ia.compute(0.040, 9.02, 5.04, 100) is None  # starting over


# --- trendline and threshold ----------------------------------------------------------------


def _feed(tl: TrendlineEstimator, groups: int, extra_delay: float, start: float = 0.0,
          spacing: float = 0.01) -> list[BandwidthUsage]:
    """``groups`` groups sent ``spacing`` apart, each arriving ``extra_delay`` later than
    the last relative to its send time (0: a steady queue)."""
    states = []
    for i in range(groups):
        states.append(tl.update(spacing + extra_delay, spacing, start + (i + 1) * spacing))
    return states


def test_steady_delay_is_normal_and_the_threshold_shrinks_to_its_floor() -> None:
    tl = TrendlineEstimator()
    states = _feed(tl, 300, 0.0)
    assert set(states) == {BandwidthUsage.NORMAL}
    assert tl.threshold == pytest.approx(MIN_THRESHOLD)  # k_down pulled it from 12.5 to 6


def test_growing_delay_is_overuse_once_the_window_is_full() -> None:
    tl = TrendlineEstimator()
    _feed(tl, 100, 0.0)
    states = _feed(tl, 60, 0.002, start=1.0)  # the queue grows 2 ms every 10 ms
    first = states.index(BandwidthUsage.OVERUSING)
    assert 1 <= first < WINDOW_SIZE  # a few groups after the growth starts
    assert tl.trend > 0


def test_shrinking_delay_is_underuse() -> None:
    tl = TrendlineEstimator()
    _feed(tl, 100, 0.0)
    states = _feed(tl, 30, -0.002, start=1.0)
    assert BandwidthUsage.UNDERUSING in states
    assert BandwidthUsage.OVERUSING not in states


def test_one_overshooting_sample_is_not_overuse() -> None:
    """Overuse needs more than 10 ms over the threshold and two samples in a row."""
    tl = TrendlineEstimator()
    _feed(tl, 100, 0.0)
    assert tl.update(0.010 + 0.003, 0.010, 1.01) is BandwidthUsage.NORMAL
    assert tl.modified_trend > 0


def test_threshold_follows_the_trend_but_not_spikes() -> None:
    """The threshold moves toward |modified trend| (up with k_up, down with k_down), except
    when the trend is more than 15 ms above it: a spike, which it ignores."""
    tl = TrendlineEstimator()
    _feed(tl, 100, 0.0)
    assert tl.threshold == pytest.approx(MIN_THRESHOLD)
    rose = ignored = 0
    for i in range(40):  # a queue growing fast: the trend outruns the threshold
        before = tl.threshold
        tl.update(0.010 + 0.004, 0.010, 1.0 + (i + 1) * 0.010)
        trend = abs(tl.modified_trend)
        if trend > before + MAX_ADAPT_OFFSET:
            assert tl.threshold == before
            ignored += 1
        elif trend > before:
            assert tl.threshold > before
            rose += 1
    assert rose and ignored
    for i in range(200):  # the queue steadies: the threshold comes back down
        tl.update(0.010, 0.010, 2.0 + (i + 1) * 0.010)
    assert tl.threshold == pytest.approx(MIN_THRESHOLD)


def test_initial_threshold() -> None:
    assert TrendlineEstimator().threshold == INITIAL_THRESHOLD
