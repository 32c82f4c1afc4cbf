"""AIMD rate control (relay/transport/bwe/aimd.py)."""

from __future__ import annotations

import pytest

from relay.transport.bwe.aimd import (
    BACKOFF_FACTOR,
    AimdRateControl,
    RateControlState,
)
from relay.transport.bwe.trendline import BandwidthUsage

NORMAL = BandwidthUsage.NORMAL
OVERUSING = BandwidthUsage.OVERUSING
UNDERUSING = BandwidthUsage.UNDERUSING


def _run(aimd: AimdRateControl, usage: BandwidthUsage, acked: float | None, t0: float,
         seconds: float, step: float = 0.1, app_limited: bool = False) -> float:
    t = t0
    while t < t0 + seconds - 1e-9:
        t += step
        aimd.update(usage, acked, t, app_limited)
    return t


def test_multiplicative_increase_is_8_percent_per_second_while_capacity_unknown() -> None:
    aimd = AimdRateControl(1_000_000, 10_000, 50_000_000)
    aimd.update(NORMAL, 10_000_000, 0.0)  # HOLD -> INCREASE
    _run(aimd, NORMAL, 10_000_000, 0.0, 1.0)
    assert aimd.bitrate == pytest.approx(1_080_000, rel=0.002)
    _run(aimd, NORMAL, 10_000_000, 1.0, 2.0)
    assert aimd.bitrate == pytest.approx(1_000_000 * 1.08**3, rel=0.005)


def test_increase_is_capped_by_the_acknowledged_bitrate() -> None:
    aimd = AimdRateControl(1_000_000, 10_000, 50_000_000)
    _run(aimd, NORMAL, 1_000_000, 0.0, 30.0)
    assert aimd.bitrate == pytest.approx(1.5 * 1_000_000 + 10_000)


def test_no_increase_while_application_limited() -> None:
    aimd = AimdRateControl(1_000_000, 10_000, 50_000_000)
    _run(aimd, NORMAL, 500_000, 0.0, 5.0, app_limited=True)
    assert aimd.bitrate == 1_000_000


def test_overuse_backs_off_to_085_of_acked_then_holds_then_adds() -> None:
    aimd = AimdRateControl(2_000_000, 10_000, 50_000_000)
    aimd.update(NORMAL, 1_800_000, 0.0)
    aimd.update(OVERUSING, 1_800_000, 0.1)
    assert aimd.bitrate == pytest.approx(BACKOFF_FACTOR * 1_800_000)
    assert aimd.state is RateControlState.HOLD
    assert aimd.link_capacity.estimate_kbps == pytest.approx(1800)
    after_backoff = aimd.bitrate
    aimd.update(UNDERUSING, 1_800_000, 0.2)  # the queue drains: hold
    assert aimd.bitrate == after_backoff
    # Near the known capacity the increase is additive: about one packet per response time.
    aimd.update(NORMAL, 1_800_000, 0.3)
    rate = aimd.near_max_increase_rate()
    _run(aimd, NORMAL, 1_800_000, 0.3, 1.0)
    assert aimd.bitrate == pytest.approx(after_backoff + rate, rel=0.01)
    assert aimd.bitrate < after_backoff * 1.08  # slower than the multiplicative mode


def test_overuse_never_increases() -> None:
    aimd = AimdRateControl(1_000_000, 10_000, 50_000_000)
    aimd.update(OVERUSING, 5_000_000, 0.0)  # acked far above: 0.85 x acked would increase
    assert aimd.bitrate <= 1_000_000


def test_throughput_above_capacity_band_brings_back_multiplicative_increase() -> None:
    aimd = AimdRateControl(1_000_000, 10_000, 50_000_000)
    aimd.update(OVERUSING, 1_000_000, 0.0)
    assert aimd.link_capacity.estimate_kbps is not None
    aimd.update(NORMAL, 3_000_000, 0.1)  # far above estimate + 3 sigma: the path got faster
    assert aimd.link_capacity.estimate_kbps is None


def test_time_to_reduce_further() -> None:
    aimd = AimdRateControl(1_000_000, 10_000, 50_000_000)
    aimd.set_rtt(0.05)
    aimd.update(OVERUSING, 1_000_000, 0.0)
    assert not aimd.time_to_reduce_further(0.02, 800_000)  # within an RTT
    assert aimd.time_to_reduce_further(0.02, 400_000)  # throughput under half the estimate
    assert aimd.time_to_reduce_further(0.06, 800_000)  # an RTT later
    aimd.set_rtt(5.0)  # the interval is capped at 200 ms
    assert aimd.time_to_reduce_further(0.21, 800_000)


def test_limits_clamp() -> None:
    aimd = AimdRateControl(1_000_000, 200_000, 1_500_000)
    _run(aimd, NORMAL, 10_000_000, 0.0, 20.0)
    assert aimd.bitrate == 1_500_000
    aimd.update(OVERUSING, 100_000, 21.0)
    assert aimd.bitrate == 200_000
    aimd.set_limits(300_000, 1_000_000)
    assert aimd.bitrate == 300_000
