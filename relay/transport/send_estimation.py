"""Send-side bandwidth estimation toward one transport's remote (the subscriber's downlink).

Every RTP packet a consumer sends on the transport gets the transport's next transport-wide
sequence number in its transport-wide-cc header extension (written by the fan-out,
the C fan-out core or `relay.worker.fanout`; `relay.transport.core_send_history`), and the send is recorded in a bounded
history. The remote's transport-cc feedback, its RTCP receiver reports (loss, RTT) and any
REMB it sends feed a GCC estimator (`relay.transport.bwe`); the result is the transport's
`available_outgoing_bitrate`, handed to `on_bitrate` (the worker distributes it among the
transport's video consumers) and reported as a "bwe" trace event when enabled.

Only packets that already carry the extension get a number: a producer that did not
negotiate it (plain RTP) sends packets without one, and the fan-out does not grow packets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from relay.rtp.transport_cc import TransportCcParseError, parse_feedback
from relay.transport.bwe.estimator import SendSideEstimator, feedback_packets
from relay.transport.core_send_history import CoreSendHistory

DEFAULT_INITIAL_BPS = 600_000  # mediasoup's initialAvailableOutgoingBitrate
DEFAULT_MIN_BPS = 30_000
DEFAULT_MAX_BPS = 1_000_000_000
BITRATE_REPORT_INTERVAL = 0.5  # seconds between on_bitrate calls (and at most one per feedback)


class SendEstimation:
    """Transport-wide sequence numbers, the send history and the estimator of a transport."""

    __slots__ = (
        "estimator", "history", "on_bitrate", "on_trace", "trace_enabled", "_clock",
        "_last_report", "_reported_bps", "feedback_received", "feedback_malformed",
        "remb_received", "wanted_bps", "on_probe",
    )

    def __init__(self, initial_bps: int = DEFAULT_INITIAL_BPS, min_bps: int = DEFAULT_MIN_BPS,
                 max_bps: int = DEFAULT_MAX_BPS,
                 clock: Callable[[], float] | None = None) -> None:
        self.estimator = SendSideEstimator(initial_bps, min_bps, max_bps, CoreSendHistory())
        # The fan-out records every numbered packet here (the C core in its arrays, which
        # the history copies when read; Python through `record_next`).
        self.history = self.estimator.history
        self.on_bitrate: Callable[[int], None] | None = None
        self.on_trace: Callable[[dict], None] | None = None
        # what the consumers would send at their preferred layers (the bitrate allocation
        # sets it), and where probe clusters go (relay.transport.probing)
        self.wanted_bps = 0
        self.on_probe: Callable[[Any], None] | None = None
        self.trace_enabled = False
        self._clock = clock or asyncio.get_event_loop().time
        self._last_report = 0.0
        self._reported_bps = 0
        self.feedback_received = 0
        self.feedback_malformed = 0
        self.remb_received = 0

    # -- feedback (control path) -----------------------------------------------------------

    def on_transport_feedback(self, data: bytes, now: float) -> bool:
        """One transport-cc feedback packet from the remote; False if it was malformed."""
        try:
            feedback = parse_feedback(data)
        except TransportCcParseError:
            self.feedback_malformed += 1
            return False
        self.feedback_received += 1
        self.estimator.on_feedback(now, feedback_packets(feedback))
        self._report(now)
        if self.on_probe is not None and self.wanted_bps:
            for cluster in self.estimator.probe_request(now, self.wanted_bps):
                self.on_probe(cluster)
        return True

    def on_receiver_report(self, now: float, fraction_lost: int, rtt: float | None) -> None:
        self.estimator.on_receiver_report(now, fraction_lost / 256, rtt)
        self._report(now)

    def on_remb(self, bps: int) -> None:
        self.remb_received += 1
        self.estimator.on_remb(bps)
        self._report(self._clock())

    def set_max(self, bps: int | None) -> None:
        self.estimator.set_max(bps or DEFAULT_MAX_BPS)
        self._report(self._clock(), force=True)

    @property
    def available_bitrate(self) -> int:
        return int(self.estimator.available_bitrate)

    def _report(self, now: float, force: bool = False) -> None:
        bps = self.available_bitrate
        if self.trace_enabled and self.on_trace is not None:
            self.on_trace(self.estimator.trace())
        if not force and now - self._last_report < BITRATE_REPORT_INTERVAL \
                and bps >= self._reported_bps * 0.9:
            return  # drops of 10 % or more are reported at once
        self._last_report = now
        self._reported_bps = bps
        if self.on_bitrate is not None:
            self.on_bitrate(bps)

    def stats(self) -> dict[str, Any]:
        return {
            "availableOutgoingBitrate": self.available_bitrate,
            "transportWideSequenceNumbersSent": self.history.sent,
            "feedbackReceived": self.feedback_received,
            "feedbackMalformed": self.feedback_malformed,
            "rembReceived": self.remb_received,
        }
