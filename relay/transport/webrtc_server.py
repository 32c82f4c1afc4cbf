"""Worker-side WebRtcServer: UDP and TCP ports shared by many WebRTC transports.

A packet from a tuple the server already knows goes to that tuple's transport (one dict
lookup). From an unknown tuple only STUN is taken: the local part of its USERNAME (our ICE
username fragment) names the transport, which runs the check; once the tuple is validated
the transport reports it (`learn_tuples`) and later packets from it skip the STUN parse.
Anything else from an unknown tuple, or a STUN request for no known ufrag, is dropped and
counted; it never reaches, nor harms, any transport.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from typing import TYPE_CHECKING, Any

from aioice import stun

from relay.transport.ice_lite import host_candidate
from relay.transport.webrtc import local_preference, parse_listen_infos
from relay.transport.webrtc_sockets import TcpConnection, TcpListener, UdpSocket, open_endpoint
from worker_proto.errors import ArgumentError, InvalidStateError, UnknownMethodError
from worker_proto.methods import WorkerMethod
from worker_proto.validation import require_dict, require_str

if TYPE_CHECKING:
    from relay.transport.webrtc import WebRtcTransport
    from relay.worker.context import WorkerContext

logger = logging.getLogger(__name__)

_COOKIE = struct.Struct("!I")


def stun_local_username_fragment(data: bytes) -> str | None:
    """The local ufrag ("<ours>:<theirs>") of a STUN request's USERNAME, or None."""
    if len(data) < stun.HEADER_LENGTH or _COOKIE.unpack_from(data, 4)[0] != stun.COOKIE:
        return None
    try:
        message = stun.parse_message(data)
    except Exception:  # untrusted bytes: any decoding error is "no"
        return None
    username = message.attributes.get("USERNAME")
    if not isinstance(username, str):
        return None
    local, colon, _ = username.partition(":")
    return local if colon else None


