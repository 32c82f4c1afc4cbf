"""The available outgoing bitrate toward one subscriber, from transport-cc feedback.

A send-side estimator of the GCC family (draft-ietf-rmcat-gcc-02), laid out as libwebrtc's
goog_cc (``GoogCcNetworkController``) is, which mediasoup runs and pion's ``gcc`` mirrors:

- :class:`~relay.transport.bwe.send_history.SendHistory` remembers when and how big each
  packet went out; feedback turns it into (send time, arrival time) pairs and losses.
- Delay-based: packets grouped by send time
  (:class:`~relay.transport.bwe.inter_arrival.InterArrival`), a trendline over the
  inter-group delay variation with an adaptive threshold
  (:class:`~relay.transport.bwe.trendline.TrendlineEstimator`), and AIMD rate control
  (:class:`~relay.transport.bwe.aimd.AimdRateControl`) fed with the acknowledged bitrate
  (:class:`~relay.transport.bwe.acked_bitrate.AckedBitrateEstimator`).
- Loss-based bound, which also combines the bounds into the target
  (:class:`~relay.transport.bwe.loss_based.LossBasedControl`): loss from transport-cc while
  it flows, from RTCP receiver reports otherwise; REMB caps the target.
- Probing (:class:`~relay.transport.bwe.probe_controller.ProbeController` says when,
  :class:`~relay.transport.bwe.probe_result.ProbeBitrateEstimator` reads the result). A probe
  result sets the estimate, up or down (a saturated probe measured the path), but never
  under 0.85 × the acknowledged bitrate, as libwebrtc does; and never above what the
  receiver acknowledged of the cluster. Nothing is probed while the delay detector sees the
  queue grow or drain (libwebrtc's kDelayBasedLimitedDelayIncreased). A round's results
  wait for its end (the controller holds them), and a held result is dropped, not taken,
  when the delay detector sees overuse meanwhile: a probe that built a queue did not find
  spare capacity, however fast its head got through a token bucket.
- Application-limited (the acknowledged bitrate under 80 % of the estimate: the transport
  does not use its estimate, as an SFU forwarding discrete layers mostly does): AIMD does
  not raise the estimate, since the network does not test it; probes do, when consumers
  want more.

Sans-I/O, called per feedback (every 50–250 ms), not per packet, except
``history.on_sent``. Times are seconds: ``now`` on our monotonic clock, arrival times on the
receiver's (only their differences matter; the 24-bit transport-cc reference time wrap is
undone here). Rates are bits per second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from relay.rtp.transport_cc import REFERENCE_TICK_US, REFERENCE_TIME_BITS, TransportCcFeedback
from relay.transport.bwe.acked_bitrate import AckedBitrateEstimator
from relay.transport.bwe.aimd import AimdRateControl
from relay.transport.bwe.inter_arrival import InterArrival
from relay.transport.bwe.loss_based import HIGH_LOSS_THRESHOLD, LossBasedControl
from relay.transport.bwe.probe_controller import ProbeCluster, ProbeController, ProbeState
from relay.transport.bwe.probe_result import ProbeBitrateEstimator
from relay.transport.bwe.send_history import SendHistory
from relay.transport.bwe.trendline import BandwidthUsage, TrendlineEstimator

STREAM_TIMEOUT = 2.0  # libwebrtc kStreamTimeOut: the delay detector starts over after this
RR_RTT_TIMEOUT = 5.0  # an RTT from a receiver report is preferred for this long
FEEDBACK_LOSS_TIMEOUT = 2.0  # RR loss is used only when no transport-cc came for this long
ARRIVAL_WRAP = (1 << REFERENCE_TIME_BITS) * REFERENCE_TICK_US / 1e6  # ~12.4 days
# Application-limited: the acknowledged bitrate under this share of the estimate. AIMD lets an
# unused estimate grow to 1.5 x the acknowledged rate (a share of 0.67), so it must be above
# that; libwebrtc's AlrDetector starts ALR at 0.65 of its pacing budget.
APP_LIMITED_RATIO = 0.8
PROBE_DROP_THROUGHPUT_FRACTION = 0.85  # libwebrtc goog_cc_network_control.cc
DEFAULT_MIN_BPS = 30_000  # mediasoup's minimum outgoing bitrate
DEFAULT_MAX_BPS = 1_000_000_000  # libwebrtc kDefaultMaxBitrate


def feedback_packets(feedback: TransportCcFeedback) -> list[tuple[int, float | None]]:
    """``(seq, arrival seconds or None)`` for every sequence number a parsed transport-cc
    feedback reports: the input :meth:`SendSideEstimator.on_feedback` takes."""
    return [(p.seq, None if p.arrival_us is None else p.arrival_us / 1e6)
            for p in feedback.packets()]


class SendSideEstimator:
    """Available outgoing bitrate (:attr:`target_bps`) for one transport.

    The transport records every packet it sends in :attr:`history`, feeds transport-cc
    feedback to :meth:`on_feedback`, receiver reports to :meth:`on_receiver_report`, REMB
    to :meth:`on_remb`, and polls :meth:`probe_request` (every feedback, or on a timer)
    with what its consumers want; it sends the clusters that returns.

    Counters: ``feedbacks``, ``packets_reported`` (news from feedback), ``packets_lost``
    (reported lost, late arrivals taken back), ``probe_results`` (taken),
    ``probes_dropped`` (a round's outcome dropped for overuse), ``overuses``,
    ``overuse_deferred`` (feedbacks with overuse while a probe round was out).
    """

    def __init__(self, initial_bps: float, min_bps: float = DEFAULT_MIN_BPS,
                 max_bps: float = DEFAULT_MAX_BPS, history: SendHistory | None = None) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError("need 0 < min_bps <= max_bps")
        initial = min(max(float(initial_bps), min_bps), max_bps)
        self.history = history if history is not None else SendHistory()
        self._min = float(min_bps)
        self._max = float(max_bps)
        self._initial = initial
        self._inter_arrival = InterArrival()
        self._trendline = TrendlineEstimator()
        self._aimd = AimdRateControl(initial, min_bps, max_bps)
        self._acked = AckedBitrateEstimator()
        self._loss = LossBasedControl(initial, min_bps, max_bps)
        self._probe = ProbeController(initial)
        self._probe_result = ProbeBitrateEstimator()
        self._remb: float | None = None
        self._wanted = 0.0
        self._last_arrival: float | None = None  # for undoing the reference time wrap
        self._last_feedback_packets: float | None = None
        self._last_feedback_loss: float | None = None
        self._rr_rtt: float | None = None
        self._rr_rtt_time: float | None = None
        self._feedback_rtt: float | None = None
        self._last_probe_result: float | None = None
        self._latest_send = -math.inf  # the latest send time feedback reported
        self.feedbacks = 0
        self.packets_reported = 0
        self.packets_lost = 0
        self.probe_results = 0
        self.probes_dropped = 0
        self.overuse_deferred = 0
        self.overuses = 0

    # --- results ------------------------------------------------------------------------

    @property
    def target_bps(self) -> int:
        """The available outgoing bitrate."""
        return int(self._loss.target)

    @property
    def available_bitrate(self) -> int:
        return self.target_bps

    @property
    def delay_state(self) -> BandwidthUsage:
        return self._trendline.state

    @property
    def rtt(self) -> float | None:
        return self._rr_rtt if self._rr_rtt is not None else self._feedback_rtt

    # --- inputs -------------------------------------------------------------------------

    def set_max(self, max_bps: float) -> None:
        """Cap the estimate (``transport.set_max_outgoing_bitrate``); at least the minimum."""
        self._max = max(float(max_bps), self._min)
        self._aimd.set_limits(self._min, self._max)
        self._loss.set_limits(self._min, self._max)

    def on_remb(self, bps: float) -> None:
        """A REMB from the receiver caps the estimate; 0 lifts the cap."""
        self._remb = float(bps) if bps > 0 else None
        self._loss.update_receiver_limit(self._remb)

    def on_receiver_report(self, now: float, fraction_lost: float | None,
                           rtt: float | None) -> None:
        """An RTCP receiver report: ``fraction_lost`` as a fraction (the 8-bit field / 256),
        ``rtt`` in seconds (None when it could not be computed)."""
        if rtt is not None and rtt > 0:
            self._rr_rtt = rtt
            self._rr_rtt_time = now
            self._set_rtt(rtt)
        # transport-cc reports loss per packet and sooner; RR loss only stands in for it.
        if fraction_lost is not None and (
                self._last_feedback_loss is None
                or now - self._last_feedback_loss > FEEDBACK_LOSS_TIMEOUT):
            self._loss.on_loss_fraction(fraction_lost, now)
        self._loss.update(now)

    def on_feedback(self, now: float, packets: Iterable[tuple[int, float | None]]) -> None:
        """One transport-cc feedback: ``(seq, arrival seconds or None)`` per reported
        sequence number (see :func:`feedback_packets`)."""
        self.feedbacks += 1
        history = self.history
        received = []
        lost = 0
        expected = 0
        for seq, arrival in packets:
            if arrival is not None:
                arrival = self._unwrap_arrival(arrival)
            sent = history.on_report(seq, arrival)
            if sent is None:
                continue
            if sent.arrival is None:
                lost += 1
                expected += 1
            else:
                if sent.was_lost:
                    lost -= 1  # a late arrival: it was counted lost already
                else:
                    expected += 1
                received.append(sent)
        self.packets_reported += expected
        self.packets_lost += lost
        if expected or lost:
            self._last_feedback_loss = now
            self._loss.on_packets(lost, expected, now)
        if received:
            received.sort(key=lambda p: p.arrival)
            self._on_arrivals(now, received)
        self._loss.update(now)

    def probe_request(self, now: float, wanted_bps: float) -> list[ProbeCluster]:
        """Probe clusters to send now, given that the consumers want ``wanted_bps``;
        usually []. Send each at its rate and record its packets with its id."""
        self._wanted = float(wanted_bps)
        allowed = (self._trendline.state is BandwidthUsage.NORMAL
                   and self._loss.loss_fraction <= HIGH_LOSS_THRESHOLD)
        clusters = self._probe.request(now, wanted_bps, self._loss.target, self._max, allowed,
                                       self._app_limited())
        for cluster in clusters:
            self._probe_result.add_cluster(cluster)
        return clusters

    # --- delay-based part ---------------------------------------------------------------

    def _on_arrivals(self, now: float, received: list) -> None:
        last = self._last_feedback_packets
        if last is None or now - last > STREAM_TIMEOUT:
            self._inter_arrival = InterArrival()
            self._trendline = TrendlineEstimator()
        self._last_feedback_packets = now
        acked = self._acked
        probe_result = self._probe_result
        inter_arrival = self._inter_arrival
        trendline = self._trendline
        was_overusing = trendline.state is BandwidthUsage.OVERUSING
        overused = was_overusing
        max_arrival = received[-1].arrival
        min_rtt = math.inf
        latest_send = self._latest_send
        for p in received:
            acked.update(p.arrival, p.send_time, p.size)
            if p.cluster is not None:
                probe_result.on_packet(p.cluster, p.send_time, p.arrival, p.size)
            if p.send_time > latest_send:
                latest_send = p.send_time
            deltas = inter_arrival.compute(p.send_time, p.arrival, now, p.size)
            if deltas is not None:
                trendline.update(deltas[1], deltas[0], p.arrival)
                if trendline.state is BandwidthUsage.OVERUSING:
                    overused = True
            # Round trip without the time the packet waited for this feedback (pion, and
            # libwebrtc's propagation RTT): the latest arrival waited least.
            min_rtt = min(min_rtt, now - p.send_time - (max_arrival - p.arrival))
        self._latest_send = latest_send
        if min_rtt < math.inf and min_rtt > 0:
            self._feedback_rtt = min_rtt
            if self._rr_rtt_time is None or now - self._rr_rtt_time > RR_RTT_TIMEOUT:
                self._rr_rtt = None
                self._set_rtt(min_rtt)
        if trendline.state is BandwidthUsage.OVERUSING and not was_overusing:
            self.overuses += 1
        self._update_delay_estimate(now, overused)

    def _probe_estimate(self, overused: bool) -> tuple[float | None, bool]:
        """The probe result to take now, and whether it measured the path saturated: the
        round's outcome (the controller holds results until it ends), None while it goes
        on. When the detector saw the queue grow meanwhile, unsaturated results are dropped:
        they did not find spare capacity, however fast they got through a token bucket."""
        controller = self._probe
        taken = None
        saturated = False
        for result in self._probe_result.fetch(self._latest_send):
            bps = controller.on_result(result.cluster_id, result.bps, result.saturated)
            if bps is not None:
                taken, saturated = bps, result.saturated and bps == result.bps
        if taken is None:
            taken = controller.take_held()
        if overused:
            controller.drop_held()
            if taken is not None and not saturated:
                self.probes_dropped += 1
                taken = None
        return taken, saturated

    def _update_delay_estimate(self, now: float, overused: bool = False) -> None:
        """libwebrtc ``DelayBasedBwe::MaybeUpdateEstimate``, then the bounds. One change: a
        probe that saturated the path measured its capacity (95 % of the rate its tail was
        received at), and sets the estimate even while the detector sees overuse: a
        saturating probe builds a queue by definition, and ours, longer than libwebrtc's
        15 ms, build one the detector sees. Unsaturated results are dropped then."""
        aimd = self._aimd
        acked = self._acked.bitrate
        probe, saturated = self._probe_estimate(overused)
        state = self._trendline.state
        updated = False
        if probe is not None and (state is not BandwidthUsage.OVERUSING or saturated):
            if acked is not None:
                # A probe may lower the estimate (it found the path saturated below it), but
                # not under 0.85 x what gets through (libwebrtc kProbeDropThroughputFraction).
                probe = max(probe, min(aimd.bitrate, PROBE_DROP_THROUGHPUT_FRACTION * acked))
            self.probe_results += 1
            self._last_probe_result = probe
            if saturated:
                # The queue the probe built is measured, not news: the detector starts over
                # (it would back off to 0.85 x the acknowledged bitrate while it drains).
                self._inter_arrival = InterArrival()
                self._trendline = TrendlineEstimator()
            aimd.set_estimate(probe, now)
            self._loss.set_send_bitrate(probe)
            updated = True
        elif state is BandwidthUsage.OVERUSING:
            if self._probe.state is ProbeState.WAITING:
                # A probe round is out, and its queue is what the detector sees, mostly: its
                # result (a saturated probe measures the path) comes first, or the round
                # times out (1 s) and the back-off follows.
                self.overuse_deferred += 1
            elif acked is not None:
                if aimd.time_to_reduce_further(now, acked):
                    aimd.update(state, acked, now)
                    updated = True
            elif aimd.initial_time_to_reduce_further(now):
                aimd.set_estimate(aimd.bitrate / 2, now)
                updated = True
        else:
            aimd.update(state, acked, now, self._app_limited())
            updated = True
        if updated:
            self._loss.update_delay_limit(aimd.bitrate)

    def _app_limited(self) -> bool:
        acked = self._acked.bitrate
        return acked is not None and acked < APP_LIMITED_RATIO * self._loss.target

    def _set_rtt(self, rtt: float) -> None:
        self._aimd.set_rtt(rtt)
        self._loss.rtt = rtt

    def _unwrap_arrival(self, arrival: float) -> float:
        """Undo the wrap of the 24-bit reference time (every ~12.4 days)."""
        last = self._last_arrival
        if last is not None:
            arrival += round((last - arrival) / ARRIVAL_WRAP) * ARRIVAL_WRAP
        self._last_arrival = arrival
        return arrival

    # --- trace --------------------------------------------------------------------------

    def trace(self) -> dict[str, Any]:
        """The state for a "bwe" trace event (mediasoup's fields, snake case, and ours)."""
        acked = self._acked.bitrate
        rtt = self.rtt
        return {
            "type": "transport-cc",
            "available_bitrate": self.target_bps,
            "desired_bitrate": int(self._wanted),
            "min_bitrate": int(self._min),
            "max_bitrate": int(self._max),
            "start_bitrate": int(self._initial),
            "delay_based_bitrate": int(self._aimd.bitrate),
            "loss_based_bitrate": int(self._loss.target),
            "acked_bitrate": None if acked is None else int(acked),
            "remb_bitrate": None if self._remb is None else int(self._remb),
            "probe_bitrate": (None if self._last_probe_result is None
                              else int(self._last_probe_result)),
            "probe_state": self._probe.state.value,
            "delay_state": self._trendline.state.value,
            "rate_control_state": self._aimd.state.value,
            "trend": self._trendline.modified_trend,
            "threshold": self._trendline.threshold,
            "loss_fraction": self._loss.loss_fraction,
            "rtt": rtt,
        }
