"""Controller-side proxy of a worker WebRtcTransport (ICE-lite + DTLS-SRTP, UDP / ICE-TCP).

Its `ice_parameters`, `ice_candidates` and `dtls_parameters` are what mediasoup-client's
`device.createSendTransport()` / `createRecvTransport()` take; the client's "connect" event
gives the `dtls_parameters` for `connect()`. produce()/consume() work as on a plain
transport (the code is shared with it: relay/controller/transport.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_proto.errors import ArgumentError
from worker_proto.methods import TransportEvent, TransportMethod

from .channel import Channel
from .plain_transport import validate_ip, validate_port
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router
    from .webrtc_server import WebRtcServer

logger = logging.getLogger(__name__)

DTLS_ROLES = ("auto", "client", "server")


def validate_listen_infos(value: Any) -> list[dict]:
    """[{protocol: "udp"|"tcp", ip, announcedAddress?, port?}] in the worker's wire shape."""
    if not isinstance(value, list) or not value:
        raise ArgumentError("listen_infos must be a non-empty list")
    result = []
    for i, info in enumerate(value):
        if not isinstance(info, dict):
            raise ArgumentError(f"listen_infos[{i}] must be a dict")
        protocol = info.get("protocol", "udp")
        if protocol not in ("udp", "tcp"):
            raise ArgumentError(f"listen_infos[{i}].protocol must be 'udp' or 'tcp'")
        announced = info.get("announcedAddress", info.get("announcedIp"))
        if announced is not None and (not isinstance(announced, str) or not announced):
            raise ArgumentError(f"listen_infos[{i}].announcedAddress must be a non-empty string")
        result.append({
            "protocol": protocol,
            "ip": validate_ip(info.get("ip"), f"listen_infos[{i}].ip"),
            "announcedAddress": announced,
            "port": validate_port(info.get("port") or None, f"listen_infos[{i}].port"),
        })
    return result


def validate_dtls_parameters(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ArgumentError("dtls_parameters must be a dict {role?, fingerprints}")
    role = value.get("role", "auto")
    if role not in DTLS_ROLES:
        raise ArgumentError(f"dtls_parameters.role must be one of {DTLS_ROLES}")
    fingerprints = value.get("fingerprints")
    if not isinstance(fingerprints, list) or not fingerprints:
        raise ArgumentError("dtls_parameters.fingerprints must be a non-empty list")
    for f in fingerprints:
        if not isinstance(f, dict) or not isinstance(f.get("algorithm"), str) \
                or not isinstance(f.get("value"), str):
            raise ArgumentError("each fingerprint must be {algorithm: str, value: str}")
    return {"role": role, "fingerprints": [{"algorithm": f["algorithm"], "value": f["value"]}
                                           for f in fingerprints]}


class WebRtcTransport(Transport):
    """Events: "icestatechange" (state), "iceselectedtuplechange" (tuple),
    "dtlsstatechange" (state), "routerclose", "webrtcserverclose"."""

    def __init__(self, channel: Channel, router: Router, transport_id: str, data: dict,
                 app_data: Any, on_close: Callable[[WebRtcTransport], None],
                 webrtc_server: WebRtcServer | None = None) -> None:
        self._ice_role = data.get("iceRole", "controlled")
        self._ice_parameters = data.get("iceParameters")
        self._ice_candidates = data.get("iceCandidates") or []
        self._ice_state = data.get("iceState", "new")
        self._ice_selected_tuple = data.get("iceSelectedTuple")
        self._dtls_parameters = data.get("dtlsParameters")
        self._dtls_state = data.get("dtlsState", "new")
        self._dtls_remote_cert = data.get("dtlsRemoteCert")
        self._webrtc_server = webrtc_server
        super().__init__(channel, router, transport_id, app_data, on_close)

    # -- properties -----------------------------------------------------------------------------

    @property
    def ice_role(self) -> str:
        return self._ice_role

    @property
    def ice_parameters(self) -> dict:
        """{usernameFragment, password, iceLite: True}."""
        return self._ice_parameters

    @property
    def ice_candidates(self) -> list[dict]:
        """[{foundation, priority, address, port, protocol, type: "host", tcpType?}]."""
        return self._ice_candidates

    @property
    def ice_state(self) -> str:
        return self._ice_state

    @property
    def ice_selected_tuple(self) -> dict | None:
        """{localAddress, localPort, remoteIp, remotePort, protocol} once ICE selected one."""
        return self._ice_selected_tuple

    @property
    def dtls_parameters(self) -> dict:
        """{role: "auto", fingerprints: [{algorithm, value}]}."""
        return self._dtls_parameters

    @property
    def dtls_state(self) -> str:
        return self._dtls_state

    @property
    def dtls_remote_cert(self) -> str | None:
        """The remote's certificate (PEM) once DTLS is connected."""
        return self._dtls_remote_cert

    @property
    def webrtc_server(self) -> WebRtcServer | None:
        return self._webrtc_server

    # -- requests -------------------------------------------------------------------------------

    async def connect(self, *, dtls_parameters: dict) -> None:
        """The remote's DTLS parameters (mediasoup-client's transport "connect" event)."""
        self._ensure_open()
        params = validate_dtls_parameters(dtls_parameters)
        result = await self._request(TransportMethod.CONNECT, {"dtlsParameters": params})
        if isinstance(result, dict) and result.get("dtlsLocalRole") in ("client", "server"):
            self._dtls_parameters = {**self._dtls_parameters, "role": result["dtlsLocalRole"]}

    async def restart_ice(self) -> dict:
        """New ICE credentials for the remote (mediasoup-client's transport.restartIce())."""
        result = await self._request(TransportMethod.RESTART_ICE)
        self._ice_parameters = result["iceParameters"]
        return self._ice_parameters

    # -- closing --------------------------------------------------------------------------------

    def _webrtc_server_closed(self) -> None:
        self._closed_elsewhere("webrtcserverclose")

    def _close_children(self) -> None:
        super()._close_children()
        if self._webrtc_server is not None:
            self._webrtc_server._transport_closed(self)

    def _on_notification(self, event: str, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        if event == TransportEvent.ICE_STATE_CHANGE:
            self._ice_state = data.get("iceState", self._ice_state)
            self.emit("icestatechange", self._ice_state)
        elif event == TransportEvent.ICE_SELECTED_TUPLE_CHANGE:
            self._ice_selected_tuple = data.get("iceSelectedTuple")
            self.emit("iceselectedtuplechange", self._ice_selected_tuple)
        elif event == TransportEvent.DTLS_STATE_CHANGE:
            self._dtls_state = data.get("dtlsState", self._dtls_state)
            if self._dtls_state == "connected":
                self._dtls_remote_cert = data.get("dtlsRemoteCert")
            self.emit("dtlsstatechange", self._dtls_state)
        elif event == TransportEvent.WEBRTC_SERVER_CLOSE:
            self._webrtc_server_closed()
        elif event == TransportEvent.TRACE:
            self.emit("trace", data)
        else:
            logger.debug("transport %s: ignored event %s", self._id, event)
