"""What a probe cluster measured: the rate the path carried during the burst.

libwebrtc's ``ProbeBitrateEstimator``: for each cluster, once feedback reports at least 80 %
of its packets and bytes, the send rate (bytes but the last sent, over the send interval)
and the receive rate (bytes but the first received, over the receive interval) are
compared. A receive rate above 2 × the send rate is nonsense (invalid). A receive rate
below 90 % of the send rate means the path was saturated: its capacity is about the
receive rate, and the result is 95 % of it so we do not sit right at the edge. Otherwise the
path carried what we sent: the result is the lower of the two rates. Intervals beyond 1 s,
and clusters not heard of for 1 s, are dropped.

Sizes are bytes, rates bits per second; send times on our clock, arrivals on the receiver's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

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


class ProbeBitrateEstimator:
    """Per reported arrival of a probe packet: :meth:`on_packet`; per feedback:
    :meth:`fetch`. Counters: ``results``, ``invalid``, ``unknown`` (packets of clusters
    never issued or already dropped)."""

    def __init__(self) -> None:
        self._clusters: OrderedDict[int, _Aggregate] = OrderedDict()
        self._result: float | None = None
        self.last_result: float | None = None
        self.results = 0
        self.invalid = 0
        self.unknown = 0

    def add_cluster(self, cluster: ProbeCluster) -> None:
        """A cluster was issued (its thresholds come from here)."""
        self._clusters[cluster.id] = _Aggregate(cluster)
        while len(self._clusters) > MAX_CLUSTERS:
            self._clusters.popitem(last=False)

    def on_packet(self, cluster_id: int, send_time: float, arrival: float,
                  size: int) -> float | None:
        """A probe packet arrived; returns the cluster's estimate when it has one."""
        self._erase_old(arrival)
        agg = self._clusters.get(cluster_id)
        if agg is None:
            self.unknown += 1
            return None
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
        result = min(send_rate, receive_rate)
        if receive_rate < MIN_RATIO_FOR_UNSATURATED_LINK * send_rate:
            result = TARGET_UTILIZATION_FRACTION * receive_rate  # we found the capacity
        self._result = result
        self.last_result = result
        self.results += 1
        return result

    def fetch(self) -> float | None:
        """The latest estimate since the last fetch, or None."""
        result, self._result = self._result, None
        return result

    def _erase_old(self, now: float) -> None:
        old = [cid for cid, agg in self._clusters.items()
               if agg.packets and agg.last_arrival + MAX_CLUSTER_HISTORY < now]
        for cid in old:
            del self._clusters[cid]
