"""The acknowledged bitrate: how fast the receiver actually got our packets.

libwebrtc's ``RobustThroughputEstimator`` (its acknowledged-bitrate estimator by default
since it replaced the windowed Bayesian ``BitrateEstimator``): a window of the latest
reported arrivals, at least 20 packets and at least 1 s of arrivals, at most 500 packets and
5 s. The rate is the lower of

- the receive rate: bytes but the first received, over the arrival span with its largest
  gap replaced by the second largest (one pause, a frame gap or a hiccup, does not read as
  a slow path), and
- the send rate: bytes but the last sent, over the send span (a receiver cannot have got
  more than we sent; a burst queued ahead of it is not a fast path).

With fewer than 10 packets there is no estimate. A window of packets rather than fixed time
slices keeps the estimate free of the ±1-packet quantisation a 150 ms slice has at low
rates. AIMD backs off to 0.85 × this rate and caps increases at 1.5 × it.

Rates are bits per second; arrival times on the receiver's clock, send times on ours.
"""

from __future__ import annotations

from collections import deque

# libwebrtc RobustThroughputEstimatorSettings defaults
WINDOW_PACKETS = 20
MAX_WINDOW_PACKETS = 500
MIN_WINDOW_DURATION = 1.0
MAX_WINDOW_DURATION = 5.0
REQUIRED_PACKETS = 10
MIN_DURATION = 0.001  # spans are at least 1 ms


class AckedBitrateEstimator:
    """Feed reported arrivals with :meth:`update`; read :attr:`bitrate` (bps or None)."""

    def __init__(self) -> None:
        self._window: deque[tuple[float, float, int]] = deque()  # (arrival, send time, size)
        self._latest_discarded_send = float("-inf")
        self._bitrate: float | None = None
        self._stale = False  # the window changed since _bitrate was computed

    def update(self, arrival: float, send_time: float, size: int) -> None:
        """One packet reported received (feed a feedback's packets in arrival order)."""
        window = self._window
        if window and arrival < window[-1][0]:
            # Out of order: insert in place (rare; feedbacks are sorted, this is across them).
            items = list(window)
            i = len(items)
            while i and items[i - 1][0] > arrival:
                i -= 1
            items.insert(i, (arrival, send_time, size))
            window.clear()
            window.extend(items)
        else:
            window.append((arrival, send_time, size))
        self._stale = True
        while self._first_outside_window():
            self._latest_discarded_send = max(self._latest_discarded_send, window[0][1])
            window.popleft()

    def _first_outside_window(self) -> bool:
        window = self._window
        if not window:
            return False
        if len(window) > MAX_WINDOW_PACKETS:
            return True
        duration = window[-1][0] - window[0][0]
        if duration > MAX_WINDOW_DURATION:
            return True
        return len(window) > WINDOW_PACKETS and duration > MIN_WINDOW_DURATION

    @property
    def bitrate(self) -> float | None:
        if self._stale:  # computed at most once per feedback: O(window)
            self._bitrate = self._compute()
            self._stale = False
        return self._bitrate

    def _compute(self) -> float | None:
        window = self._window
        if len(window) < REQUIRED_PACKETS:
            return None
        largest_gap = second_gap = 0.0
        prev = window[0][0]
        recv_size = 0
        send_size = 0
        sent_packets = 0
        first_send = float("inf")
        last_send = float("-inf")
        last_send_size = 0
        for arrival, send_time, size in window:
            gap = arrival - prev
            prev = arrival
            if gap > largest_gap:
                largest_gap, second_gap = gap, largest_gap
            elif gap > second_gap:
                second_gap = gap
            recv_size += size
            if send_time < self._latest_discarded_send:
                continue  # sent before packets already dropped from the window
            if send_time > last_send:
                last_send = send_time
                last_send_size = size
            if send_time < first_send:
                first_send = send_time
            send_size += size
            sent_packets += 1
        recv_size -= window[0][2]  # the window is in arrival order: the first received
        recv_duration = (window[-1][0] - window[0][0]) - largest_gap + second_gap
        recv_rate = 8 * recv_size / max(recv_duration, MIN_DURATION)
        if sent_packets < REQUIRED_PACKETS:
            return recv_rate
        send_rate = 8 * (send_size - last_send_size) / max(last_send - first_send, MIN_DURATION)
        return min(send_rate, recv_rate)
