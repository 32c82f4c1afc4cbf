"""The loss-based bound, and the target that combines every bound.

draft-ietf-rmcat-gcc-02 §6 as libwebrtc's classic ``SendSideBandwidthEstimation`` does it.
From each loss report (packets lost / expected, gathered until at least 20 packets):

- loss ≤ 2 %: increase to 1.08 × the lowest target of the last second, + 1 kbit/s (the
  increase is at most 8 % per second however often it is called);
- 2 % < loss ≤ 10 %: hold;
- loss > 10 %: decrease to target × (1 - loss / 2), once per report and at most once per
  300 ms + RTT.

The target is then capped by the delay-based estimate and the configured maximum, and
floored at the minimum; a receiver's REMB caps what :attr:`target` reports. During the first
2 s after the first loss report, while no loss is seen, the target follows the delay-based
estimate (and REMB) up, so start-up probing takes effect at once. A probe result sets the
target directly (:meth:`set_send_bitrate`).

Rates are bits per second, times seconds on the sender's clock.
"""

from __future__ import annotations

import math
from collections import deque

# libwebrtc send_side_bandwidth_estimation.cc
LOW_LOSS_THRESHOLD = 0.02  # kDefaultLowLossThreshold
HIGH_LOSS_THRESHOLD = 0.10  # kDefaultHighLossThreshold
INCREASE_FACTOR = 1.08
INCREASE_EXTRA = 1000.0  # "add 1 kbps extra, just to make sure that we do not get stuck"
INCREASE_INTERVAL = 1.0  # kBweIncreaseInterval: window of the min-target history
DECREASE_INTERVAL = 0.3  # kBweDecreaseInterval (+ RTT)
START_PHASE = 2.0  # kStartPhase
LIMIT_NUM_PACKETS = 20  # kLimitNumPackets: a loss fraction needs this many packets
LOSS_REPORT_TIMEOUT = 1.2 * 5.0  # 1.2 × kMaxRtcpFeedbackInterval: older loss is stale


class LossBasedControl:
    """The combined target in bps (:attr:`target`), moved by loss reports."""

    def __init__(self, initial_bps: float, min_bps: float, max_bps: float) -> None:
        self.min_bps = float(min_bps)
        self.max_bps = float(max_bps)
        self.delay_limit = math.inf
        self.receiver_limit = math.inf
        self.rtt = 0.0
        self.loss_fraction = 0.0  # the last loss fraction computed
        self._current = min(max(float(initial_bps), self.min_bps), self.max_bps)
        self._lost = 0
        self._expected = 0
        self._first_report: float | None = None
        self._last_loss_report: float | None = None
        self._last_decrease: float | None = None
        self._decreased_since_report = False
        self._min_history: deque[tuple[float, float]] = deque()  # (time, target), increasing

    @property
    def target(self) -> float:
        return max(self.min_bps, min(self._current, self.receiver_limit))

    def set_limits(self, min_bps: float, max_bps: float) -> None:
        self.min_bps = float(min_bps)
        self.max_bps = float(max_bps)
        self._set_target(self._current)

    def set_send_bitrate(self, bps: float) -> None:
        """Jump to ``bps`` (a probe result): no longer capped by the old delay estimate."""
        self.delay_limit = math.inf
        self._set_target(bps)
        self._min_history.clear()

    def update_delay_limit(self, bps: float) -> None:
        self.delay_limit = bps if bps > 0 else math.inf
        self._set_target(self._current)

    def update_receiver_limit(self, bps: float | None) -> None:
        """A REMB from the receiver; 0 or None lifts the limit."""
        self.receiver_limit = bps if bps else math.inf

    def on_packets(self, lost: int, expected: int, now: float) -> None:
        """A feedback's count of newly lost and newly reported packets (``lost`` may be
        negative: late arrivals of packets reported lost before)."""
        if expected <= 0 and lost <= 0:
            return
        self._lost += lost
        self._expected += max(expected, 0)
        if self._expected < LIMIT_NUM_PACKETS:
            return
        # libwebrtc keeps the fraction in Q8 (the RTCP field's precision).
        q8 = min(max(self._lost, 0) * 256 // self._expected, 255)
        self._on_fraction(q8 / 256.0, now)
        self._lost = 0
        self._expected = 0

    def on_loss_fraction(self, fraction: float, now: float) -> None:
        """A loss fraction from an RTCP receiver report (0 .. 1)."""
        self._on_fraction(min(max(fraction, 0.0), 1.0), now)

    def _on_fraction(self, fraction: float, now: float) -> None:
        if self._first_report is None:
            self._first_report = now
        self.loss_fraction = fraction
        self._last_loss_report = now
        self._decreased_since_report = False

    def in_start_phase(self, now: float) -> bool:
        return self._first_report is None or now - self._first_report < START_PHASE

    def update(self, now: float) -> float:
        """Apply the rules above; called per feedback and per receiver report."""
        if self.loss_fraction == 0.0 and self.in_start_phase(now):
            new = self._current
            if self.receiver_limit < math.inf:
                new = max(new, self.receiver_limit)
            if self.delay_limit < math.inf:
                new = max(new, self.delay_limit)
            if new != self._current:
                self._min_history.clear()
                self._min_history.append((now, self._current))
                self._set_target(new)
                return self.target
        self._update_min_history(now)
        last = self._last_loss_report
        if last is not None and now - last < LOSS_REPORT_TIMEOUT:
            loss = self.loss_fraction
            if loss <= LOW_LOSS_THRESHOLD:
                self._set_target(self._min_history[0][1] * INCREASE_FACTOR + INCREASE_EXTRA)
                return self.target
            if loss > HIGH_LOSS_THRESHOLD and not self._decreased_since_report and (
                    self._last_decrease is None
                    or now - self._last_decrease >= DECREASE_INTERVAL + self.rtt):
                self._last_decrease = now
                self._decreased_since_report = True
                self._set_target(self._current * (1.0 - loss / 2.0))
                return self.target
        self._set_target(self._current)
        return self.target

    def _update_min_history(self, now: float) -> None:
        history = self._min_history
        # Drop entries older than the increase interval (+1 ms as libwebrtc, for rounding).
        while history and now - history[0][0] + 0.001 > INCREASE_INTERVAL:
            history.popleft()
        while history and self._current <= history[-1][1]:
            history.pop()
        history.append((now, self._current))

    def _set_target(self, bps: float) -> None:
        self._current = max(min(bps, self.delay_limit, self.max_bps), self.min_bps)
