"""Worker-side plain RTP transport: UDP sockets, comedia or explicit connect, rtcp-mux or a
separate RTCP port, optional SRTP with SDES-style keys.

Inbound (hot): the socket is non-blocking and registered with `loop.add_reader`; each readable
event drains it with `recvfrom_into` on one preallocated buffer until EAGAIN (or a budget, so a
flood can't starve the loop or overfill the send ring), hands every valid RTP packet to its
producer (which fans it out into the send ring) and ends with ONE `ring.flush()`.
Per packet: RTP/RTCP demux (RFC 5761) → source check → SRTP unprotect in place → header
validation → producer by SSRC (an unknown SSRC is bound by MID/RID header extensions or to
the producer without a signalled SSRC: `relay.worker.stream_binding`). Anything else is
dropped and counted by reason.

Like mediasoup, packets are only taken from the remote tuple once it is known (connect() or,
with comedia, the first valid RTP packet); without one, nothing is received or sent.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import (
    RTP_SEQ_TS_SSRC,
    build_pli,
    is_rtcp,
    iter_rtcp,
    rtp_payload_offset,
)
from relay.rtp.rtcp import RECEIVER_RTCP_SSRC
from relay.rtp.rtp_parameters import (
    optional_bool,
    optional_int,
    require_dict,
    require_str,
)
from relay.transport.srtp_session import (
    CRYPTO_SUITES,
    DEFAULT_CRYPTO_SUITE,
    MAX_TRAILER,
    SrtpError,
    SrtpSession,
    buffer_pointer,
    decode_key,
    encode_key,
    generate_key,
)
from relay.worker.rtcp_reporter import RtcpReporter, handle_rtcp
from relay.worker.stream_binding import route_unknown_ssrc
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)
from worker_proto.methods import TransportEvent, TransportMethod

if TYPE_CHECKING:
    from relay.worker.consumer import Consumer
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer
    from relay.worker.router import Router

logger = logging.getLogger(__name__)

RECV_BUFFER_SIZE = 2048  # > any UDP payload we accept on a 1500-byte MTU path, + SRTP room
MAX_PACKETS_PER_DRAIN = 256
# Sends queued in the ring by one drain before it flushes and yields (the ring has 4096 slots
# by default; half leaves room for other transports' batches and completions in flight).
MAX_SENDS_PER_DRAIN = 2048

_unpack_seq_ts_ssrc = RTP_SEQ_TS_SSRC.unpack_from


class PlainTransport:
    """One plain RTP transport of a router (handler id = its transportId)."""

    def __init__(self, transport_id: str, router: Router, data: dict, ctx: WorkerContext) -> None:
        listen = data.get("listenIp")
        announced_ip = None
        if isinstance(listen, dict):  # mediasoup's {ip, announcedIp} form
            announced_ip = listen.get("announcedIp")
            if announced_ip is not None and not isinstance(announced_ip, str):
                raise ArgumentError("listenIp.announcedIp must be a string")
            listen_ip = require_str(listen, "ip", name="listenIp.ip")
        else:
            listen_ip = require_str(data, "listenIp")
        port = optional_int(data, "port", 1, 65535)
        self.rtcp_mux = optional_bool(data, "rtcpMux", True)
        self.comedia = optional_bool(data, "comedia", False)
        enable_srtp = optional_bool(data, "enableSrtp", False)
        suite = data.get("srtpCryptoSuite")
        if suite is None:
            suite = DEFAULT_CRYPTO_SUITE
        if enable_srtp and suite not in CRYPTO_SUITES:
            raise UnsupportedError(
                f"unsupported srtpCryptoSuite {suite!r} (supported: {', '.join(CRYPTO_SUITES)})"
            )

        self.id = transport_id
        self.router = router
        self._ctx = ctx
        self.closed = False
        self.local_ip = listen_ip
        self.announced_ip = announced_ip
        self.remote: tuple[str, int] | None = None
        self.rtcp_remote: tuple[str, int] | None = None
        # The remotes in the exact form recvfrom() returns (IPv6 gives 4-tuples), so the
        # per-packet source check is one tuple comparison.
        self._remote_match: tuple | None = None
        self._rtcp_remote_match: tuple | None = None
        self._ipv6 = ":" in listen_ip
        self.connected = False  # connect() called (comedia: the remote comes from packets)
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        # SSRC → (producer, encoding index) for inbound RTP; consumer SSRC → consumer for RTCP.
        self.ssrc_table: dict[int, tuple[Producer, int]] = {}
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

        self.srtp_suite: str | None = suite if enable_srtp else None
        self.srtp_local_key: bytes | None = generate_key(suite) if enable_srtp else None
        self.srtp_send: SrtpSession | None = (
            SrtpSession(suite, self.srtp_local_key, outbound=True) if enable_srtp else None
        )
        self.srtp_recv: SrtpSession | None = None

        self._rbuf = bytearray(RECV_BUFFER_SIZE)
        self._rview = memoryview(self._rbuf)
        self._rptr = buffer_pointer(self._rbuf)
        self._max_rtp_size = getattr(ctx.ring, "slot_size", 1500) - MAX_TRAILER

        if ctx.ports is None:
            raise UnsupportedError("this worker has no UDP port allocator")
        self._sock = ctx.ports.allocate(listen_ip, port)
        self._rtcp_sock = None
        try:
            self.local_port = self._sock.getsockname()[1]
            self.fd = self._sock.fileno()
            if not self.rtcp_mux:
                self._rtcp_sock = ctx.ports.allocate(listen_ip, None)
            self.local_rtcp_port = self._rtcp_sock.getsockname()[1] if self._rtcp_sock else None
            self.rtcp_fd = self._rtcp_sock.fileno() if self._rtcp_sock else self.fd
            ctx.loop.add_reader(self.fd, self._on_rtp_readable)
            if self._rtcp_sock is not None:
                ctx.loop.add_reader(self.rtcp_fd, self._on_rtcp_readable)
        except BaseException:
            self._close_sockets()
            raise
        self.rtcp_reporter = RtcpReporter(self, ctx.loop)
        self.rtcp_reporter.start()
        ctx.handlers[transport_id] = self

    # -- requests ---------------------------------------------------------------------------

    def handle_request(self, method: str, data: dict) -> dict | None:
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
            return self.produce(require_dict(data, "data"))
        if method == TransportMethod.CONSUME:
            return self.consume(require_dict(data, "data"))
        raise UnknownMethodError(f"a plain transport does not handle {method!r}")

    def connect(self, data: dict) -> dict:
        if self.connected:
            raise InvalidStateError("connect() was already called")
        remote = rtcp_remote = None
        if not self.comedia:
            ip = require_str(data, "ip")
            port = optional_int(data, "port", 1, 65535)
            if port is None:
                raise ArgumentError("port is required (comedia is off)")
            ip = self._check_remote_ip(ip)
            remote = (ip, port)
            if self.rtcp_mux:
                rtcp_remote = remote
            else:
                rtcp_port = optional_int(data, "rtcpPort", 1, 65535)
                if rtcp_port is None:
                    raise ArgumentError("rtcpPort is required (rtcpMux is off)")
                rtcp_remote = (ip, rtcp_port)
        srtp_parameters = data.get("srtpParameters")
        response: dict[str, Any] = {}
        if self.srtp_send is None:
            if srtp_parameters is not None:
                raise ArgumentError("srtpParameters given but SRTP is not enabled on this transport")
        else:
            if srtp_parameters is None:
                raise ArgumentError("srtpParameters are required (SRTP is enabled)")
            require_dict(srtp_parameters, "srtpParameters")
            suite = require_str(srtp_parameters, "cryptoSuite", name="srtpParameters.cryptoSuite")
            if suite not in CRYPTO_SUITES:
                raise UnsupportedError(f"unsupported srtpParameters.cryptoSuite {suite!r}")
            try:
                remote_key = decode_key(srtp_parameters.get("keyBase64"), suite)
            except SrtpError as exc:
                raise ArgumentError(f"srtpParameters.keyBase64: {exc}") from None
            recv = SrtpSession(suite, remote_key, outbound=False)
            if suite != self.srtp_suite:
                # mediasoup: the local suite follows the remote's; a new local key goes with it.
                self.srtp_suite = suite
                self.srtp_local_key = generate_key(suite)
                self.srtp_send = SrtpSession(suite, self.srtp_local_key, outbound=True)
            self.srtp_recv = recv
            response["srtpParameters"] = self.srtp_parameters()
        self.connected = True
        if remote is not None:
            self._set_remote(remote)
            self._set_rtcp_remote(rtcp_remote)
        self._update_routes()  # the remote and/or the SRTP session changed
        response["tuple"] = self.tuple()
        response["rtcpTuple"] = self.rtcp_tuple()
        return response

    def produce(self, data: dict) -> dict:
        from relay.worker.producer import Producer

        producer_id = require_str(data, "producerId")
        if producer_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {producer_id!r} already exists")
        producer = Producer(producer_id, self, data, self._ctx)
        self.producers[producer_id] = producer
        self.router.add_producer(producer)
        return {"type": "simulcast" if len(producer.streams) > 1 else "simple"}

    def consume(self, data: dict) -> dict:
        from relay.worker.consumer import Consumer

        consumer_id = require_str(data, "consumerId")
        if consumer_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {consumer_id!r} already exists")
        producer_id = require_str(data, "producerId")
        producer = self.router.producers.get(producer_id)
        if producer is None:
            raise ArgumentError(f"no producer with id {producer_id!r} in this router")
        consumer = Consumer(consumer_id, self, producer, data, self._ctx)
        return {"paused": consumer.paused, "producerPaused": consumer.producer_paused}

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

    def route(self) -> tuple[int, tuple[str, int] | None, SrtpSession | None]:
        """Where a consumer of this transport sends: (fd, remote or None, SRTP session)."""
        return self.fd, self.remote, self.srtp_send

    def _check_remote_ip(self, ip: str) -> str:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise ArgumentError(f"ip must be an IP address, got {ip!r}") from None
        if (address.version == 6) != self._ipv6:
            raise ArgumentError(f"ip {ip} is not of the listen address family ({self.local_ip})")
        return str(address)

    def _set_remote(self, addr: tuple) -> None:
        self.remote = (addr[0], addr[1])
        self._remote_match = (addr[0], addr[1], 0, 0) if self._ipv6 and len(addr) == 2 else tuple(addr)

    def _set_rtcp_remote(self, addr: tuple | None) -> None:
        if addr is None:
            self.rtcp_remote = self._rtcp_remote_match = None
            return
        self.rtcp_remote = (addr[0], addr[1])
        self._rtcp_remote_match = (
            (addr[0], addr[1], 0, 0) if self._ipv6 and len(addr) == 2 else tuple(addr)
        )

    def _update_routes(self) -> None:
        for consumer in list(self.consumers.values()):
            consumer.update_route()

    # -- inbound (hot) ------------------------------------------------------------------------

    def _on_rtp_readable(self) -> None:
        recv = self._sock.recvfrom_into
        buf = self._rbuf
        ring = self._ctx.ring
        now = time.monotonic()
        max_size = self._max_rtp_size
        sends = 0
        try:
            for _ in range(MAX_PACKETS_PER_DRAIN):
                n, addr = recv(buf)
                if n < 12:
                    if n >= 2 and is_rtcp(buf[1]):
                        self._on_rtcp(n, addr, self._remote_match)
                    else:
                        self.dropped["tooShort"] += 1
                    continue
                if 64 <= (buf[1] & 0x7F) <= 95:  # RTCP (RFC 5761)
                    self._on_rtcp(n, addr, self._remote_match)
                    continue
                if addr != self._remote_match:
                    if self.remote is not None or not self.comedia:
                        self.dropped["notFromRemote"] += 1
                        continue
                    learn = True
                else:
                    learn = False
                srtp = self.srtp_recv
                if srtp is not None:
                    n = srtp.unprotect_rtp(self._rptr, n)
                    if n < 0:
                        self.dropped["srtp"] += 1
                        continue
                elif self.srtp_send is not None:  # SRTP on, but no remote key yet
                    self.dropped["srtpNotReady"] += 1
                    continue
                if n > max_size:  # would not fit a send-ring slot once re-protected
                    self.dropped["tooLarge"] += 1
                    continue
                if rtp_payload_offset(buf, n) < 0:
                    self.dropped["malformed"] += 1
                    continue
                if learn:
                    self._learn_remote(addr)
                self.rtp_packets_received += 1
                self.rtp_bytes_received += n
                seq, ts, ssrc = _unpack_seq_ts_ssrc(buf, 2)
                entry = self.ssrc_table.get(ssrc)
                if entry is None:
                    rtx = self.rtx_ssrc_table.get(ssrc)
                    if rtx is not None:  # a retransmission from the sender (RFC 4588)
                        sends += rtx[0].receive_rtx(self._rview, n, rtx[1], now)
                        continue
                    bound = route_unknown_ssrc(self, buf, n, ssrc)
                    if bound is None:
                        continue
                    producer, index, is_rtx = bound
                    if is_rtx:
                        sends += producer.receive_rtx(self._rview, n, index, now)
                        continue
                else:
                    producer, index = entry
                try:
                    sends += producer.receive(self._rview, n, index, ssrc, seq, ts, now)
                except (ValueError, RuntimeError) as exc:  # the ring refused a send: count it
                    self.dropped[f"send {type(exc).__name__}"] += 1
                if sends >= MAX_SENDS_PER_DRAIN:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: count, go on
            self.dropped[f"recv {exc.errno}"] += 1
        except Exception:  # a bug must cost one packet, not the transport
            logger.exception("RTP handling failed on transport %s", self.id)
            self.dropped["internalError"] += 1
        ring.flush()  # one per drained batch (also when a send failed half-way through)

    def _learn_remote(self, addr: tuple[str, int]) -> None:
        """comedia: the first valid RTP packet tells where the remote is."""
        self._set_remote(addr)
        if self.rtcp_mux:
            self._set_rtcp_remote(addr)
        self._update_routes()
        self._ctx.notify(self.id, TransportEvent.TUPLE, {"tuple": self.tuple()})

    def _on_rtcp_readable(self) -> None:
        recv = self._rtcp_sock.recvfrom_into
        try:
            for _ in range(MAX_PACKETS_PER_DRAIN):
                n, addr = recv(self._rbuf)
                if addr != self._rtcp_remote_match:
                    if self.rtcp_remote is not None or not self.comedia:
                        self.dropped["rtcpNotFromRemote"] += 1
                        continue
                    if n < 8 or self._rbuf[0] >> 6 != 2:
                        self.dropped["rtcpMalformed"] += 1
                        continue
                    self._set_rtcp_remote(addr)
                    self._ctx.notify(
                        self.id, TransportEvent.RTCP_TUPLE, {"rtcpTuple": self.rtcp_tuple()}
                    )
                self._on_rtcp(n, addr, self._rtcp_remote_match)
        except BlockingIOError:
            pass
        except OSError as exc:
            self.dropped[f"rtcp recv {exc.errno}"] += 1
        except Exception:
            logger.exception("RTCP handling failed on transport %s", self.id)
            self.dropped["internalError"] += 1
        self._ctx.ring.flush()

    def _on_rtcp(self, n: int, addr: tuple[str, int], expected: tuple[str, int] | None) -> None:
        """Defensive: count it, unprotect it, forward key-frame requests; never raise."""
        if addr != expected:
            if expected is not None or not (self.comedia and self.rtcp_mux):
                self.dropped["rtcpNotFromRemote"] += 1
                return
            # comedia + rtcp-mux: a receive-only remote (it sends only RTCP) is learned from
            # its first RTCP packet that authenticates (when SRTP is on) and parses.
            learn = True
        else:
            learn = False
        try:
            if self.srtp_recv is not None:
                n = self.srtp_recv.unprotect_rtcp(self._rptr, n)
                if n < 0:
                    self.dropped["srtcp"] += 1
                    return
            elif self.srtp_send is not None:
                self.dropped["srtpNotReady"] += 1
                return
            if learn:
                if n < 8 or next(iter_rtcp(self._rbuf, n), None) is None:
                    self.dropped["rtcpMalformed"] += 1
                    return
                self._learn_remote(addr)
            self.rtcp_packets_received += 1
            handle_rtcp(self, self._rview[:n], time.monotonic())
        except Exception:  # a bug here must not take the packet path down
            logger.exception("RTCP handling failed on transport %s", self.id)
            self.dropped["rtcpError"] += 1

    # -- outbound RTCP (control path) ---------------------------------------------------------

    def send_pli(self, media_ssrc: int) -> bool:
        """Ask the remote sender of `media_ssrc` for a key frame (RTCP PSFB PLI)."""
        return self.send_rtcp(build_pli(RECEIVER_RTCP_SSRC, media_ssrc))

    def send_rtcp(self, packet: bytes) -> bool:
        if self.closed or self.rtcp_remote is None:
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
            sent = ring.send(self.rtcp_fd, data, self.rtcp_remote)
            ring.flush()
        except (ValueError, RuntimeError) as exc:  # ring closed or refused: count, don't raise
            self.dropped[f"rtcp send {type(exc).__name__}"] += 1
            return False
        if sent:
            self.rtcp_packets_sent += 1
        else:
            self.dropped["rtcpRingFull"] += 1
        return sent

    # -- description --------------------------------------------------------------------------

    def tuple(self) -> dict:
        result: dict[str, Any] = {
            "localIp": self.announced_ip or self.local_ip,
            "localPort": self.local_port,
            "protocol": "udp",
        }
        if self.remote is not None:
            result["remoteIp"], result["remotePort"] = self.remote
        return result

    def rtcp_tuple(self) -> dict | None:
        if self.rtcp_mux:
            return None
        result: dict[str, Any] = {
            "localIp": self.announced_ip or self.local_ip,
            "localPort": self.local_rtcp_port,
            "protocol": "udp",
        }
        if self.rtcp_remote is not None:
            result["remoteIp"], result["remotePort"] = self.rtcp_remote
        return result

    def srtp_parameters(self) -> dict | None:
        if self.srtp_local_key is None:
            return None
        return {"cryptoSuite": self.srtp_suite, "keyBase64": encode_key(self.srtp_local_key)}

    def description(self) -> dict:
        """The createPlainTransport response."""
        return {
            "id": self.id,
            "tuple": self.tuple(),
            "rtcpTuple": self.rtcp_tuple(),
            "srtpParameters": self.srtp_parameters(),
        }

    def dump(self) -> dict:
        return {
            **self.description(),
            "rtcpMux": self.rtcp_mux,
            "comedia": self.comedia,
            "connected": self.connected,
            "producerIds": list(self.producers),
            "consumerIds": list(self.consumers),
            "mapSsrcProducerId": {str(s): p.id for s, (p, _) in self.ssrc_table.items()},
            "mapConsumerSsrcConsumerId": {str(s): c.id for s, c in self.consumers_by_ssrc.items()},
        }

    def get_stats(self) -> list[dict]:
        rtp_sent = sum(c.packets_sent for c in self.consumers.values())
        bytes_sent = sum(c.bytes_sent for c in self.consumers.values())
        stats: dict[str, Any] = {
            "type": "plain-rtp-transport",
            "transportId": self.id,
            "timestamp": int(time.time() * 1000),
            "tuple": self.tuple(),
            "rtcpTuple": self.rtcp_tuple(),
            "rtcpMux": self.rtcp_mux,
            "comedia": self.comedia,
            "rtpPacketsReceived": self.rtp_packets_received,
            "bytesReceived": self.rtp_bytes_received,
            "rtpPacketsSent": rtp_sent,
            "bytesSent": bytes_sent,
            "rtcpPacketsReceived": self.rtcp_packets_received,
            "rtcpPacketsSent": self.rtcp_packets_sent,
            "keyFrameRequestsReceived": self.keyframe_requests_received,
            "nackPacketsReceived": self.nacks_received,
            "rtcpReportsSent": self.rtcp_reporter.reports_sent,
            "roundTripTime": self.rtt,
            "dropped": dict(self.dropped),
        }
        if self.srtp_send is not None:
            stats["srtpSend"] = self.srtp_send.stats()
        if self.srtp_recv is not None:
            stats["srtpRecv"] = self.srtp_recv.stats()
        return [stats]

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close consumers first (silently: the controller closes its proxies with the
        transport), then producers (their consumers elsewhere get "producerclose")."""
        if self.closed:
            return
        self.closed = True
        self.rtcp_reporter.close()
        for consumer in list(self.consumers.values()):
            consumer.close(notify=None)
        for producer in list(self.producers.values()):
            producer.close()
        self._close_sockets()
        self._ctx.handlers.pop(self.id, None)
        self.router.remove_transport(self)

    def _close_sockets(self) -> None:
        loop = self._ctx.loop
        for sock in (self._sock, self._rtcp_sock):
            if sock is None or sock.fileno() < 0:
                continue
            port = sock.getsockname()[1]
            loop.remove_reader(sock.fileno())
            sock.close()
            self._ctx.ports.release(port)
