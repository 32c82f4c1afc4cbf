"""Controller-side proxy of a worker PlainTransport (plain RTP/RTCP over UDP, optional SRTP)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_proto.errors import ArgumentError
from worker_proto.methods import TransportEvent, TransportMethod

from .channel import Channel
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)

SRTP_CRYPTO_SUITES = ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80",
                      "AES_CM_128_HMAC_SHA1_32")


def validate_ip(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be an IP address string")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ArgumentError(f"{what} is not a valid IP address: {value!r}") from None
    return value


def validate_port(value: Any, what: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ArgumentError(f"{what} must be an integer in 1..65535")
    return value


def validate_srtp_parameters(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ArgumentError("srtp_parameters must be a dict {cryptoSuite, keyBase64}")
    suite = value.get("cryptoSuite")
    if suite not in SRTP_CRYPTO_SUITES:
        raise ArgumentError(f"srtp_parameters.cryptoSuite must be one of {SRTP_CRYPTO_SUITES}")
    if not isinstance(value.get("keyBase64"), str) or not value["keyBase64"]:
        raise ArgumentError("srtp_parameters.keyBase64 must be a non-empty string")
    return {"cryptoSuite": suite, "keyBase64": value["keyBase64"]}


class PlainTransport(Transport):
    """Events: "routerclose"; "tuple" / "rtcptuple" when comedia learns the remote address."""

    def __init__(self, channel: Channel, router: Router, transport_id: str, data: dict,
                 options: dict, app_data: Any, on_close: Callable[[PlainTransport], None]
                 ) -> None:
        self._tuple = data.get("tuple")
        self._rtcp_tuple = data.get("rtcpTuple")
        self._srtp_parameters = data.get("srtpParameters")
        self._options = options
        super().__init__(channel, router, transport_id, app_data, on_close)

    @property
    def tuple(self) -> dict | None:
        """{localIp, localPort, remoteIp?, remotePort?, protocol: "udp"}."""
        return self._tuple

    @property
    def rtcp_tuple(self) -> dict | None:
        """The RTCP tuple when rtcp_mux is off, else None."""
        return self._rtcp_tuple

    @property
    def srtp_parameters(self) -> dict | None:
        """{cryptoSuite, keyBase64}: the key this side encrypts with (give it to the remote)."""
        return self._srtp_parameters

    async def connect(self, *, ip: str | None = None, port: int | None = None,
                      rtcp_port: int | None = None, srtp_parameters: dict | None = None) -> None:
        """Set the remote address (not needed with comedia) and/or the remote's SRTP key."""
        self._ensure_open()
        data = {
            "ip": None if ip is None else validate_ip(ip, "ip"),
            "port": validate_port(port, "port"),
            "rtcpPort": validate_port(rtcp_port, "rtcp_port"),
            "srtpParameters": validate_srtp_parameters(srtp_parameters),
        }
        result = await self._request(TransportMethod.CONNECT, data)
        if isinstance(result, dict):
            self._tuple = result.get("tuple", self._tuple)
            self._rtcp_tuple = result.get("rtcpTuple", self._rtcp_tuple)

    def _on_notification(self, event: str, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        if event == TransportEvent.TUPLE:
            self._tuple = data.get("tuple")
            self.emit("tuple", self._tuple)
        elif event == TransportEvent.RTCP_TUPLE:
            self._rtcp_tuple = data.get("rtcpTuple")
            self.emit("rtcptuple", self._rtcp_tuple)
        elif event == TransportEvent.TRACE:
            self.emit("trace", data)
        else:
            logger.debug("transport %s: ignored event %s", self._id, event)
