"""Inter-group delay variation: packets grouped by send time, deltas between groups.

draft-ietf-rmcat-gcc-02 §5.2 and libwebrtc's ``InterArrivalDelta``: packets sent within
5 ms of the first packet of a group form one group (a video frame, a pacer burst); for each
pair of consecutive groups the sender compares how far apart they were sent with how far
apart they arrived (last packet of each). The difference is the change in queueing delay
the trendline filter accumulates.

A packet that arrives within 5 ms of the previous one and earlier than its send spacing
predicts (a burst released at once by a queue ahead of us) joins the current group, as
long as the group spans under 100 ms of arrivals: such bursts say nothing about our queue.
Times are seconds: ``send_time`` on the sender's clock, ``arrival`` on the receiver's.
"""

from __future__ import annotations

from dataclasses import dataclass

SEND_TIME_GROUP_LENGTH = 0.005  # libwebrtc kSendTimeGroupLength (delay_based_bwe.cc)
BURST_DELTA_THRESHOLD = 0.005  # kBurstDeltaThreshold
MAX_BURST_DURATION = 0.100  # kMaxBurstDuration
ARRIVAL_TIME_OFFSET_THRESHOLD = 3.0  # kArrivalTimeOffsetThreshold: a receiver clock jump
REORDERED_RESET_THRESHOLD = 3  # kReorderedResetThreshold: groups arriving out of order


@dataclass
class _Group:
    first_send: float
    send_time: float  # the latest send time in the group
    first_arrival: float
    complete_time: float  # arrival of the group's latest packet
    system_time: float  # our clock when that packet's feedback was processed
    size: int = 0


class InterArrival:
    """Feeds packets in arrival order; :meth:`compute` returns the deltas between the two
    previous groups when a packet starts a new group."""

    def __init__(self) -> None:
        self._current: _Group | None = None
        self._prev: _Group | None = None
        self._reordered = 0
        self.resets = 0

    def reset(self) -> None:
        self._current = None
        self._prev = None
        self._reordered = 0
        self.resets += 1

    def compute(
        self, send_time: float, arrival: float, system_time: float, size: int
    ) -> tuple[float, float, int] | None:
        """Add a packet; returns ``(send_delta, arrival_delta, size_delta)`` in seconds and
        bytes between the last two complete groups, or None."""
        cur = self._current
        deltas = None
        if cur is None:
            cur = self._current = _Group(send_time, send_time, arrival, arrival, system_time)
        elif send_time < cur.first_send:
            return None  # reordered packet: sent before the current group started
        elif self._starts_new_group(cur, send_time, arrival):
            prev = self._prev
            if prev is not None:
                send_delta = cur.send_time - prev.send_time
                arrival_delta = cur.complete_time - prev.complete_time
                system_delta = cur.system_time - prev.system_time
                if arrival_delta - system_delta >= ARRIVAL_TIME_OFFSET_THRESHOLD:
                    self.reset()  # the receiver's clock jumped
                    return None
                if arrival_delta < 0:
                    # The groups were reordered after arrival stamping; libwebrtc drops
                    # the packet and keeps the current group.
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET_THRESHOLD:
                        self.reset()
                    return None
                self._reordered = 0
                deltas = (send_delta, arrival_delta, cur.size - prev.size)
            self._prev = cur
            cur = self._current = _Group(send_time, send_time, arrival, arrival, system_time)
        else:
            cur.send_time = max(cur.send_time, send_time)
        cur.size += size
        cur.complete_time = arrival
        cur.system_time = system_time
        return deltas

    @staticmethod
    def _starts_new_group(cur: _Group, send_time: float, arrival: float) -> bool:
        arrival_delta = arrival - cur.complete_time
        send_delta = send_time - cur.send_time
        if send_delta == 0:
            return False  # same send time: same burst
        if (arrival_delta - send_delta < 0 and arrival_delta <= BURST_DELTA_THRESHOLD
                and arrival - cur.first_arrival < MAX_BURST_DURATION):
            return False  # a burst released by a queue ahead of us
        return send_time - cur.first_send > SEND_TIME_GROUP_LENGTH
