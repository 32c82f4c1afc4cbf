"""What every worker transport shares: its producers and consumers, the SSRC tables that route
inbound RTP to a producer stream, the step from a decrypted RTP packet to that stream, RTCP
handed to `relay.transport.rtcp_reporter`, the requests all transports answer, and closing.

A subclass (plain.py, webrtc.py) owns its sockets: it reads packets, checks where they come
from, unprotects SRTP, and calls `_route_rtp` / `_handle_rtcp`; it says where consumers send
(`route()`, `media_send`) and how RTCP goes out (`send_rtcp`).

Producers and consumers are made by the router (`router.produce` / `router.consume`), so this
package sees them only through what it calls: `producer.receive(...)`,
`producer.receive_rtx(...)`, the binding methods `relay.transport.rtp_listener` uses, and
the consumer's RTCP handlers and `update_route()`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import RTP_SEQ_TS_SSRC, rtp_payload_offset
from relay.transport.core_drain import (  # (the drain bounds: webrtc_sockets uses them too)
    MAX_PACKETS_PER_DRAIN,
    MAX_SENDS_PER_DRAIN,
    CoreDrain,
    SsrcTable,
)
from relay.transport.probing import Prober
from relay.transport.receive_feedback import ReceiveFeedback
from relay.transport.rtcp_reporter import RtcpReporter, handle_rtcp
from relay.transport.rtp_listener import route_unknown_ssrc
from relay.transport.send_estimation import SendEstimation
from relay.transport.srtp_session import MAX_TRAILER, SrtpSession
from relay.uring import receive_core
from worker_proto.errors import ArgumentError, InvalidStateError, UnknownMethodError
from worker_proto.methods import TransportEvent, TransportMethod
from worker_proto.validation import optional_int, require_dict

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer
    from relay.worker.router import Router

logger = logging.getLogger(__name__)

RECV_BUFFER_SIZE = 2048  # > any UDP payload we accept on a 1500-byte MTU path, + SRTP room

_unpack_seq_ts_ssrc = RTP_SEQ_TS_SSRC.unpack_from


class Transport:
    """One transport of a router (handler id = its transportId)."""

    kind_name = "transport"  # in error messages: "a plain transport does not handle ..."

    def __init__(self, transport_id: str, router: Router, ctx: WorkerContext,
                 send_estimation: SendEstimation | None = None) -> None:
        self.id = transport_id
        self.router = router
        self._ctx = ctx
        self.closed = False
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        # SSRC → (producer, encoding index) for inbound RTP; consumer SSRC → consumer for RTCP.
        self.ssrc_table: dict[int, tuple[Producer, int]] = SsrcTable()
        self.any_ssrc_producer: Producer | None = None  # a producer whose SSRC is learned
        self.consumers_by_ssrc: dict[int, Consumer] = {}
        # A producer's RTX SSRC → (producer, encoding index): RTX is unwrapped (cold path).
        self.rtx_ssrc_table: dict[int, tuple[Producer, int]] = {}
        self.rtt: float | None = None  # seconds, from RR blocks about our consumers' SRs
        self.nacks_received = 0
        self.dropped: Counter[str] = Counter()
        self.rtp_packets_received = 0
        self.rtp_bytes_received = 0
        self.rtcp_packets_received = 0
        self.rtcp_packets_sent = 0
        self.keyframe_requests_received = 0
        self.srtp_send: SrtpSession | None = None
        self.srtp_recv: SrtpSession | None = None
        self._max_rtp_size = getattr(ctx.ring, "slot_size", 1500) - MAX_TRAILER
        self.rtcp_reporter: RtcpReporter | None = None
        # transport-cc / REMB to the senders (relay.transport.receive_feedback)
        self.feedback = ReceiveFeedback(ctx.loop, self.send_rtcp, time.monotonic,
                                        lambda: self.rtp_bytes_received)
        # send-side estimation toward the remote: numbers what consumers that negotiated
        # transport-wide-cc send, and reads the remote's feedback (WebRTC transports give
        # theirs, set up from the bitrate options). Probe clusters it asks for go out as
        # padding (relay.transport.probing); its updates become "trace" events when enabled.
        self.send_estimation = send_estimation or SendEstimation(clock=time.monotonic)
        self.prober = Prober(self._ctx.loop, self.consumers, self.send_estimation.history,
                             time.monotonic, self._ctx.ring.flush_soon)
        self.send_estimation.on_probe = self.prober.send
        self.send_estimation.on_trace = self._on_bwe_trace
        # The C receive core of a UDP transport's socket (`_start_receive_core`), or None.
        self.receive_core: CoreDrain | None = None

    def _on_bwe_trace(self, info: dict) -> None:
        if not self.closed:
            self._ctx.notify(self.id, TransportEvent.TRACE, {
                "type": "bwe", "timestamp": int(time.time() * 1000), "direction": "out",
                "info": info})

    def _start(self) -> None:
        """The subclass has its sockets: start reporting and take requests."""
        self.rtcp_reporter = RtcpReporter(self, self._ctx.loop)
        self.rtcp_reporter.start()
        self._ctx.handlers[self.id] = self

    # -- requests ---------------------------------------------------------------------------

    def handle_request(self, method: str, data: dict) -> dict | list | None:
        if self.closed:
            raise InvalidStateError(f"transport {self.id} is closed")
        if method == TransportMethod.CLOSE:
            self.close()
            return None
        if method == TransportMethod.DUMP:
            return self.dump()
        if method == TransportMethod.GET_STATS:
            return self.get_stats()
        if method == TransportMethod.CONNECT:
            return self.connect(require_dict(data, "data"))
        if method == TransportMethod.PRODUCE:
            producer = self.router.produce(self, require_dict(data, "data"))
            self.producers[producer.id] = producer
            self.feedback.add_producer(producer.codecs, producer.header_extensions)
            self._sync_receive_core()
            return {"type": "simulcast" if len(producer.streams) > 1 else "simple"}
        if method == TransportMethod.CONSUME:
            consumer = self.router.consume(self, require_dict(data, "data"))
            return {"paused": consumer.paused, "producerPaused": consumer.producer_paused}
        if method == TransportMethod.SET_MAX_OUTGOING_BITRATE:
            data = require_dict(data, "data")
            self.send_estimation.set_max(optional_int(data, "bitrate", 0, 10_000_000_000) or None)
            return None
        if method == TransportMethod.ENABLE_TRACE_EVENT:
            types = require_dict(data, "data").get("types")
            if not isinstance(types, list) or not all(t in ("bwe",) for t in types):
                raise ArgumentError('types must be a list of "bwe"')
            self.send_estimation.trace_enabled = "bwe" in types
            return None
        if method == TransportMethod.SET_MAX_INCOMING_BITRATE:
            data = require_dict(data, "data")
            self.feedback.set_max_incoming_bitrate(
                optional_int(data, "bitrate", 1, 10_000_000_000) or None)
            return None
        return self.handle_other_request(method, data)

    def handle_other_request(self, method: str, data: dict) -> dict | list | None:
        raise UnknownMethodError(f"a {self.kind_name} does not handle {method!r}")

    def connect(self, data: dict) -> dict:
        raise NotImplementedError

    # -- registration of children (called by Producer / Consumer) ---------------------------

    def register_consumer(self, consumer: Consumer) -> None:
        if consumer.ssrc in self.consumers_by_ssrc:
            raise ArgumentError(f"ssrc {consumer.ssrc} is already used by a consumer of this transport")
        self.consumers[consumer.id] = consumer
        self.consumers_by_ssrc[consumer.ssrc] = consumer

    def unregister_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        if self.consumers_by_ssrc.get(consumer.ssrc) is consumer:
            del self.consumers_by_ssrc[consumer.ssrc]

    def unregister_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        for ssrc in [s for s, (p, _) in self.ssrc_table.items() if p is producer]:
            del self.ssrc_table[ssrc]
        for ssrc in [s for s, (p, _) in self.rtx_ssrc_table.items() if p is producer]:
            del self.rtx_ssrc_table[ssrc]
        if self.any_ssrc_producer is producer:
            self.any_ssrc_producer = None

    def route(self) -> tuple[int, Any, SrtpSession | None]:
        """Where a consumer of this transport sends: (fd, remote or None, SRTP session)."""
        raise NotImplementedError

    def _update_routes(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.update_route()
        self._sync_receive_core()

    @property
    def max_rtp_size(self) -> int:
        """The largest decrypted RTP packet taken (it must fit a send slot re-protected)."""
        return self._max_rtp_size

    # -- the C receive core (plain and pipe transports) ----------------------------------------

    def _start_receive_core(self, fd: int) -> None:
        """Drain socket `fd` through the C receive core when it is on (`CoreDrain`); the
        subclass's readable callback then calls `self.receive_core.drain`."""
        if receive_core.ENABLED and getattr(self._ctx.ring, "core", None) is not None:
            self.receive_core = CoreDrain(self, fd)
            self.ssrc_table.on_change = self._sync_receive_core  # type: ignore[attr-defined]
            self._sync_receive_core()

    def _sync_receive_core(self) -> None:
        if self.receive_core is not None:
            self.receive_core.sync()

    def _drain_udp(self, sock: Any) -> None:
        """A UDP socket's readable callback (plain and pipe transports): every datagram to
        the subclass's `_on_datagram(n, source, now)` (the datagram in `_rbuf[:n]`), through
        the C receive core when there is one (it takes the common RTP packet itself and hands
        back the rest, in order), else one `recvfrom_into` each; one `flush_soon` at the end
        (one submit per loop turn for every socket drained in it)."""
        if self.receive_core is not None:
            self.receive_core.drain(self._on_datagram)
            return
        recv = sock.recvfrom_into
        buf = self._rbuf
        now = time.monotonic()
        sends = 0
        try:
            for _ in range(MAX_PACKETS_PER_DRAIN):
                n, addr = recv(buf)
                sends += self._on_datagram(n, addr, now)
                if sends >= MAX_SENDS_PER_DRAIN:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: count, go on
            self.dropped[f"recv {exc.errno}"] += 1
        except Exception:  # a bug must cost one packet, not the transport
            logger.exception("RTP handling failed on %s %s", self.kind_name, self.id)
            self.dropped["internalError"] += 1
        self._ctx.ring.flush_soon()

    def _on_datagram(self, n: int, addr: Any, now: float) -> int:
        """One datagram in `_rbuf[:n]` from `addr`; returns the sends queued (UDP
        transports that drain with `_drain_udp`)."""
        raise NotImplementedError

    # -- inbound ------------------------------------------------------------------------------

    def _rtp_fits(self, buf: bytearray, n: int) -> bool:
        """A decrypted RTP packet fits a send slot once re-protected and its header parses;
        else it is counted and dropped."""
        if n > self._max_rtp_size:
            self.dropped["tooLarge"] += 1
            return False
        if rtp_payload_offset(buf, n) < 0:
            self.dropped["malformed"] += 1
            return False
        return True

    def _route_rtp(self, buf: bytearray, view: memoryview, n: int, now: float) -> int:
        """A decrypted, checked RTP packet in `buf[:n]` goes to its producer stream (by SSRC;
        an RTX SSRC is unwrapped; an unknown one is bound by MID/RID or to the producer with
        no signalled SSRC). Returns the sends queued."""
        self.rtp_packets_received += 1
        self.rtp_bytes_received += n
        seq, ts, ssrc = _unpack_seq_ts_ssrc(buf, 2)
        record = self.feedback.record
        if record is not None:
            record(buf, n, ssrc, now)  # probes too: the sender's estimator needs them
        try:
            entry = self.ssrc_table.get(ssrc)
            if entry is None:
                rtx = self.rtx_ssrc_table.get(ssrc)
                if rtx is not None:  # a retransmission from the sender (RFC 4588)
                    return rtx[0].receive_rtx(view, n, rtx[1], now)
                bound = route_unknown_ssrc(self, buf, n, ssrc)
                if bound is None:
                    return 0
                producer, index, is_rtx = bound
                if is_rtx:
                    return producer.receive_rtx(view, n, index, now)
            else:
                producer, index = entry
            return producer.receive(view, n, index, ssrc, seq, ts, now)
        except (ValueError, RuntimeError) as exc:  # the ring refused a send: count it
            self.dropped[f"send {type(exc).__name__}"] += 1
            return 0

    def _handle_rtcp(self, packet: memoryview) -> None:
        """A decrypted RTCP compound; a bug in its handling costs the packet, not the path."""
        try:
            self.rtcp_packets_received += 1
            handle_rtcp(self, packet, time.monotonic())
        except Exception:
            logger.exception("RTCP handling failed on transport %s", self.id)
            self.dropped["rtcpError"] += 1

    # -- outbound RTCP ------------------------------------------------------------------------

    def send_rtcp(self, packet: bytes) -> bool:
        raise NotImplementedError

    def _send_rtcp_by_ring(self, fd: int, remote: tuple[str, int] | None, packet: bytes) -> bool:
        """RTCP out of a UDP socket through the send ring, SRTCP-protected when the transport
        has SRTP (plain and pipe transports); refusals are counted, never raised."""
        if self.closed or remote is None:
            self.dropped["rtcpNoRemote"] += 1
            return False
        data: Any = packet
        if self.srtp_send is not None:
            data = self.srtp_send.protect_rtcp(packet, len(packet))
            if data is None:
                self.dropped["srtcpProtect"] += 1
                return False
        ring = self._ctx.ring
        try:
            sent = ring.send(fd, data, remote)
            ring.flush_soon()
        except (ValueError, RuntimeError) as exc:  # ring closed or refused: count, don't raise
            self.dropped[f"rtcp send {type(exc).__name__}"] += 1
            return False
        if sent:
            self.rtcp_packets_sent += 1
        else:
            self.dropped["rtcpRingFull"] += 1
        return sent

    # -- description --------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            **self.description(),
            "producerIds": list(self.producers),
            "consumerIds": list(self.consumers),
            "mapSsrcProducerId": {str(s): p.id for s, (p, _) in self.ssrc_table.items()},
            "mapConsumerSsrcConsumerId": {str(s): c.id for s, c in self.consumers_by_ssrc.items()},
        }

    def description(self) -> dict:
        raise NotImplementedError

    def _common_stats(self) -> dict[str, Any]:
        """The getStats fields every transport has; the subclass adds its type and tuples."""
        stats: dict[str, Any] = {
            "transportId": self.id,
            "timestamp": int(time.time() * 1000),
            "rtpPacketsReceived": self.rtp_packets_received,
            "bytesReceived": self.rtp_bytes_received,
            "rtpPacketsSent": sum(c.packets_sent for c in self.consumers.values()),
            "bytesSent": sum(c.bytes_sent for c in self.consumers.values()),
            "rtcpPacketsReceived": self.rtcp_packets_received,
            "rtcpPacketsSent": self.rtcp_packets_sent,
            "keyFrameRequestsReceived": self.keyframe_requests_received,
            "nackPacketsReceived": self.nacks_received,
            "rtcpReportsSent": self.rtcp_reporter.reports_sent if self.rtcp_reporter else 0,
            "roundTripTime": self.rtt,
            "dropped": dict(self.dropped),
            "receiveFeedback": self.feedback.stats(),
            "availableOutgoingBitrate": self.send_estimation.available_bitrate,
            "sendEstimation": self.send_estimation.stats(),
            "probes": {
                "clustersSent": self.prober.clusters_sent,
                "packetsSent": self.prober.packets_sent,
                "noCarrier": self.prober.no_carrier},
        }
        if self.receive_core is not None:
            stats["receiveCore"] = self.receive_core.stats()
        return stats

    def _srtp_stats(self, stats: dict[str, Any]) -> list[dict]:
        if self.srtp_send is not None:
            stats["srtpSend"] = self.srtp_send.stats()
        if self.srtp_recv is not None:
            stats["srtpRecv"] = self.srtp_recv.stats()
        return [stats]

    def get_stats(self) -> list[dict]:
        raise NotImplementedError

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close consumers first (silently: the controller closes its proxies with the
        transport), then producers (their consumers elsewhere get "producerclose"), then the
        subclass's sockets and timers."""
        if self.closed:
            return
        self.closed = True
        if self.rtcp_reporter is not None:
            self.rtcp_reporter.close()
        self.feedback.close()
        self.prober.close()
        for consumer in list(self.consumers.values()):
            consumer.close(notify=None)
        for producer in list(self.producers.values()):
            producer.close()
        self._close_io()
        if self.receive_core is not None:
            self.receive_core.close()
        self._ctx.handlers.pop(self.id, None)
        self.router.remove_transport(self)

    def _close_io(self) -> None:
        raise NotImplementedError
