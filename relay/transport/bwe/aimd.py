"""AIMD rate control: the delay-based estimate, driven by the overuse detector.

draft-ietf-rmcat-gcc-02 §5.5 as libwebrtc's ``AimdRateControl`` (send-side mode) does it.
A three-state machine driven by the detector's verdict:

- NORMAL moves HOLD to INCREASE; OVERUSING moves anything to DECREASE; UNDERUSING moves
  to HOLD (the queue drains, wait for it).
- INCREASE: multiplicative, 8 % per second, while the link capacity is unknown; additive
  (about one packet per response time, 2 × (RTT + 100 ms)) once an overuse has shown
  where the capacity is. Never above 1.5 × the acknowledged bitrate + 10 kbit/s, and not
  at all while the sender is application-limited (libwebrtc's
  WebRTC-DontIncreaseDelayBasedBweInAlr): an estimate the sender does not use is not tested
  by the network; probes raise it then.
- DECREASE: to 0.85 × the acknowledged bitrate (below what got through, to drain the
  queue we built), never up; then HOLD.

The link capacity estimate (libwebrtc's ``LinkCapacityEstimator``) is an average of the
acknowledged bitrate at each overuse, with a normalised variance; it is forgotten when
the throughput leaves its ±3 σ band, which brings back multiplicative increase.
Rates are bits per second, times seconds.
"""

from __future__ import annotations

import enum
import math

from relay.transport.bwe.trendline import BandwidthUsage

# libwebrtc aimd_rate_control.cc
BACKOFF_FACTOR = 0.85  # kDefaultBackoffFactor (beta)
DEFAULT_RTT = 0.2  # kDefaultRtt
MULTIPLICATIVE_INCREASE = 1.08  # per second (alpha)
MIN_MULTIPLICATIVE_INCREASE = 1000.0  # bps per update
MIN_ADDITIVE_INCREASE = 4000.0  # kMinIncreaseRateBpsPerSecond
ADDITIVE_FRAME_RATE = 30.0  # GetNearMaxIncreaseRateBpsPerSecond: one packet per frame...
ADDITIVE_PACKET_SIZE = 1200  # ...of at most 1200 bytes
DETECTOR_DELAY = 0.1  # "approximate the over-use estimator delay to 100 ms"
THROUGHPUT_LIMIT_FACTOR = 1.5  # troughput_based_limit = 1.5 × acked + 10 kbps
THROUGHPUT_LIMIT_EXTRA = 10_000.0
MIN_REDUCTION_INTERVAL = 0.010  # TimeToReduceFurther: RTT clamped to 10 .. 200 ms
MAX_REDUCTION_INTERVAL = 0.200

# libwebrtc link_capacity_estimator.cc
CAPACITY_ALPHA_OVERUSE = 0.05
CAPACITY_DEVIATION_MIN = 0.4  # normalised variance; 0.4 ~= 14 kbit/s at 500 kbit/s
CAPACITY_DEVIATION_MAX = 2.5  # 2.5 ~= 35 kbit/s at 500 kbit/s


