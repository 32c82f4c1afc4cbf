"""Delay-based overuse detection: a trendline over the accumulated inter-group delay
variation, compared with an adaptive threshold.

draft-ietf-rmcat-gcc-02 §5.4–5.5 as libwebrtc's ``TrendlineEstimator`` does it (it replaced
the draft's Kalman filter): each group's delay variation (arrival delta minus send delta) is
accumulated, smoothed exponentially, and a least-squares line is fitted through the last 20
(arrival time, smoothed delay) points. The slope estimates (send rate - capacity) /
capacity: above 0 the queue is filling. The slope times min(deltas, 60) times a gain of 4
is the "modified trend" compared with the threshold:

- above +threshold for more than 10 ms (and two samples, and not falling): OVERUSING;
- below -threshold: UNDERUSING (the queue drains);
- otherwise NORMAL.

The threshold adapts (§5.4, eq. 5): it moves toward |modified trend| at k_up = 0.0087 per ms
when the trend is above it, k_down = 0.039 per ms when below, so it follows the path's
noise and a concurrent TCP flow does not starve us; it does not adapt to spikes more than
15 ms above it, and stays within 6 .. 600 ms.
"""

from __future__ import annotations

import enum
from collections import deque

# libwebrtc trendline_estimator.cc / .h
WINDOW_SIZE = 20  # TrendlineEstimatorSettings::kDefaultTrendlineWindowSize
SMOOTHING_COEF = 0.9  # kDefaultTrendlineSmoothingCoeff
THRESHOLD_GAIN = 4.0  # kDefaultTrendlineThresholdGain
K_UP = 0.0087  # threshold gain per ms when |trend| is above the threshold
K_DOWN = 0.039  # ... and when below
INITIAL_THRESHOLD = 12.5  # ms
MIN_THRESHOLD = 6.0
MAX_THRESHOLD = 600.0
MAX_ADAPT_OFFSET = 15.0  # kMaxAdaptOffsetMs: no adapting to spikes this far above
MAX_THRESHOLD_TIME_DELTA = 100.0  # ms of adaptation per sample at most
OVERUSING_TIME_THRESHOLD = 10.0  # kOverUsingTimeThreshold, ms
MIN_NUM_DELTAS = 60  # kMinNumDeltas: the trend gain ramps up over the first 60 deltas
DELTA_COUNTER_MAX = 1000  # kDeltaCounterMax


class BandwidthUsage(enum.Enum):
    NORMAL = "normal"
    UNDERUSING = "underusing"
    OVERUSING = "overusing"


class TrendlineEstimator:
    """Per group delta: :meth:`update`; the verdict: :attr:`state`.

    Works in milliseconds internally (the constants above are libwebrtc's, in ms)."""

    def __init__(self) -> None:
        self._num_deltas = 0
        self._first_arrival: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._history: deque[tuple[float, float]] = deque(maxlen=WINDOW_SIZE)
        self._prev_trend = 0.0
        self._time_over_using = -1.0
        self._overuse_counter = 0
        self._last_threshold_update: float | None = None
        self.threshold = INITIAL_THRESHOLD
        self.modified_trend = 0.0
        self.trend = 0.0
        self.state = BandwidthUsage.NORMAL

    def update(self, recv_delta: float, send_delta: float, arrival: float) -> BandwidthUsage:
        """One inter-group delta: ``recv_delta`` and ``send_delta`` in seconds, ``arrival``
        the group's arrival time (seconds, receiver's clock)."""
        recv_ms, send_ms, arrival_ms = recv_delta * 1000.0, send_delta * 1000.0, arrival * 1000.0
        self._num_deltas = min(self._num_deltas + 1, DELTA_COUNTER_MAX)
        if self._first_arrival is None:
            self._first_arrival = arrival_ms
        self._accumulated += recv_ms - send_ms
        self._smoothed = SMOOTHING_COEF * self._smoothed + (1 - SMOOTHING_COEF) * self._accumulated
        self._history.append((arrival_ms - self._first_arrival, self._smoothed))
        trend = self._prev_trend
        if len(self._history) == WINDOW_SIZE:
            slope = _linear_fit_slope(self._history)
            if slope is not None:
                trend = slope
        self.trend = trend
        self._detect(trend, send_ms, arrival_ms)
        return self.state

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        if self._num_deltas < 2:
            self.state = BandwidthUsage.NORMAL
            return
        modified = min(self._num_deltas, MIN_NUM_DELTAS) * trend * THRESHOLD_GAIN
        self.modified_trend = modified
        if modified > self.threshold:
            if self._time_over_using == -1.0:
                # Assume we have been over-using half the time since the previous sample.
                self._time_over_using = send_delta_ms / 2
            else:
                self._time_over_using += send_delta_ms
            self._overuse_counter += 1
            if (self._time_over_using > OVERUSING_TIME_THRESHOLD and self._overuse_counter > 1
                    and trend >= self._prev_trend):
                self._time_over_using = 0.0
                self._overuse_counter = 0
                self.state = BandwidthUsage.OVERUSING
        elif modified < -self.threshold:
            self._time_over_using = -1.0
            self._overuse_counter = 0
            self.state = BandwidthUsage.UNDERUSING
        else:
            self._time_over_using = -1.0
            self._overuse_counter = 0
            self.state = BandwidthUsage.NORMAL
        self._prev_trend = trend
        self._update_threshold(modified, now_ms)

    def _update_threshold(self, modified: float, now_ms: float) -> None:
        last = self._last_threshold_update
        self._last_threshold_update = now_ms
        if last is None:
            last = now_ms
        if abs(modified) > self.threshold + MAX_ADAPT_OFFSET:
            return  # a latency spike (a sudden capacity drop, say): do not adapt to it
        k = K_DOWN if abs(modified) < self.threshold else K_UP
        dt = min(max(now_ms - last, 0.0), MAX_THRESHOLD_TIME_DELTA)
        self.threshold += k * (abs(modified) - self.threshold) * dt
        self.threshold = min(max(self.threshold, MIN_THRESHOLD), MAX_THRESHOLD)


def _linear_fit_slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None when all x are equal."""
    n = len(points)
    x_avg = sum(p[0] for p in points) / n
    y_avg = sum(p[1] for p in points) / n
    num = 0.0
    den = 0.0
    for x, y in points:
        dx = x - x_avg
        num += dx * (y - y_avg)
        den += dx * dx
    return num / den if den else None
