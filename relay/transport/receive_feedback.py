"""Congestion-control feedback a transport sends to its senders (uplink), so their bandwidth
estimate follows the path instead of collapsing (a browser that negotiated transport-cc and
hears nothing backs its estimate down to its floor).

- transport-cc (draft-holmer-rmcat-transport-wide-cc-extensions-01): when a producer on the
  transport negotiated the transport-wide sequence number extension and the "transport-cc"
  feedback, every inbound RTP packet carrying it (RTX and padding probes included: the
  sender's estimator needs them) is recorded by arrival time, and feedback goes out every
  50–250 ms (`relay.rtp.transport_cc.feedback_interval`, about 5 % of the incoming bitrate).
- REMB (draft-alvestrand-rmcat-remb): when a producer negotiated only "goog-remb" with the
  abs-send-time extension, a receive-side estimate (aiortc's, `relay.rtp.remb`) is sent on
  a drop of 3 % or more and otherwise once a second.
- `set_max_incoming_bitrate(bps)` caps what the feedback allows: the REMB estimate is capped,
  and next to transport-cc (which cannot carry a cap) a REMB with the cap goes out every
  second, as mediasoup does; browsers take the lower of the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from relay.rtp.remb import ABS_SEND_TIME_URI, RembEstimator, build_remb, read_abs_send_time
from relay.rtp.rtcp import RECEIVER_RTCP_SSRC
from relay.rtp.transport_cc import (
    TRANSPORT_CC_URI,
    TransportCcReceiver,
    feedback_interval,
)
from relay.uring import transport_cc_core

CAP_REMB_INTERVAL = 1.0  # seconds between REMBs carrying the cap next to transport-cc


def _negotiated(codecs: list[dict], fb_type: str) -> bool:
    return any(isinstance(fb, dict) and fb.get("type") == fb_type
               for codec in codecs for fb in codec.get("rtcpFeedback") or [])


class ReceiveFeedback:
    """The uplink feedback of one transport (see the module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send_rtcp: Callable[[bytes], bool],
                 clock: Callable[[], float],
                 bytes_received: Callable[[], int] | None = None) -> None:
        self._loop = loop
        self._send_rtcp = send_rtcp
        self._clock = clock
        # The transport's RTP byte count (for the feedback interval): counted there already,
        # not again per packet here. None: the interval stays at its default.
        self._bytes_received = bytes_received
        self.tcc: TransportCcReceiver | None = None
        self.tcc_ext_id = 0
        self.remb: RembEstimator | None = None
        self.abs_ext_id = 0
        # What the transport calls for every inbound RTP packet (buf, n, ssrc, now), or None
        # when no feedback was negotiated: one attribute check per packet then.
        self.record: Callable[[Any, int, int, float], None] | None = None
        self.max_incoming_bitrate: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._bytes_at_feedback = 0  # bytes_received() at the last feedback
        self._last_feedback = 0.0
        self._last_cap_remb = 0.0
        self.feedback_sent = 0
        self.remb_sent = 0
        self.closed = False

    @property
    def enabled(self) -> bool:
        return self.tcc is not None or self.remb is not None

    def add_producer(self, codecs: list[dict], extensions: dict[int, str]) -> None:
        """A producer on the transport: start the feedback it negotiated (transport-cc wins
        over REMB, as in browsers)."""
        by_uri = {uri: ext_id for ext_id, uri in extensions.items()}
        if TRANSPORT_CC_URI in by_uri and _negotiated(codecs, "transport-cc"):
            if self.tcc is None:
                self.tcc_ext_id = by_uri[TRANSPORT_CC_URI]
                self.tcc = TransportCcReceiver(ext_id=self.tcc_ext_id,
                                               deltas=transport_cc_core.small_deltas)
                self.record = self.tcc.on_rtp  # read and record in one call
                self.remb = None  # one estimate per sender: the transport-wide one
        elif self.tcc is None and ABS_SEND_TIME_URI in by_uri and _negotiated(codecs, "goog-remb"):
            if self.remb is None:
                self.remb = RembEstimator(self.max_incoming_bitrate)
                self.abs_ext_id = by_uri[ABS_SEND_TIME_URI]
                self.record = self._on_remb_rtp
        self._arm(0.1)

    def _on_remb_rtp(self, buf: Any, n: int, ssrc: int, now: float) -> None:
        remb = self.remb
        if remb is not None:
            abs_time = read_abs_send_time(buf, n, self.abs_ext_id)
            if abs_time is not None:
                due = remb.on_packet(now, abs_time, n, ssrc)
                if due is not None:
                    self._send_remb(*due)

    def set_max_incoming_bitrate(self, bps: int | None) -> None:
        self.max_incoming_bitrate = bps
        if self.remb is not None:
            due = self.remb.set_max_bitrate(bps, self._clock())
            if due is not None:
                self._send_remb(*due)
        elif self.tcc is not None and bps is not None:
            self._send_cap(self._clock())

    def _send_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        if ssrcs and self._send_rtcp(build_remb(RECEIVER_RTCP_SSRC, bitrate, ssrcs)):
            self.remb_sent += 1

    def _send_cap(self, now: float) -> None:
        tcc = self.tcc
        if tcc is not None and tcc.media_ssrc and self.max_incoming_bitrate:
            self._send_remb(self.max_incoming_bitrate, [tcc.media_ssrc])
            self._last_cap_remb = now

    def _arm(self, delay: float) -> None:
        if self._timer is None and not self.closed and self.enabled:
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._clock()
        elapsed = now - self._last_feedback if self._last_feedback else 0.0
        total = self._bytes_received() if self._bytes_received is not None else 0
        received = total - self._bytes_at_feedback
        bitrate = received * 8 / elapsed if elapsed > 0 and self._bytes_received else None
        self._bytes_at_feedback = total
        self._last_feedback = now
        tcc = self.tcc
        if tcc is not None:
            for packet in tcc.build_feedback(RECEIVER_RTCP_SSRC):
                if self._send_rtcp(packet):
                    self.feedback_sent += 1
            if self.max_incoming_bitrate and now - self._last_cap_remb >= CAP_REMB_INTERVAL:
                self._send_cap(now)
        self._arm(feedback_interval(bitrate))

    def stats(self) -> dict[str, Any]:
        tcc = self.tcc
        return {
            "type": "transport-cc" if tcc is not None else "remb" if self.remb is not None else None,
            "feedbackPacketsSent": self.feedback_sent,
            "rembPacketsSent": self.remb_sent,
            "maxIncomingBitrate": self.max_incoming_bitrate,
            "transportCc": None if tcc is None else {
                "packets": tcc.packets, "duplicates": tcc.duplicates, "refused": tcc.refused,
                "evicted": tcc.evicted},
            "rembEstimate": self.remb.estimate if self.remb is not None else None,
        }

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
