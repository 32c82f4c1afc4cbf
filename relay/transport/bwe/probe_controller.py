"""When to probe, and at what rate: probe clusters to climb faster than AIMD's 8 % a second.

A probe cluster is a short burst the transport sends at a set rate (RTX copies of recent
packets, or padding on the RTX stream); how fast the receiver got it says whether the path
carries that rate (:mod:`relay.transport.bwe.probe_result`). The rules follow libwebrtc's
``ProbeController``, driven by what the consumers want (``wanted_bps``, the sum of their
preferred layers) instead of an encoder's allocation, as mediasoup does:

- nothing is probed while consumers want no more than the estimate (what they want counts
  1.35 times, as in mediasoup, for headroom; +5 %: a probe that close tells nothing), nor
  while the delay detector sees overuse or loss is high;
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
at the configured maximum.

A cluster lasts at least 5 packets and ``PROBE_DURATION`` (100 ms) at twice the estimate
(shorter when faster, see :func:`cluster_bytes`), not libwebrtc's 15 ms: a token bucket (`tc tbf`, a home router's shaper) passes a burst at the sender's rate until
the bucket is empty, so a cluster must outlast the bucket to meet the bottleneck. A bucket
of B bytes holds a probe at P over a capacity C for B / (P - C): 60 ms for 4.5 kB at twice
600 kbit/s, where libwebrtc's 15-ms cluster (3.4 kB at 1.8 Mbit/s) passes whole and reads
as a free path.

A round's results (:meth:`ProbeController.on_result`) are provisional while it goes on: an
unsaturated result that earns a further probe, or that comes before the round's last
cluster, is held, and the round's outcome is the first saturated result (the path's
capacity, measured) or, when none saturates, the highest result once the round ends. So a
cluster that slipped through a bucket does not lift the estimate for the moment until the
next, faster one shows where the path ends; the estimator drops held results when the
delay detector sees overuse meanwhile. Times are seconds, rates bits per second.
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
MIN_PROBE_DURATION = 0.015  # min_probe_duration (libwebrtc's; ours is longer, see above)
PROBE_DURATION = 0.1
WANTED_GROWTH = 0.1  # mediasoup MaxBitrateMarginFactor
# mediasoup MaxBitrateIncrementFactor: it tells libwebrtc 1.35 x what the consumers want as
# the max allocated bitrate. A layer's bitrate swings (key frames, the encoder's own ramp):
# an estimate only just above its average would read each swing as a bandwidth downgrade.
WANTED_HEADROOM = 1.35


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


def cluster_bytes(rate: float, estimate: float) -> int:
    """A cluster's minimum bytes: ``PROBE_DURATION`` at ``rate`` up to what twice the
    estimate sends in that time (a faster probe's excess over the estimate empties a bucket
    sooner, and a cluster must not queue much longer than the usual one on a path as slow as
    the estimate), and never under libwebrtc's 15 ms."""
    duration_bytes = min(rate, FURTHER_PROBE_SCALE * estimate) * PROBE_DURATION
    return max(1, int(max(duration_bytes, rate * MIN_PROBE_DURATION) / 8))


class ProbeState(enum.Enum):
    INIT = "init"  # never probed
    WAITING = "waiting"  # a probe is out; its result may ask for a further one
    COMPLETE = "complete"


class ProbeController:
    """Decides probe clusters and a round's outcome; :meth:`request` is polled, :meth:`on_result`
    fed with every cluster's result."""

    def __init__(self, initial_bps: float) -> None:
        self.initial_bps = float(initial_bps)
        self.state = ProbeState.INIT
        self.clusters = 0  # issued so far
        self._next_id = 1
        self._last_probe: float | None = None
        self._wanted_at_last_probe = 0.0
        self._min_to_probe_further = math.inf
        self._further_bps: float | None = None  # a further probe the next request sends
        self._last_cluster_id = 0  # the last cluster of the round
        self._held: float | None = None  # the round's best unsaturated result so far

    def on_result(self, cluster_id: int, bps: float, saturated: bool) -> float | None:
        """A cluster's result: returns the estimate to take now, or None while the round
        goes on (see the module doc). Above 70 % of the last probe's rate, an unsaturated
        result of the round's last cluster earns a further probe at twice it."""
        if self.state is not ProbeState.WAITING:
            return bps  # a late result of a round already over
        if saturated:
            self._end_round()
            return bps
        self._held = bps if self._held is None else max(self._held, bps)
        if cluster_id < self._last_cluster_id:
            return None  # the round's last cluster will tell more
        if bps > self._min_to_probe_further:
            self._further_bps = FURTHER_PROBE_SCALE * bps
            self._min_to_probe_further = math.inf
            return None
        return self._end_round()

    def take_held(self) -> float | None:
        """The held result of a round that timed out (polled; once)."""
        if self.state is ProbeState.WAITING or self._held is None:
            return None
        held, self._held = self._held, None
        return held

    def drop_held(self) -> None:
        """The delay detector saw overuse: a held result did not measure spare capacity."""
        self._held = None

    def _end_round(self) -> float | None:
        self.state = ProbeState.COMPLETE
        self._min_to_probe_further = math.inf
        self._further_bps = None
        held, self._held = self._held, None
        return held

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
        wanted = min(WANTED_HEADROOM * wanted_bps, max_bps)
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
            # The round's held result is what the path just carried: size the further
            # cluster from it, not from the estimate the round started at. Clusters sized
            # from a low estimate each fit a token bucket refilled between them, and a round
            # climbed 110 kbit/s -> 1.4 Mbit/s behind a 350 kbit/s bucket (browser test).
            if self._held is not None:
                estimate_bps = max(estimate_bps, self._held)
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
            clusters.append(ProbeCluster(self._next_id, int(rate), MIN_PROBE_PACKETS,
                                         cluster_bytes(rate, estimate)))
            self._last_cluster_id = self._next_id
            self._next_id += 1
        self.clusters += len(clusters)
        if clusters:
            # The round goes on until its last cluster's result (or PROBE_TIMEOUT), a further
            # probe only if this one was not capped.
            self.state = ProbeState.WAITING
            self._min_to_probe_further = (FURTHER_PROBE_THRESHOLD * highest if probe_further
                                          else math.inf)
        else:
            self.state = ProbeState.COMPLETE
            self._min_to_probe_further = math.inf
        return clusters
