"""What a probe cluster measured: the rate the path carried during the burst.

libwebrtc's ``ProbeBitrateEstimator``: for each cluster, once feedback reports at least 80 %
of its packets and bytes, the send rate (bytes but the last sent, over the send interval)
and the receive rate (bytes but the first received, over the receive interval) are
compared. A receive rate above 2 × the send rate is nonsense (invalid). A receive rate
below 90 % of the send rate means the path was saturated: its capacity is about the
receive rate, and the result is 95 % of it so we do not sit right at the edge. Otherwise the
path carried what we sent: the result is the lower of the two rates, so a result never
exceeds what the receiver acknowledged. Intervals beyond 1 s, and clusters not heard of for
1 s, are dropped.

One addition to libwebrtc: the receive rate is the lower of the whole cluster's and its
second half's (by arrival). A token bucket (`tc tbf`, most home routers' shapers) lets a
burst through at the sender's rate until the bucket is empty and only then holds it to its
rate: the head of a cluster arrives as fast as it was sent whatever the capacity, and only
the tail shows the bottleneck. Over a FIFO bottleneck, or a path with room, the two halves
arrive at the same rate. (libwebrtc's 15-ms clusters fit a shallow bucket whole; ours are
longer, see ``probe_controller``.)

Sizes are bytes, rates bits per second; send times on our clock, arrivals on the receiver's.
Results are computed per feedback (:meth:`fetch`), not per packet.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from relay.transport.bwe.probe_controller import ProbeCluster

# libwebrtc probe_bitrate_estimator.cc
MIN_RECEIVED_PROBES_RATIO = 0.80
MIN_RECEIVED_BYTES_RATIO = 0.80
MAX_VALID_RATIO = 2.0  # receive rate / send rate
MIN_RATIO_FOR_UNSATURATED_LINK = 0.9
TARGET_UTILIZATION_FRACTION = 0.95
MAX_CLUSTER_HISTORY = 1.0  # seconds a cluster is kept after its last arrival
MAX_PROBE_INTERVAL = 1.0  # longest send or receive interval of a valid cluster
MAX_CLUSTERS = 32  # bound on clusters issued and not yet measured
MIN_TAIL_PACKETS = 3  # a second half shorter than this says nothing of its own
MAX_CLUSTER_ARRIVALS = 4096  # arrivals kept per cluster (a cluster sends at most 2000)


@dataclass(frozen=True)
class ProbeResult:
    """What cluster ``cluster_id`` measured: ``bps``, and whether the path was saturated
    (received clearly slower than sent: ``bps`` is then 95 % of its capacity)."""

    cluster_id: int
    bps: float
    saturated: bool


@dataclass
class _Aggregate:
    cluster: ProbeCluster
    first_send: float = math.inf
    last_send: float = -math.inf
    first_arrival: float = math.inf
    last_arrival: float = -math.inf
    size_last_send: int = 0
    size_first_arrival: int = 0
    size_total: int = 0
    packets: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (arrival, size)
    changed: bool = False  # reported packets since the last fetch


class ProbeBitrateEstimator:
    """Per reported arrival of a probe packet: :meth:`on_packet`; per feedback:
    :meth:`fetch`. Counters: ``results``, ``invalid``, ``unknown`` (packets of clusters
    never issued or already dropped)."""

    def __init__(self) -> None:
        self._clusters: OrderedDict[int, _Aggregate] = OrderedDict()
        self.last_result: float | None = None
        self.results = 0
        self.invalid = 0
        self.unknown = 0

    def add_cluster(self, cluster: ProbeCluster) -> None:
        """A cluster was issued (its thresholds come from here)."""
        self._clusters[cluster.id] = _Aggregate(cluster)
        while len(self._clusters) > MAX_CLUSTERS:
            self._clusters.popitem(last=False)

    def on_packet(self, cluster_id: int, send_time: float, arrival: float, size: int) -> None:
        """A probe packet was reported received."""
        self._erase_old(arrival)
        agg = self._clusters.get(cluster_id)
        if agg is None:
            self.unknown += 1
            return
        if send_time < agg.first_send:
            agg.first_send = send_time
        if send_time > agg.last_send:
            agg.last_send = send_time
            agg.size_last_send = size
        if arrival < agg.first_arrival:
            agg.first_arrival = arrival
            agg.size_first_arrival = size
        if arrival > agg.last_arrival:
            agg.last_arrival = arrival
        agg.size_total += size
        agg.packets += 1
        if len(agg.arrivals) < MAX_CLUSTER_ARRIVALS:
            agg.arrivals.append((arrival, size))
        agg.changed = True

    def fetch(self, latest_send: float) -> list[ProbeResult]:
        """The results of clusters reported since the last fetch and complete, that is, a
        packet sent after the cluster's last one was reported (``latest_send``: the latest
        send time reported so far); in arrival order. Call once per feedback: a result from
        part of a cluster could miss its saturated end."""
        done = sorted((agg for agg in self._clusters.values()
                       if agg.changed and agg.last_send < latest_send),
                      key=lambda agg: agg.last_arrival)
        results = []
        for agg in done:
            agg.changed = False
            result = self._estimate(agg)
            if result is not None:
                self.last_result = result.bps
                self.results += 1
                results.append(result)
        return results

    def _estimate(self, agg: _Aggregate) -> ProbeResult | None:
        cluster = agg.cluster
        if (agg.packets < cluster.min_packets * MIN_RECEIVED_PROBES_RATIO
                or agg.size_total < cluster.min_bytes * MIN_RECEIVED_BYTES_RATIO):
            return None
        send_interval = agg.last_send - agg.first_send
        receive_interval = agg.last_arrival - agg.first_arrival
        if not (0 < send_interval <= MAX_PROBE_INTERVAL
                and 0 < receive_interval <= MAX_PROBE_INTERVAL):
            self.invalid += 1
            return None
        # The send interval does not include sending the last packet, nor the receive
        # interval receiving the first: leave those out of the byte counts.
        send_rate = 8 * (agg.size_total - agg.size_last_send) / send_interval
        receive_rate = 8 * (agg.size_total - agg.size_first_arrival) / receive_interval
        if send_rate <= 0 or receive_rate / send_rate > MAX_VALID_RATIO:
            self.invalid += 1
            return None
        tail = _tail_rate(agg.arrivals)
        if tail is not None:
            receive_rate = min(receive_rate, tail)
        if receive_rate < MIN_RATIO_FOR_UNSATURATED_LINK * send_rate:
            # we found the capacity
            return ProbeResult(cluster.id, TARGET_UTILIZATION_FRACTION * receive_rate, True)
        return ProbeResult(cluster.id, min(send_rate, receive_rate), False)

    def _erase_old(self, now: float) -> None:
        old = [cid for cid, agg in self._clusters.items()
               if agg.packets and agg.last_arrival + MAX_CLUSTER_HISTORY < now]
        for cid in old:
            del self._clusters[cid]


def _tail_rate(arrivals: list[tuple[float, int]]) -> float | None:
    """The receive rate of the second half of a cluster's packets by arrival (bytes after
    the middle one over the time from it to the last), None when too few."""
    if len(arrivals) < 2 * MIN_TAIL_PACKETS:
        return None
    ordered = sorted(arrivals)
    middle = len(ordered) // 2
    interval = ordered[-1][0] - ordered[middle][0]
    if interval <= 0:
        return None
    return 8 * sum(size for _, size in ordered[middle + 1:]) / interval
