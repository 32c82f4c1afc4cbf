"""Controller-side proxy of a worker WebRtcServer: one UDP (and/or TCP) port per listen info,
shared by every WebRTC transport created with `webrtc_server=` this server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_proto.methods import WORKER_HANDLER_ID, WorkerMethod

from .channel import Channel
from .channel_object import ChannelObject

if TYPE_CHECKING:
    from .webrtc_transport import WebRtcTransport


class WebRtcServer(ChannelObject):
    """Events: "workerclose"."""

    _KIND = "WebRtcServer"
    _DUMP_METHOD = WorkerMethod.DUMP_WEBRTC_SERVER

    def __init__(self, channel: Channel, server_id: str, data: dict, app_data: Any,
                 on_close: Callable[[WebRtcServer], None]) -> None:
        super().__init__(channel, server_id, app_data, on_close)
        self._transports: dict[str, WebRtcTransport] = {}
        self._udp_sockets = data.get("udpSockets") or []
        self._tcp_servers = data.get("tcpServers") or []

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

    def close(self) -> None:
        """Close the server; its transports close and emit "webrtcserverclose"."""
        super().close()

    def _send_close(self) -> None:
        self._channel.request_nowait(WorkerMethod.CLOSE_WEBRTC_SERVER, WORKER_HANDLER_ID,
                                     {"webRtcServerId": self._id})
        for transport in list(self._transports.values()):
            transport._webrtc_server_closed()

    def _worker_closed(self) -> None:
        self._closed_elsewhere("workerclose")

    def _finish(self) -> None:
        self._transports.clear()  # (empty already after close(): the transports left)
        self._on_close(self)

    def _add_transport(self, transport: WebRtcTransport) -> None:
        self._transports[transport.id] = transport

    def _transport_closed(self, transport: WebRtcTransport) -> None:
        self._transports.pop(transport.id, None)
