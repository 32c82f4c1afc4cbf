"""Worker-side WebRTC transport: ICE-lite + DTLS-SRTP over UDP and ICE-TCP (passive).

Sockets are the transport's own (`UdpSocket` / `TcpListener` per listen info) or those of a
WebRtcServer, which hands each packet to the transport it belongs to. Per packet (RFC 7983
demux by first byte):

  STUN      → IceLiteAgent; its answer goes back to the same tuple (a UDP address or an
              ICE-TCP connection). Only STUN is taken from a tuple until it passed a check.
  DTLS      → DtlsTransport (only from a validated tuple; the handshake starts once ICE is
              connected and connect() gave the remote's parameters); its output goes to the
              ICE selected tuple.
  RTP/RTCP  → only from a validated tuple and only once DTLS is connected (SRTP keys are
              exported then); SRTP unprotected in place; RTP routed to its producer by SSRC,
              and an unknown SSRC is bound by the `mid` header extension, then `rid` (or
              `repaired-rtp-stream-id` for RTX), then the single producer without a
              signalled SSRC (as mediasoup-client sends them; `relay.transport.rtp_listener`).
Everything else is dropped and counted in `dropped` (getStats).

Outbound media: consumers read `route()` = (fd, remote address, SRTP session) and
`media_send`: the send ring's `send` on a UDP tuple, a copy send on the ICE-TCP connection
(never the ring). Without a selected tuple and a connected DTLS, consumers are inactive.

Timers on the event loop (`call_later`): ICE consent freshness and DTLS retransmissions.
Notifications: icestatechange, iceselectedtuplechange, dtlsstatechange.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from relay.rtp.packet import (
    iter_rtcp,
)
from relay.transport.base import Transport
from relay.transport.dtls import DtlsTransport, worker_certificate
from relay.transport.ice_lite import IceLiteAgent, IceTuple, host_candidate
from relay.transport.send_estimation import (
    DEFAULT_INITIAL_BPS,
    DEFAULT_MAX_BPS,
    DEFAULT_MIN_BPS,
    SendEstimation,
)
from relay.transport.srtp_session import SrtpSession, buffer_pointer
from relay.transport.webrtc_sockets import (
    TcpConnection,
    TcpListener,
    UdpSocket,
    open_endpoint,
)
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
)
from worker_proto.methods import TransportEvent, TransportMethod
from worker_proto.validation import optional_bool, optional_int, require_dict, require_str

if TYPE_CHECKING:
    from relay.transport.webrtc_server import WebRtcServer
    from relay.worker.context import WorkerContext
    from relay.worker.router import Router

logger = logging.getLogger(__name__)

MAX_BITRATE = 10_000_000_000  # bits/s: the largest bitrate option taken



def parse_listen_infos(data: dict, enable_udp: bool, enable_tcp: bool) -> list[dict]:
    """Validated [{protocol, ip, announcedAddress, port}] kept by the enable flags."""
    infos = data.get("listenInfos")
    if not isinstance(infos, list) or not infos:
        raise ArgumentError("listenInfos must be a non-empty array")
    result = []
    for i, info in enumerate(infos):
        where = f"listenInfos[{i}]"
        require_dict(info, where)
        protocol = info.get("protocol", "udp")
        if protocol not in ("udp", "tcp"):
            raise ArgumentError(f"{where}.protocol must be 'udp' or 'tcp'")
        ip = require_str(info, "ip", name=f"{where}.ip")
        announced = info.get("announcedAddress", info.get("announcedIp"))
        if announced is not None and not isinstance(announced, str):
            raise ArgumentError(f"{where}.announcedAddress must be a string")
        port = optional_int(info, "port", 0, 65535, name=f"{where}.port") or None
        if (protocol == "udp" and enable_udp) or (protocol == "tcp" and enable_tcp):
            result.append({"protocol": protocol, "ip": ip, "announcedAddress": announced,
                           "port": port})
    if not result:
        raise ArgumentError("no listenInfos left for the enabled protocols")
    return result


def local_preference(index: int, protocol: str, prefer_udp: bool, prefer_tcp: bool) -> int:
    """Candidates in listen-info order, the preferred protocol first (as mediasoup)."""
    preferred = (protocol == "udp" and prefer_udp) or (protocol == "tcp" and prefer_tcp)
    return max(0, (60000 if preferred else 50000) - index * 100)


class WebRtcTransport(Transport):
    """One WebRTC transport of a router (handler id = its transportId)."""

    kind_name = "WebRTC transport"

    def __init__(self, transport_id: str, router: Router, data: dict, ctx: WorkerContext,
                 server: WebRtcServer | None = None) -> None:
        enable_udp = optional_bool(data, "enableUdp", True)
        enable_tcp = optional_bool(data, "enableTcp", False)
        prefer_udp = optional_bool(data, "preferUdp", False)
        prefer_tcp = optional_bool(data, "preferTcp", False)
        if not enable_udp and not enable_tcp:
            raise ArgumentError("enableUdp and enableTcp are both false")
        initial_bps = optional_int(data, "initialAvailableOutgoingBitrate", 0, MAX_BITRATE)
        min_bps = optional_int(data, "minOutgoingBitrate", 0, MAX_BITRATE) or DEFAULT_MIN_BPS
        max_bps = optional_int(data, "maxOutgoingBitrate", 0, MAX_BITRATE) or DEFAULT_MAX_BPS
        if min_bps > max_bps:
            raise ArgumentError("minOutgoingBitrate is above maxOutgoingBitrate")
        super().__init__(transport_id, router, ctx, SendEstimation(
            min(max(initial_bps or DEFAULT_INITIAL_BPS, min_bps), max_bps), min_bps, max_bps,
            time.monotonic))
        self.server = server

        self.ice = IceLiteAgent(on_state_change=self._on_ice_state,
                                on_selected_tuple_change=self._on_selected_tuple)
        self.dtls = DtlsTransport(worker_certificate(), self._send_dtls,
                                  on_state_change=self._on_dtls_state)
        self._dtls_remote_set = False
        # IceTuple -> (UdpSocket, addr) or (TcpConnection, None): where that tuple is reached.
        self._paths: dict[IceTuple, tuple[Any, Any]] = {}
        # Validated tuples as the packet path sees them: UDP addr (recvfrom form) or the
        # TcpConnection object. Rebuilt after every ICE event (control path).
        self._validated: set[Any] = set()
        self._selected_path: tuple[Any, Any] | None = None
        self.media_send = ctx.ring.send
        # the selected tuple's ICE-TCP connection (the core frames media into it), or None
        self.tcp_connection: TcpConnection | None = None
        self._route: tuple[int, Any, SrtpSession | None] = (-1, None, None)
        self._dtls_timer: Any = None
        self._consent_timer: Any = None

        self.udp_sockets: list[UdpSocket] = []
        self.tcp_listeners: list[TcpListener] = []
        self.ice_candidates: list[dict] = []
        try:
            if server is None:
                infos = parse_listen_infos(data, enable_udp, enable_tcp)
                for i, info in enumerate(infos):
                    endpoint = open_endpoint(ctx, info, self.on_udp, self.on_tcp_frame)
                    (self.udp_sockets if info["protocol"] == "udp" else self.tcp_listeners).append(
                        endpoint)
                    self.ice_candidates.append(host_candidate(
                        endpoint.announced or endpoint.ip, endpoint.port, info["protocol"],
                        local_preference=local_preference(i, info["protocol"], prefer_udp,
                                                          prefer_tcp)))
            else:
                self.ice_candidates = server.candidates(enable_udp, enable_tcp, prefer_udp,
                                                        prefer_tcp)
                if not self.ice_candidates:
                    raise ArgumentError("the WebRtcServer has no port for the enabled protocols")
                server.add_transport(self)
        except OSError as exc:
            self._close_sockets()
            raise ArgumentError(f"cannot listen: {exc.strerror or exc}") from None
        except BaseException:
            self._close_sockets()
            raise
        self._start()

    @property
    def rtcp_remote(self) -> tuple | None:
        """Where RTCP goes (the selected tuple), once SRTP is up; None before."""
        if self._selected_path is None or self.srtp_send is None:
            return None
        return self.ice.selected_tuple

    # -- requests ---------------------------------------------------------------------------

    def handle_other_request(self, method: str, data: dict) -> dict | list | None:
        if method == TransportMethod.RESTART_ICE:
            return self.restart_ice()
        return super().handle_other_request(method, data)

    def connect(self, data: dict) -> dict:
        if self._dtls_remote_set:
            raise InvalidStateError("connect() was already called")
        dtls_parameters = require_dict(data.get("dtlsParameters"), "dtlsParameters")
        try:
            role = self.dtls.set_remote_parameters(dtls_parameters)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"dtlsParameters: {exc}") from None
        self._dtls_remote_set = True
        self._maybe_start_dtls()
        return {"dtlsLocalRole": role}

    def restart_ice(self) -> dict:
        old = self.ice.username_fragment
        params = self.ice.restart()
        if self.server is not None:
            self.server.add_username_fragment(self, params["usernameFragment"], old)
        return {"iceParameters": params}

    def route(self) -> tuple[int, Any, SrtpSession | None]:
        """Where a consumer of this transport sends: (fd, remote or None, SRTP session)."""
        return self._route

    @property
    def media_stream(self) -> TcpConnection | None:
        """Where the fan-out core frames consumers' media instead of the ring: the ICE-TCP
        connection of the selected tuple, if it is one."""
        return self.tcp_connection

    def _update_routes(self) -> None:
        path = self._selected_path
        srtp = self.srtp_send
        if path is None or srtp is None or self.dtls.state != "connected":
            self._route = (-1, None, None)
            self.media_send = self._ctx.ring.send
            self.tcp_connection = None
        elif isinstance(path[0], TcpConnection):
            self._route = (path[0].fd, path[0].addr, srtp)
            self.media_send = path[0].media_send
            self.tcp_connection = path[0]
        else:
            self._route = (path[0].fd, path[1], srtp)
            self.media_send = self._ctx.ring.send
            self.tcp_connection = None
        for consumer in list(self.consumers.values()):
            consumer.update_route()

    # -- inbound ------------------------------------------------------------------------------

    def on_udp(self, udp: UdpSocket, n: int, addr: Any) -> int:
        """One datagram in `udp.buf[:n]` from `addr`; returns the media sends queued."""
        if n == 0:
            self.dropped["empty"] += 1
            return 0
        buf = udp.buf
        first = buf[0]
        if 128 <= first < 192:
            if addr not in self._validated:
                self.dropped["notValidated"] += 1
                return 0
            return self._on_srtp(buf, udp.view, udp.ptr, n, udp.now)
        if first < 4:
            self._on_stun(bytes(buf[:n]), (addr[0], addr[1], "udp"), (udp, addr))
        elif 20 <= first < 64:
            if addr not in self._validated:
                self.dropped["dtlsNotValidated"] += 1
            else:
                self._on_dtls(bytes(buf[:n]))
        else:
            self.dropped["unknown"] += 1
        return 0

    def on_tcp_frame(self, conn: TcpConnection, frame: bytearray) -> None:
        """One RFC 4571 frame from an ICE-TCP connection (a copy: unprotected in place)."""
        first = frame[0]
        if 128 <= first < 192:
            if conn not in self._validated:
                self.dropped["notValidated"] += 1
                return
            if len(frame) > 2048:
                self.dropped["tooLarge"] += 1
                return

            self._on_srtp(frame, memoryview(frame), buffer_pointer(frame), len(frame),
                          time.monotonic())
        elif first < 4:
            self._on_stun(bytes(frame), conn.tuple, (conn, None))
        elif 20 <= first < 64:
            if conn not in self._validated:
                self.dropped["dtlsNotValidated"] += 1
            else:
                self._on_dtls(bytes(frame))
        else:
            self.dropped["unknown"] += 1

    def _on_stun(self, data: bytes, tuple_: IceTuple, path: tuple[Any, Any]) -> None:
        known = tuple_ in self._paths
        if not known:
            self._paths[tuple_] = path
        response = self.ice.handle_stun(data, tuple_)
        if response is not None:
            self._send_on(path, response)
        if not known and not self.ice.is_validated(tuple_):
            del self._paths[tuple_]  # nothing learned from a tuple that failed its check
        elif not known and isinstance(path[0], TcpConnection):
            # Validated: the connection is this transport's from now on.
            path[0].claimed = True
            path[0].on_frame = self.on_tcp_frame
            path[0].on_close.append(self._on_tcp_closed)
        self._sync_validated()
        self._arm_consent_timer()

    def _on_dtls(self, data: bytes) -> None:
        self.dtls.feed(data)
        self._arm_dtls_timer()

    def _on_srtp(self, buf: bytearray, view: memoryview, ptr: Any, n: int, now: float) -> int:
        srtp = self.srtp_recv
        if srtp is None:
            self.dropped["beforeDtls"] += 1
            return 0
        if n >= 2 and 64 <= (buf[1] & 0x7F) <= 95:  # RTCP (RFC 5761)
            self._on_rtcp(buf, ptr, n)
            return 0
        if n < 12:
            self.dropped["tooShort"] += 1
            return 0
        n = srtp.unprotect_rtp(ptr, n)
        if n < 0:
            self.dropped["srtp"] += 1
            return 0
        if not self._rtp_fits(buf, n):
            return 0
        return self._route_rtp(buf, view, n, now)

    def _on_rtcp(self, buf: bytearray, ptr: Any, n: int) -> None:
        assert self.srtp_recv is not None
        try:
            n = self.srtp_recv.unprotect_rtcp(ptr, n)
            if n < 0:
                self.dropped["srtcp"] += 1
                return
            if n < 8 or next(iter_rtcp(buf, n), None) is None:
                self.dropped["rtcpMalformed"] += 1
                return
        except Exception:  # a bug here must not take the packet path down
            logger.exception("RTCP handling failed on transport %s", self.id)
            self.dropped["rtcpError"] += 1
            return
        self._handle_rtcp(memoryview(buf)[:n])

    # -- outbound (control path) ----------------------------------------------------------------

    def _send_on(self, path: tuple[Any, Any], data: bytes | memoryview) -> bool:
        endpoint, addr = path
        if isinstance(endpoint, TcpConnection):
            return endpoint.send(data)
        return endpoint.sendto(data, addr)

    def _send_dtls(self, datagram: bytes) -> None:
        if self._selected_path is None:
            self.dropped["dtlsNoTuple"] += 1
            return
        self._send_on(self._selected_path, datagram)

    def send_rtcp(self, packet: bytes) -> bool:
        if self.closed or self._selected_path is None or self.srtp_send is None:
            self.dropped["rtcpNotReady"] += 1
            return False
        data = self.srtp_send.protect_rtcp(packet, len(packet))
        if data is None:
            self.dropped["srtcpProtect"] += 1
            return False
        if self._send_on(self._selected_path, bytes(data)):
            self.rtcp_packets_sent += 1
            return True
        return False

    # -- ICE / DTLS wiring --------------------------------------------------------------------

    def _sync_validated(self) -> None:
        validated = set()
        for tuple_ in self.ice.validated_tuples:
            path = self._paths.get(tuple_)
            if path is not None:
                validated.add(path[0] if isinstance(path[0], TcpConnection) else path[1])
        self._validated = validated
        if self.server is not None:
            self.server.learn_tuples(self, validated)

    def _on_ice_state(self, state: str) -> None:
        self._ctx.notify(self.id, TransportEvent.ICE_STATE_CHANGE, {"iceState": state})
        # After the STUN response that connected ICE has gone out, not before it.
        self._ctx.loop.call_soon(self._maybe_start_dtls)

    def _on_selected_tuple(self, tuple_: IceTuple | None) -> None:
        self._selected_path = self._paths.get(tuple_) if tuple_ is not None else None
        if tuple_ is not None:
            self._ctx.notify(self.id, TransportEvent.ICE_SELECTED_TUPLE_CHANGE,
                             {"iceSelectedTuple": self.selected_tuple()})
        self._update_routes()

    def _maybe_start_dtls(self) -> None:
        if self.closed or not self._dtls_remote_set or self.dtls.state != "new":
            return
        if self.ice.state in ("connected", "completed"):
            self.dtls.start()
            self._arm_dtls_timer()

    def _on_dtls_state(self, state: str) -> None:
        data: dict[str, Any] = {"dtlsState": state}
        if state == "connected":
            suite = self.dtls.srtp_crypto_suite
            try:
                self.srtp_send = SrtpSession(suite, self.dtls.local_srtp_key, outbound=True)
                self.srtp_recv = SrtpSession(suite, self.dtls.remote_srtp_key, outbound=False)
            except Exception:  # noqa: BLE001 - a libsrtp refusal is a failed DTLS, not a crash
                logger.exception("SRTP session set-up failed on transport %s", self.id)
                self.dropped["srtpSetup"] += 1
            data["dtlsRemoteCert"] = self.dtls.remote_cert
        else:
            self.srtp_send = self.srtp_recv = None
        if state == "failed":
            data["reason"] = self.dtls.failure_reason
        if not self.closed:
            self._ctx.notify(self.id, TransportEvent.DTLS_STATE_CHANGE, data)
            self._update_routes()

    def _arm_dtls_timer(self) -> None:
        if self._dtls_timer is not None:
            self._dtls_timer.cancel()
            self._dtls_timer = None
        if self.closed:
            return
        timeout = self.dtls.get_timeout()
        if timeout is not None:
            self._dtls_timer = self._ctx.loop.call_later(timeout, self._on_dtls_timer)

    def _on_dtls_timer(self) -> None:
        self._dtls_timer = None
        self.dtls.handle_timeout()
        self._arm_dtls_timer()

    def _arm_consent_timer(self) -> None:
        if self._consent_timer is not None:
            self._consent_timer.cancel()
            self._consent_timer = None
        if self.closed:
            return
        deadline = self.ice.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._consent_timer = self._ctx.loop.call_later(delay, self._on_consent_timer)

    def _on_consent_timer(self) -> None:
        self._consent_timer = None
        self.ice.poll()
        self._sync_validated()
        self._arm_consent_timer()

    def _on_tcp_closed(self, conn: TcpConnection) -> None:
        if self.closed:
            return
        self._paths.pop(conn.tuple, None)
        self.ice.remove_tuple(conn.tuple)
        self._sync_validated()

    # -- description --------------------------------------------------------------------------

    def selected_tuple(self) -> dict | None:
        tuple_ = self.ice.selected_tuple
        path = self._selected_path
        if tuple_ is None or path is None:
            return None
        endpoint = path[0]
        local_ip = endpoint.announced or (endpoint.local_ip if isinstance(endpoint, TcpConnection)
                                          else endpoint.ip)
        local_port = endpoint.local_port if isinstance(endpoint, TcpConnection) else endpoint.port
        return {"localAddress": local_ip, "localPort": local_port, "remoteIp": tuple_[0],
                "remotePort": tuple_[1], "protocol": tuple_[2]}

    def description(self) -> dict:
        """The createWebRtcTransport response (mediasoup's shape)."""
        return {
            "id": self.id,
            "iceRole": "controlled",
            "iceParameters": self.ice.ice_parameters,
            "iceCandidates": self.ice_candidates,
            "iceState": self.ice.state,
            "iceSelectedTuple": self.selected_tuple(),
            "dtlsParameters": self.dtls.dtls_parameters,
            "dtlsState": self.dtls.state,
            "dtlsRemoteCert": self.dtls.remote_cert,
            "sctpParameters": None,
            "webRtcServerId": self.server.id if self.server is not None else None,
        }

    def get_stats(self) -> list[dict]:
        stats = {
            "type": "webrtc-transport",
            **self._common_stats(),
            "iceRole": "controlled",
            "iceState": self.ice.state,
            "iceSelectedTuple": self.selected_tuple(),
            "dtlsState": self.dtls.state,
            "ice": dict(vars(self.ice.stats)),
            "dtls": dict(vars(self.dtls.stats)),
        }
        if self.udp_sockets:  # its own UDP ports (a WebRtcServer reports its own)
            stats["udpSockets"] = [udp.stats() for udp in self.udp_sockets]
        if self.tcp_listeners:  # its own ICE-TCP ports (a WebRtcServer reports its own)
            stats["tcpServers"] = [listener.stats() for listener in self.tcp_listeners]
        return self._srtp_stats(stats)

    # -- closing ------------------------------------------------------------------------------

    def _close_io(self) -> None:
        for timer in (self._dtls_timer, self._consent_timer):
            if timer is not None:
                timer.cancel()
        self.dtls.close()
        self.ice.close()
        for endpoint, _ in list(self._paths.values()):
            if isinstance(endpoint, TcpConnection) and self.server is not None:
                endpoint.close("transport closed")
        self._close_sockets()
        if self.server is not None:
            self.server.remove_transport(self)

    def _close_sockets(self) -> None:
        for udp in self.udp_sockets:
            udp.close()
        for listener in self.tcp_listeners:
            listener.close()