class RateControlState(enum.Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


class LinkCapacityEstimator:
    """Where the last overuses happened: an average in kbit/s with a normalised variance."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation_kbps = CAPACITY_DEVIATION_MIN

    def _sigma_kbps(self) -> float:
        assert self.estimate_kbps is not None
        return math.sqrt(self._deviation_kbps * self.estimate_kbps)

    def upper_bound(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + 3 * self._sigma_kbps()) * 1000.0

    def lower_bound(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - 3 * self._sigma_kbps()) * 1000.0

    def reset(self) -> None:
        self.estimate_kbps = None

    def on_overuse(self, acked_bps: float) -> None:
        sample = acked_bps / 1000.0
        alpha = CAPACITY_ALPHA_OVERUSE
        if self.estimate_kbps is None:
            self.estimate_kbps = sample
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * sample
        norm = max(self.estimate_kbps, 1.0)
        error = self.estimate_kbps - sample
        deviation = (1 - alpha) * self._deviation_kbps + alpha * error * error / norm
        self._deviation_kbps = min(max(deviation, CAPACITY_DEVIATION_MIN), CAPACITY_DEVIATION_MAX)


class AimdRateControl:
    """The delay-based estimate in bps (:attr:`bitrate`), within ``min_bps .. max_bps``."""

    def __init__(self, initial_bps: float, min_bps: float, max_bps: float) -> None:
        self.min_bps = float(min_bps)
        self.max_bps = float(max_bps)
        self.bitrate = min(max(float(initial_bps), self.min_bps), self.max_bps)
        self.state = RateControlState.HOLD
        self.link_capacity = LinkCapacityEstimator()
        self.rtt = DEFAULT_RTT
        self._latest_acked = self.bitrate
        self._last_change: float | None = None
        self._last_decrease: float | None = None

    def set_limits(self, min_bps: float, max_bps: float) -> None:
        self.min_bps = float(min_bps)
        self.max_bps = float(max_bps)
        self.bitrate = self._clamp(self.bitrate)

    def set_rtt(self, rtt: float) -> None:
        self.rtt = rtt

    def set_estimate(self, bps: float, now: float) -> None:
        """Jump to ``bps`` (a probe result, or a halving before any acknowledged rate)."""
        prev = self.bitrate
        self.bitrate = self._clamp(bps)
        self._last_change = now
        if self.bitrate < prev:
            self._last_decrease = now

    def time_to_reduce_further(self, now: float, acked_bps: float) -> bool:
        """While overusing, reduce again once an RTT (10–200 ms) has passed since the last
        change, or at once when the throughput fell below half the estimate."""
        interval = min(max(self.rtt, MIN_REDUCTION_INTERVAL), MAX_REDUCTION_INTERVAL)
        if self._last_change is None or now - self._last_change >= interval:
            return True
        return acked_bps < 0.5 * self.bitrate

    def initial_time_to_reduce_further(self, now: float) -> bool:
        """Overusing before any acknowledged bitrate: libwebrtc halves the estimate, at most
        once per RTT (its check against estimate/2 - 1 bps always passes)."""
        return self.time_to_reduce_further(now, self.bitrate / 2 - 1)

    def update(self, usage: BandwidthUsage, acked_bps: float | None, now: float,
               app_limited: bool = False) -> float:
        """Apply the detector's verdict with the acknowledged bitrate (None when unknown:
        the last one is used); ``app_limited``: the sender sends well under the estimate.
        Returns the new estimate."""
        if acked_bps is not None:
            self._latest_acked = acked_bps
        throughput = self._latest_acked
        self._change_state(usage, now)
        new_bitrate: float | None = None
        if self.state is RateControlState.INCREASE:
            if throughput > self.link_capacity.upper_bound():
                self.link_capacity.reset()  # the path got faster: discover it again
            limit = THROUGHPUT_LIMIT_FACTOR * throughput + THROUGHPUT_LIMIT_EXTRA
            # Above the limit already (a probe put us there): keep it, do not add.
            if self.bitrate < limit and not app_limited:
                if self.link_capacity.estimate_kbps is not None:
                    increased = self.bitrate + self._additive_increase(now)
                else:
                    increased = self.bitrate + self._multiplicative_increase(now)
                new_bitrate = min(increased, limit)
            self._last_change = now
        elif self.state is RateControlState.DECREASE:
            decreased = BACKOFF_FACTOR * throughput
            if decreased > self.bitrate and self.link_capacity.estimate_kbps is not None:
                decreased = BACKOFF_FACTOR * self.link_capacity.estimate_kbps * 1000.0
            if decreased < self.bitrate:  # never increase on overuse
                new_bitrate = decreased
            if throughput < self.link_capacity.lower_bound():
                self.link_capacity.reset()  # far below what we knew: start the average over
            self.link_capacity.on_overuse(throughput)
            self.state = RateControlState.HOLD  # hold until the queue drains
            self._last_change = now
            self._last_decrease = now
        if new_bitrate is not None:
            self.bitrate = self._clamp(new_bitrate)
        return self.bitrate

    def _change_state(self, usage: BandwidthUsage, now: float) -> None:
        if usage is BandwidthUsage.NORMAL:
            if self.state is RateControlState.HOLD:
                self._last_change = now
                self.state = RateControlState.INCREASE
        elif usage is BandwidthUsage.OVERUSING:
            self.state = RateControlState.DECREASE
        else:
            self.state = RateControlState.HOLD

    def _multiplicative_increase(self, now: float) -> float:
        alpha = MULTIPLICATIVE_INCREASE
        if self._last_change is not None:
            alpha **= min(max(now - self._last_change, 0.0), 1.0)
        return max(self.bitrate * (alpha - 1.0), MIN_MULTIPLICATIVE_INCREASE)

    def near_max_increase_rate(self) -> float:
        """Additive increase in bps per second: one average packet per response time."""
        frame_bits = self.bitrate / ADDITIVE_FRAME_RATE
        packets_per_frame = math.ceil(frame_bits / (8 * ADDITIVE_PACKET_SIZE))
        avg_packet_bits = frame_bits / max(packets_per_frame, 1)
        response_time = 2 * (self.rtt + DETECTOR_DELAY)  # doubled: libwebrtc's in_experiment_
        return max(MIN_ADDITIVE_INCREASE, avg_packet_bits / response_time)

    def _additive_increase(self, now: float) -> float:
        elapsed = 0.0 if self._last_change is None else max(now - self._last_change, 0.0)
        return self.near_max_increase_rate() * elapsed

    def _clamp(self, bps: float) -> float:
        return min(max(bps, self.min_bps), self.max_bps)
