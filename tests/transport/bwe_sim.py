"""A simulated bottleneck for the send-side estimator tests (simulated time, no sockets).

Forward path: a sender paces 1200-byte packets at the estimator's target (capped by what it
wants to send), and sends the probe clusters the estimator asks for at their rates; each
packet gets a transport-wide sequence number (starting just below the 16-bit wrap) and is
recorded in the estimator's send history. Random loss drops some packets; the rest wait in
a FIFO queue served at the bottleneck capacity (a function of time; packets that would wait
longer than ``max_queue_delay`` are tail-dropped), then travel ``delay`` seconds. With
``burst`` set the queue is a token bucket instead, as `tc tbf` and many home routers are: a
packet leaves as soon as the bucket (``burst`` bytes, filled at the capacity) holds its
size, so a short burst passes at the sender's rate and only a longer one meets the capacity.

Receiver: the real ``TransportCcReceiver`` records arrivals (on a clock offset from the
sender's), builds feedback every ``feedback_interval``; the packets travel ``delay`` back and
are parsed with the real ``parse_feedback`` before the estimator sees them. Once a second
the receiver also sends a receiver report (loss fraction, RTT).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from relay.rtp.transport_cc import TransportCcReceiver, parse_feedback
from relay.transport.bwe import ProbeCluster, SendSideEstimator, feedback_packets

PACKET_SIZE = 1200
MIN_PROBE_PACKET_SIZE = 200  # RTP padding-only packets carry at most 255 bytes of padding
PROCESS_INTERVAL = 0.025  # goog_cc's process interval: probe_request is polled this often
RECEIVER_CLOCK_OFFSET = 1234.5  # the receiver's clock is not ours


@dataclass
class Link:
    capacity: Callable[[float], float]  # bps at a given time
    delay: float = 0.025  # one way, each direction
    loss: float = 0.0  # random loss before the queue
    max_queue_delay: float = 0.5
    burst: int | None = None  # bytes: a token bucket of this depth instead of a FIFO server


@dataclass
class Trace:
    times: list[float] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    media_rates: list[float] = field(default_factory=list)
    capacities: list[float] = field(default_factory=list)
    sent_bytes: int = 0
    probe_packets: int = 0
    clusters: int = 0
    dropped_queue: int = 0
    dropped_random: int = 0
    feedback_packets: int = 0

    def settle_time(self, start: float = 0.0, tolerance: float = 0.2) -> float | None:
        """Earliest time from ``start`` on after which every sample stays within
        ``tolerance`` of the capacity; None when the last sample is outside."""
        settled = None
        for t, target, cap in zip(self.times, self.targets, self.capacities, strict=True):
            if t < start:
                continue
            if abs(target - cap) > tolerance * cap:
                settled = None
            elif settled is None:
                settled = t
        return settled

    def between(self, t0: float, t1: float) -> list[int]:
        return [v for t, v in zip(self.times, self.targets, strict=True) if t0 <= t <= t1]


class Simulation:
    def __init__(self, estimator: SendSideEstimator, link: Link, demand_bps: float,
                 *, layers: list[float] | None = None, seed: int = 1,
                 feedback_interval: float = 0.1, probe_packet_size: int | None = None,
                 receiver_clock_offset: float = RECEIVER_CLOCK_OFFSET) -> None:
        self.est = estimator
        self.link = link
        self.demand = demand_bps  # what the consumers want (probe_request's wanted_bps)
        # Without layers the sender sends min(target, demand); with layers, like an SFU
        # forwarding simulcast, the highest layer that fits the target (the lowest if none).
        self.layers = sorted(layers) if layers else None
        self.rng = random.Random(seed)
        self.feedback_interval = feedback_interval
        # None: sized from the cluster as libwebrtc's prober does; else a fixed size (relay's
        # prober sends padding-only packets of at most 255 bytes of padding)
        self.probe_packet_size = probe_packet_size
        self.receiver = TransportCcReceiver()
        self.receiver_clock_offset = receiver_clock_offset
        self.trace = Trace()
        self.now = 0.0
        self._seq = 0xFFFF - 200  # cross the 16-bit wrap early
        self._queue_free = 0.0
        self._tokens = float(link.burst or 0)  # bytes in the bucket at _queue_free
        self._arrivals: deque[tuple[float, int]] = deque()  # (arrival, seq), in order
        self._returns: deque[tuple[float, bytes]] = deque()  # feedback on its way back
        self._rr_returns: deque[tuple[float, float, float]] = deque()
        self._clusters: deque[ProbeCluster] = deque()
        self._cluster: ProbeCluster | None = None
        self._cluster_packets = 0
        self._cluster_bytes = 0
        self._next_send = 0.0
        self._next_process = 0.0
        self._next_feedback = feedback_interval
        self._next_rr = 1.0
        self._rr_sent = 0
        self._rr_received = 0

    def run(self, until: float) -> Trace:
        while True:
            t = min(self._next_send, self._next_process, self._next_feedback, self._next_rr,
                    self._returns[0][0] if self._returns else until + 1,
                    self._rr_returns[0][0] if self._rr_returns else until + 1)
            if t > until:
                return self.trace
            self.now = t
            if self._returns and self._returns[0][0] <= t:
                _, data = self._returns.popleft()
                self.est.on_feedback(t, feedback_packets(parse_feedback(data)))
            elif self._rr_returns and self._rr_returns[0][0] <= t:
                _, fraction, rtt = self._rr_returns.popleft()
                self.est.on_receiver_report(t, fraction, rtt)
            elif self._next_feedback <= t:
                self._build_feedback(t)
            elif self._next_rr <= t:
                self._send_rr(t)
            elif self._next_process <= t:
                self._process(t)
            else:
                self._send(t)

    # --- sender -------------------------------------------------------------------------

    def _process(self, t: float) -> None:
        self._next_process = t + PROCESS_INTERVAL
        clusters = self.est.probe_request(t, self.demand)
        self.trace.clusters += len(clusters)
        self._clusters.extend(clusters)
        if clusters and self._cluster is None:
            self._next_send = min(self._next_send, t)
        self.trace.times.append(t)
        self.trace.targets.append(self.est.target_bps)
        self.trace.media_rates.append(self.media_rate())
        self.trace.capacities.append(self.link.capacity(t))

    def _send(self, t: float) -> None:
        if self._cluster is None and self._clusters:
            self._cluster = self._clusters.popleft()
            self._cluster_packets = self._cluster_bytes = 0
        cluster = self._cluster
        if cluster is not None:
            # Packets of about min_bytes / min_packets keep the burst as short as asked
            # (libwebrtc's prober sizes its padding the same way).
            size = self.probe_packet_size or min(
                max(-(-cluster.min_bytes // cluster.min_packets), MIN_PROBE_PACKET_SIZE),
                PACKET_SIZE)
            rate = cluster.bitrate_bps
            self._transmit(t, size, cluster.id)
            self._cluster_packets += 1
            self._cluster_bytes += size
            self.trace.probe_packets += 1
            if (self._cluster_packets >= cluster.min_packets
                    and self._cluster_bytes >= cluster.min_bytes):
                self._cluster = None
        else:
            size = PACKET_SIZE
            rate = self.media_rate()
            self._transmit(t, size, None)
        self._next_send = t + size * 8 / rate

    def media_rate(self) -> float:
        target = self.est.target_bps
        if self.layers is None:
            return min(target, self.demand)
        fitting = [layer for layer in self.layers if layer <= target]
        return fitting[-1] if fitting else self.layers[0]

    def _transmit(self, t: float, size: int, cluster: int | None) -> None:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        self.est.history.on_sent(seq, t, size, cluster)
        self.trace.sent_bytes += size
        self._rr_sent += 1
        if self.link.loss and self.rng.random() < self.link.loss:
            self.trace.dropped_random += 1
            return
        start = max(t, self._queue_free)
        rate = self.link.capacity(start) / 8  # bytes per second
        if self.link.burst is None:
            departure = start + size / rate
            tokens = 0.0
        else:
            tokens = min(float(self.link.burst),
                         self._tokens + (start - self._queue_free) * rate)
            departure = start + max(0.0, size - tokens) / rate
            tokens = max(0.0, tokens - size)
        if departure - t > self.link.max_queue_delay:
            self.trace.dropped_queue += 1
            return
        self._queue_free = departure
        self._tokens = tokens
        self._arrivals.append((departure + self.link.delay, seq))

    # --- receiver -----------------------------------------------------------------------

    def _deliver_arrivals(self, t: float) -> None:
        while self._arrivals and self._arrivals[0][0] <= t:
            arrival, seq = self._arrivals.popleft()
            self.receiver.on_packet(seq, arrival + self.receiver_clock_offset)
            self._rr_received += 1

    def _build_feedback(self, t: float) -> None:
        self._next_feedback = t + self.feedback_interval
        self._deliver_arrivals(t)
        for data in self.receiver.build_feedback(sender_ssrc=0x1234):
            self.trace.feedback_packets += 1
            self._returns.append((t + self.link.delay, data))

    def _send_rr(self, t: float) -> None:
        self._next_rr = t + 1.0
        self._deliver_arrivals(t)
        sent, got = self._rr_sent, self._rr_received
        in_flight = len(self._arrivals)
        self._rr_sent = in_flight  # what is still on its way counts toward the next report
        self._rr_received = 0
        fraction = max(0, sent - got - in_flight) / sent if sent else 0.0
        # An RR's RTT (LSR/DLSR) includes the forward queue the sender report waited in.
        rtt = 2 * self.link.delay + max(0.0, self._queue_free - t)
        self._rr_returns.append((t + self.link.delay, int(fraction * 256) / 256, rtt))