class WebRtcServer:
    """handler id = its webRtcServerId; closing it closes its transports."""

    def __init__(self, server_id: str, data: dict, ctx: WorkerContext) -> None:
        self.id = server_id
        self._ctx = ctx
        self.closed = False
        self.udp_sockets: list[UdpSocket] = []
        self.tcp_listeners: list[TcpListener] = []
        self._infos: list[tuple[str, Any]] = []  # (protocol, endpoint) in listen-info order
        self._by_ufrag: dict[str, WebRtcTransport] = {}
        self._by_tuple: dict[Any, WebRtcTransport] = {}  # UDP addr or TcpConnection
        self._transports: set[WebRtcTransport] = set()
        self.dropped: Counter[str] = Counter()
        infos = parse_listen_infos(data, True, True)
        try:
            for info in infos:
                endpoint = open_endpoint(ctx, info, self._on_udp, self._on_tcp_frame)
                (self.udp_sockets if info["protocol"] == "udp" else self.tcp_listeners).append(
                    endpoint)
                self._infos.append((info["protocol"], endpoint))
        except OSError as exc:
            self._close_sockets()
            raise ArgumentError(f"cannot listen: {exc.strerror or exc}") from None
        except BaseException:
            self._close_sockets()
            raise
        ctx.handlers[server_id] = self

    # -- transports ---------------------------------------------------------------------------

    def candidates(self, enable_udp: bool, enable_tcp: bool, prefer_udp: bool,
                   prefer_tcp: bool) -> list[dict]:
        result = []
        for i, (protocol, endpoint) in enumerate(self._infos):
            if (protocol == "udp" and enable_udp) or (protocol == "tcp" and enable_tcp):
                result.append(host_candidate(
                    endpoint.announced or endpoint.ip, endpoint.port, protocol,
                    local_preference=local_preference(i, protocol, prefer_udp, prefer_tcp)))
        return result

    def add_transport(self, transport: WebRtcTransport) -> None:
        if self.closed:
            raise InvalidStateError(f"WebRtcServer {self.id} is closed")
        self._transports.add(transport)
        self._by_ufrag[transport.ice.username_fragment] = transport

    def add_username_fragment(self, transport: WebRtcTransport, ufrag: str, old: str) -> None:
        """After an ICE restart both ufrags reach the transport (the old one until the peer
        renegotiates; stale entries go when the transport closes)."""
        self._by_ufrag[ufrag] = transport

    def learn_tuples(self, transport: WebRtcTransport, validated: set[Any]) -> None:
        for key in [k for k, t in self._by_tuple.items() if t is transport and k not in validated]:
            del self._by_tuple[key]
        for key in validated:
            self._by_tuple[key] = transport

    def remove_transport(self, transport: WebRtcTransport) -> None:
        self._transports.discard(transport)
        for ufrag in [u for u, t in self._by_ufrag.items() if t is transport]:
            del self._by_ufrag[ufrag]
        for key in [k for k, t in self._by_tuple.items() if t is transport]:
            del self._by_tuple[key]

    # -- inbound ------------------------------------------------------------------------------

    def _on_udp(self, udp: UdpSocket, n: int, addr: Any) -> int:
        transport = self._by_tuple.get(addr)
        if transport is not None:
            return transport.on_udp(udp, n, addr)
        if n == 0 or udp.buf[0] >= 4:
            self.dropped["unknownTuple"] += 1
            return 0
        transport = self._by_ufrag.get(stun_local_username_fragment(bytes(udp.buf[:n])) or "")
        if transport is None:
            self.dropped["unknownUsernameFragment"] += 1
            return 0
        return transport.on_udp(udp, n, addr)

    def _on_tcp_frame(self, conn: TcpConnection, frame: bytearray) -> None:
        """Frames of a connection no transport has claimed yet: only STUN for a known ufrag."""
        if frame[0] >= 4:
            self.dropped["unknownTuple"] += 1
            return
        transport = self._by_ufrag.get(stun_local_username_fragment(bytes(frame)) or "")
        if transport is None:
            self.dropped["unknownUsernameFragment"] += 1
            return
        transport.on_tcp_frame(conn, frame)

    # -- requests -----------------------------------------------------------------------------

    def handle_request(self, method: str, data: dict) -> dict | None:
        if self.closed:
            raise InvalidStateError(f"WebRtcServer {self.id} is closed")
        if method == WorkerMethod.DUMP_WEBRTC_SERVER:
            return self.dump()
        raise UnknownMethodError(f"a WebRtcServer does not handle {method!r}")

    def dump(self) -> dict:
        return {
            "id": self.id,
            # ip, port, datagrams read late (waiting for the CPU: see webrtc_sockets) and errors
            "udpSockets": [u.stats() for u in self.udp_sockets],
            # ip, port, slots in use and the counts of strangers' connections closed
            "tcpServers": [t.stats() for t in self.tcp_listeners],
            "webRtcTransportIds": sorted(t.id for t in self._transports),
            "localIceUsernameFragments": [
                {"localIceUsernameFragment": u, "webRtcTransportId": t.id}
                for u, t in self._by_ufrag.items()
            ],
            "tupleHashes": len(self._by_tuple),
            "dropped": dict(self.dropped),
        }

    def close(self) -> None:
        """Close the server; its transports close too and each notifies "webrtcserverclose"."""
        if self.closed:
            return
        self.closed = True
        from worker_proto.methods import TransportEvent

        for transport in list(self._transports):
            transport.close()
            self._ctx.notify(transport.id, TransportEvent.WEBRTC_SERVER_CLOSE, None)
        self._close_sockets()
        self._ctx.handlers.pop(self.id, None)

    def _close_sockets(self) -> None:
        for udp in self.udp_sockets:
            udp.close()
        for listener in self.tcp_listeners:
            listener.close()


def create_webrtc_server(data: dict, ctx: WorkerContext) -> dict:
    """worker.createWebRtcServer {webRtcServerId, listenInfos}."""
    data = require_dict(data, "data")
    server_id = require_str(data, "webRtcServerId")
    if server_id in ctx.handlers:
        raise InvalidStateError(f"an object with id {server_id!r} already exists")
    server = WebRtcServer(server_id, data, ctx)
    return server.dump()
