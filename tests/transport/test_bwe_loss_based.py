"""The loss-based bound and the combined target (relay/transport/bwe/loss_based.py)."""

from __future__ import annotations

import pytest

from relay.transport.bwe.loss_based import LossBasedControl


def _past_start_phase(initial: float = 1_000_000) -> LossBasedControl:
    """A controller whose first (loss-free) report came at 0 s: out of its start phase
    from 2 s on."""
    ctl = LossBasedControl(initial, 10_000, 50_000_000)
    ctl.on_packets(0, 20, 0.0)
    return ctl


def test_loss_fraction_needs_20_packets() -> None:
    ctl = LossBasedControl(1_000_000, 10_000, 50_000_000)
    ctl.on_packets(1, 10, 0.0)
    assert ctl.loss_fraction == 0.0  # not enough packets yet
    ctl.on_packets(3, 10, 0.1)
    assert ctl.loss_fraction == pytest.approx(4 * 256 // 20 / 256)  # Q8, as the RTCP field
    ctl.on_packets(1, 20, 0.2)
    assert ctl.loss_fraction == pytest.approx(1 * 256 // 20 / 256)  # a fresh window


def test_low_loss_increases_8_percent_per_second_at_most() -> None:
    ctl = _past_start_phase()
    ctl.on_packets(0, 20, 3.0)
    for i in range(10):  # called every 100 ms: the increase is from the 1 s minimum
        ctl.update(3.0 + i * 0.1)
    assert ctl.target == pytest.approx(1_000_000 * 1.08 + 1000, rel=1e-6)
    for i in range(10):
        ctl.on_packets(0, 20, 4.0 + i * 0.1)
        ctl.update(4.0 + i * 0.1)
    assert ctl.target == pytest.approx((1_000_000 * 1.08 + 1000) * 1.08 + 1000, rel=1e-6)


def test_moderate_loss_holds() -> None:
    ctl = _past_start_phase()
    for i in range(20):
        ctl.on_packets(1, 20, 3.0 + i * 0.1)  # 5 %
        ctl.update(3.0 + i * 0.1)
    assert ctl.target == 1_000_000


def test_high_loss_decreases_once_per_report_and_interval() -> None:
    ctl = _past_start_phase()
    ctl.rtt = 0.1
    ctl.on_packets(4, 20, 3.0)  # 20 %
    ctl.update(3.0)
    first = ctl.target
    assert first == pytest.approx(1_000_000 * (1 - ctl.loss_fraction / 2))
    ctl.update(3.1)  # same report: no second decrease
    assert ctl.target == first
    ctl.on_packets(4, 20, 3.2)  # a new report, but within 300 ms + RTT
    ctl.update(3.2)
    assert ctl.target == first
    ctl.on_packets(4, 20, 3.5)
    ctl.update(3.5)  # 500 ms later: decreases again
    assert ctl.target == pytest.approx(first * (1 - ctl.loss_fraction / 2))


def test_stale_loss_reports_do_not_increase() -> None:
    ctl = _past_start_phase()
    ctl.update(10.0)  # the only report is 10 s old
    assert ctl.target == 1_000_000


def test_start_phase_follows_the_delay_estimate_up() -> None:
    ctl = LossBasedControl(300_000, 10_000, 50_000_000)
    ctl.on_packets(0, 20, 0.0)
    ctl.update_delay_limit(2_000_000)
    ctl.update(0.5)
    assert ctl.target == 2_000_000
    ctl.update_delay_limit(4_000_000)
    ctl.update(3.0)  # start phase over: 8 % per second from here
    assert ctl.target == pytest.approx(2_000_000 * 1.08 + 1000)


def test_bounds() -> None:
    ctl = _past_start_phase()
    ctl.update_delay_limit(800_000)
    assert ctl.target == 800_000  # the delay-based estimate caps it
    ctl.update_receiver_limit(500_000)
    assert ctl.target == 500_000  # so does REMB
    ctl.update_receiver_limit(0)
    assert ctl.target == 800_000
    ctl.set_limits(900_000, 2_000_000)
    assert ctl.target == 900_000  # the floor wins over the delay estimate
    ctl.set_send_bitrate(5_000_000)  # a probe result lifts the old delay cap
    assert ctl.target == 2_000_000


def test_receiver_report_fraction() -> None:
    ctl = _past_start_phase()
    ctl.on_loss_fraction(0.5, 3.0)
    ctl.update(3.0)
    assert ctl.target == pytest.approx(750_000)
    ctl.on_loss_fraction(7.0, 4.0)  # out of range: clamped
    assert ctl.loss_fraction == 1.0
