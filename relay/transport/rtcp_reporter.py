"""A transport's RTCP: what it does with compound RTCP from its remote, and the periodic
reports it sends (control path, written for clarity; parsing by `relay.rtp.rtcp`).

Inbound (`handle_rtcp`), per packet of the compound:
- SR from a producer's sender: remembered for LSR/DLSR and the NTP<->RTP mapping that our
  consumers' SRs reuse; its report blocks are handled like an RR's;
- RR/SR report blocks about a consumer's SSRC: that consumer's loss, jitter, RTT
  (A - LSR - DLSR, RFC 3550 6.4.1) and score; the latest RTT is the transport's (`rtt`), also
  used for its producers (NACK retry spacing, scores);
- NACK for a consumer's SSRC: answered from the retransmission store (RTX or plain resend);
- PLI / FIR for a consumer's SSRC: forwarded to its producer's sender, coalesced;
- XR (RFC 3611): an RRTR from a consumer's remote is answered by each consumer with a DLRR
  block after its next SR; a DLRR answering our RRTR gives the producer stream's RTT
  (A - LRR - DLRR), so a producer has an RTT without a consumer on its transport;
- SDES, BYE, REMB, transport-cc, APP: ignored (counted as `rtcpIgnored`).
Malformed compounds are dropped and counted (`rtcpMalformed`), never raised; a malformed XR
alone is skipped and counted (`xrMalformed`).

Outbound (`RtcpReporter`): every `VIDEO_INTERVAL` (1 s) an SR (+ SDES CNAME) for every video
consumer stream that has sent media (+ an XR DLRR if its remote sent an RRTR) and an RR with
a report block for every video producer stream receiving, followed by an XR RRTR; audio ones
every `AUDIO_INTERVAL` (5 s). Our receiver-side RTCP uses `RECEIVER_RTCP_SSRC`. Fixed
intervals, not RFC 3550's bandwidth-based ones (as libwebrtc and mediasoup do); the first
report goes out after `FIRST_REPORT_DELAY`. Compounds are split to stay under `MAX_COMPOUND_SIZE` bytes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from relay.rtp.receive_stats import ntp_now, rtt_from_dlrr
from relay.rtp.rtcp import (
    RECEIVER_RTCP_SSRC,
    ExtendedReport,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    parse_compound,
)

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer

logger = logging.getLogger(__name__)

VIDEO_INTERVAL = 1.0
AUDIO_INTERVAL = 5.0
FIRST_REPORT_DELAY = VIDEO_INTERVAL
MAX_COMPOUND_SIZE = 1200  # stays under a 1500-byte MTU with SRTCP's trailer and IP/UDP
_MAX_BLOCKS = 31


def _report_block_owner(transport: Any, block: ReportBlock) -> Consumer | None:
    return transport.consumers_by_ssrc.get(block.ssrc)


def handle_rtcp(transport: Any, data: bytes | bytearray | memoryview, now: float) -> None:
    """Act on one (compound) RTCP packet from `transport`'s remote. Never raises."""
    try:
        parsed = parse_compound(data)
    except RtcpParseError:
        transport.dropped["rtcpMalformed"] += 1
        return
    arrival_ntp = None
    for packet in parsed.packets:
        if isinstance(packet, (SenderReport, ReceiverReport)):
            if isinstance(packet, SenderReport):
                entry = transport.ssrc_table.get(packet.ssrc)
                if entry is not None:
                    producer, index = entry
                    producer.on_sender_report(index, packet, now)
            for block in packet.reports:
                consumer = _report_block_owner(transport, block)
                if consumer is None:
                    continue
                if arrival_ntp is None:
                    arrival_ntp = ntp_now()
                rtt = consumer.on_report_block(block, arrival_ntp)
                if rtt is not None:
                    transport.rtt = rtt
                if transport.send_estimation is not None:
                    transport.send_estimation.on_receiver_report(now, block.fraction_lost,
                                                                 transport.rtt)
        elif isinstance(packet, Nack):
            consumer = transport.consumers_by_ssrc.get(packet.media_ssrc)
            if consumer is None:
                transport.dropped["nackUnknownSsrc"] += 1
                continue
            transport.nacks_received += 1
            consumer.on_nack(packet.lost, now)
        elif isinstance(packet, Pli):
            consumer = transport.consumers_by_ssrc.get(packet.media_ssrc)
            if consumer is not None:
                transport.keyframe_requests_received += 1
                consumer.on_key_frame_request(fir=False)
        elif isinstance(packet, Fir):
            for ssrc, _seq_nr in packet.entries:
                consumer = transport.consumers_by_ssrc.get(ssrc)
                if consumer is not None:
                    transport.keyframe_requests_received += 1
                    consumer.on_key_frame_request(fir=True)
        elif isinstance(packet, ExtendedReport):
            _handle_xr(transport, packet, now)
        elif isinstance(packet, TransportFeedback) and transport.send_estimation is not None:
            if not transport.send_estimation.on_transport_feedback(packet.data, now):
                transport.dropped["transportCcMalformed"] += 1
        elif isinstance(packet, Remb) and transport.send_estimation is not None:
            transport.send_estimation.on_remb(packet.bitrate)
        else:
            transport.dropped["rtcpIgnored"] += 1
    if parsed.skipped:
        transport.dropped["rtcpIgnored"] += parsed.skipped
    if parsed.malformed_xr:
        transport.dropped["xrMalformed"] += parsed.malformed_xr


