"""Controller-side proxy of a worker WebRtcServer: one UDP (and/or TCP) port per listen info,
shared by every WebRTC transport created with `webrtc_server=` this server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import InvalidStateError
from worker_proto.methods import WORKER_HANDLER_ID, WorkerMethod

from .channel import Channel

if TYPE_CHECKING:
    from .webrtc_transport import WebRtcTransport


class WebRtcServer(AsyncIOEventEmitter):
    """Events: "workerclose"."""

    def __init__(self, channel: Channel, server_id: str, data: dict, app_data: Any,
                 on_close: Callable[[WebRtcServer], None]) -> None:
        super().__init__()
        self._channel = channel
        self._id = server_id
        self._closed = False
        self._on_close = on_close
        self._transports: dict[str, WebRtcTransport] = {}
        self._udp_sockets = data.get("udpSockets") or []
        self._tcp_servers = data.get("tcpServers") or []
        self.app_data = app_data

    @property
    def id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def transports(self) -> list[WebRtcTransport]:
        return list(self._transports.values())

    @property
    def udp_sockets(self) -> list[dict]:
        """[{ip, port}] the server listens on (UDP)."""
        return list(self._udp_sockets)

    @property
    def tcp_servers(self) -> list[dict]:
        return list(self._tcp_servers)

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"WebRtcServer {self._id} closed")

    async def dump(self) -> dict:
        self._ensure_open()
        return await self._channel.request(WorkerMethod.DUMP_WEBRTC_SERVER, self._id)

    def close(self) -> None:
        """Close the server; its transports close and emit "webrtcserverclose"."""
        if self._closed:
            return
        self._closed = True
        self._channel.request_nowait(WorkerMethod.CLOSE_WEBRTC_SERVER, WORKER_HANDLER_ID,
                                     {"webRtcServerId": self._id})
        for transport in list(self._transports.values()):
            transport._webrtc_server_closed()
        self._on_close(self)

    def _worker_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transports.clear()
        self._on_close(self)
        self.emit("workerclose")

    def _add_transport(self, transport: WebRtcTransport) -> None:
        self._transports[transport.id] = transport

    def _transport_closed(self, transport: WebRtcTransport) -> None:
        self._transports.pop(transport.id, None)
