"""When to probe, and at what rate: probe clusters to climb faster than AIMD's 8 % a second.

A probe cluster is a short burst the transport sends at a set rate (RTX copies of recent
packets, or padding on the RTX stream); how fast the receiver got it says whether the path
carries that rate (:mod:`relay.transport.bwe.probe_result`). The rules follow libwebrtc's
``ProbeController``, driven by what the consumers want (``wanted_bps``, the sum of their
preferred layers) instead of an encoder's allocation, as mediasoup does:

- nothing is probed while consumers want no more than the estimate (+5 %: a probe that
  close tells nothing), nor while the delay detector sees overuse or loss is high;
- the first time consumers want more: exponential probes at 3 × and 6 × the initial rate;
- while a probe's result comes back above 70 % of its rate, probe further at 2 × the
  result; a result not back within 1 s ends the round;
- afterwards, while consumers want more and the transport is application-limited (sends
  well under its estimate, so the network never tests it and AIMD may raise it only to
  1.5 × what gets through), probe at 2 × the estimate every 5 s (libwebrtc's ALR probing
  interval), or after 1 s when what they want grew by more than 10 % (mediasoup's margin
  before it reconfigures probing). A transport that sends its whole estimate needs no
  probe: AIMD climbs by itself, and a probe on top of a full path only builds a queue.

Every probe is capped at 2 × ``wanted_bps`` (libwebrtc: 2 × the max allocated bitrate) and
at the configured maximum. A cluster lasts at least 15 ms and 5 packets. Times are seconds,
rates bits per second.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

# libwebrtc probe_controller.cc (ProbeControllerConfig defaults)
FIRST_EXPONENTIAL_PROBE_SCALE = 3.0  # p1
SECOND_EXPONENTIAL_PROBE_SCALE = 6.0  # p2
FURTHER_PROBE_SCALE = 2.0  # step_size
FURTHER_PROBE_THRESHOLD = 0.7  # further_probe_threshold
PROBE_INTERVAL = 5.0  # alr_interval
PERIODIC_PROBE_SCALE = 2.0  # alr_scale
PROBE_TIMEOUT = 1.0  # kMaxWaitingTimeForProbingResult
PROBE_UNCERTAINTY = 0.05  # kProbeUncertainty
MAX_PROBE_OVER_WANTED = 2.0  # "allow probing up to 2x" the max allocated bitrate
MIN_PROBE_PACKETS = 5  # min_probe_packets_sent
MIN_PROBE_DURATION = 0.015  # min_probe_duration
WANTED_GROWTH = 0.1  # mediasoup MaxBitrateMarginFactor


@dataclass(frozen=True)
class ProbeCluster:
    """Send at ``bitrate_bps`` in total until at least ``min_packets`` packets and
    ``min_bytes`` bytes went out, recording every packet sent meanwhile (media included) in
    the send history with ``cluster=id``: the result is the rate the path carried, so
    packets left unmarked would read as a slower path. Packets of about
    ``min_bytes / min_packets`` keep the burst as short as asked (at low rates, padding
    rather than full-size RTX copies); bigger ones build a longer queue."""

    id: int
    bitrate_bps: int
    min_packets: int
    min_bytes: int

    @property
    def duration(self) -> float:
        return self.min_bytes * 8 / self.bitrate_bps


class ProbeState(enum.Enum):
    INIT = "init"  # never probed
    WAITING = "waiting"  # a probe is out; its result may ask for a further one
    COMPLETE = "complete"


class ProbeController:
    """Decides probe clusters; :meth:`request` is polled, :meth:`on_estimate` fed."""

    def __init__(self, initial_bps: float) -> None:
        self.initial_bps = float(initial_bps)
        self.state = ProbeState.INIT
        self.clusters = 0  # issued so far
        self._next_id = 1
        self._last_probe: float | None = None
        self._wanted_at_last_probe = 0.0
        self._min_to_probe_further = math.inf
        self._further_bps: float | None = None  # a further probe the next request sends

    def on_estimate(self, estimate_bps: float) -> None:
        """A new estimate; above 70 % of the last probe's rate it earns a further probe."""
        if self.state is ProbeState.WAITING and estimate_bps > self._min_to_probe_further:
            self._further_bps = FURTHER_PROBE_SCALE * estimate_bps
            self._min_to_probe_further = math.inf

    def request(self, now: float, wanted_bps: float, estimate_bps: float, max_bps: float,
                allowed: bool, app_limited: bool) -> list[ProbeCluster]:
        """The clusters to send now ([] mostly). ``allowed`` is False while the estimator
        sees overuse or high loss; ``app_limited`` says the transport sends well under its
        estimate."""
        if (self.state is ProbeState.WAITING and self._last_probe is not None
                and now - self._last_probe > PROBE_TIMEOUT):
            self.state = ProbeState.COMPLETE
            self._min_to_probe_further = math.inf
            self._further_bps = None
        wanted = min(wanted_bps, max_bps)
        if not allowed or wanted <= estimate_bps * (1 + PROBE_UNCERTAINTY):
            return []
        cap = min(max_bps, MAX_PROBE_OVER_WANTED * wanted)
        if self.state is ProbeState.INIT:
            rates = [FIRST_EXPONENTIAL_PROBE_SCALE * self.initial_bps,
                     SECOND_EXPONENTIAL_PROBE_SCALE * self.initial_bps]
        elif self.state is ProbeState.WAITING:
            if self._further_bps is None:
                return []
            rates = [self._further_bps]
            self._further_bps = None
        else:
            assert self._last_probe is not None
            if not app_limited:
                return []
            since = now - self._last_probe
            grew = wanted > self._wanted_at_last_probe * (1 + WANTED_GROWTH)
            if since < PROBE_INTERVAL and not (grew and since >= PROBE_TIMEOUT):
                return []
            rates = [PERIODIC_PROBE_SCALE * estimate_bps]
        return self._initiate(now, rates, wanted, estimate_bps, cap)

    def _initiate(self, now: float, rates: list[float], wanted: float, estimate: float,
                  cap: float) -> list[ProbeCluster]:
        self._last_probe = now
        self._wanted_at_last_probe = wanted
        probe_further = True
        clusters: list[ProbeCluster] = []
        highest = 0.0
        for rate in rates:
            if rate >= cap:
                rate = cap
                probe_further = False  # nothing to find above what consumers could use
            if rate <= estimate * (1 + PROBE_UNCERTAINTY) or rate <= highest:
                continue
            highest = rate
            clusters.append(ProbeCluster(
                self._next_id, int(rate), MIN_PROBE_PACKETS,
                max(1, int(rate * MIN_PROBE_DURATION / 8))))
            self._next_id += 1
        self.clusters += len(clusters)
        if clusters and probe_further:
            self.state = ProbeState.WAITING
            self._min_to_probe_further = FURTHER_PROBE_THRESHOLD * highest
        else:
            self.state = ProbeState.COMPLETE
            self._min_to_probe_further = math.inf
        return clusters