def _handle_xr(transport: Any, xr: ExtendedReport, now: float) -> None:
    """RRTR from a receiver of our consumers: each consumer answers it with a DLRR in its
    next report (the RRTR names no stream). DLRR answering our RRTR: the producer stream's
    RTT, A - LRR - DLRR."""
    if xr.rrtr is not None:
        for consumer in list(transport.consumers.values()):
            consumer.on_rrtr(xr.ssrc, xr.rrtr, now)
    for sub in xr.dlrr:
        if sub.ssrc != RECEIVER_RTCP_SSRC:
            continue  # a DLRR for someone else's RRTR
        rtt = rtt_from_dlrr(sub.lrr, sub.dlrr, ntp_now())
        if rtt is None:
            continue
        entry = transport.ssrc_table.get(xr.ssrc)
        if entry is not None:
            entry[0].on_xr_rtt(entry[1], rtt)
        else:  # the sender reports from an SSRC of none of its streams: same path for all
            for producer in list(transport.producers.values()):
                producer.on_xr_rtt(None, rtt)


class RtcpReporter:
    """Periodic SR/RR of one transport (see the module doc)."""

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._timer: Any = None
        self._last_audio = float("-inf")
        self.reports_sent = 0
        self.closed = False

    def start(self) -> None:
        if self._timer is None and not self.closed:
            self._timer = self._loop.call_later(FIRST_REPORT_DELAY, self._on_timer)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        try:
            self.send_reports()
        except Exception:  # noqa: BLE001 - a bug in reporting must not stop the reports
            logger.exception("RTCP reports failed on transport %s", self._transport.id)
        self._timer = self._loop.call_later(VIDEO_INTERVAL, self._on_timer)

    def send_reports(self, include_audio: bool | None = None) -> int:
        """Build and send the reports due now (all of them when `include_audio`); returns
        the number of compound packets sent."""
        transport = self._transport
        if transport.closed or transport.rtcp_remote is None:
            return 0
        now = time.monotonic()
        if include_audio is None:
            include_audio = now - self._last_audio >= AUDIO_INTERVAL - 0.01
        if include_audio:
            self._last_audio = now
        ntp = ntp_now()
        packets: list[RtcpPacket] = []
        for consumer in list(transport.consumers.values()):
            if consumer.kind == "audio" and not include_audio:
                continue
            sr = consumer.sender_report(ntp, now)
            if sr is None:
                continue
            packets.append(sr)
            if consumer.cname:
                packets.append(SourceDescription.with_cname(consumer.ssrc, consumer.cname))
            dlrr = consumer.dlrr_report(now)
            if dlrr is not None:
                packets.append(dlrr)
        blocks: list[ReportBlock] = []
        for producer in list(transport.producers.values()):
            if producer.kind == "audio" and not include_audio:
                continue
            blocks.extend(producer.report_blocks(now))
        for i in range(0, len(blocks), _MAX_BLOCKS):
            packets.append(ReceiverReport(RECEIVER_RTCP_SSRC, blocks[i : i + _MAX_BLOCKS]))
        if blocks:
            # RRTR (RFC 3611 4.4): we send no SR towards producers, so this is how their
            # senders can give us an RTT (their DLRR answers it; see _handle_xr).
            packets.append(ExtendedReport(RECEIVER_RTCP_SSRC, rrtr=ntp))
        return self._send(packets)

    def _send(self, packets: list[RtcpPacket]) -> int:
        sent = 0
        compound = b""
        for packet in packets:
            data = packet.serialize()
            # An SDES belongs with the SR before it; RR/SR start a new compound when full.
            if compound and len(compound) + len(data) > MAX_COMPOUND_SIZE:
                sent += self._transport.send_rtcp(compound)
                compound = b""
            compound += data
        if compound:
            sent += self._transport.send_rtcp(compound)
        self.reports_sent += sent
        return sent
