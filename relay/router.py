"""Controller-side proxy of a worker Router."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import ArgumentError, InvalidStateError, RelayError
from worker_proto.methods import RouterMethod

from . import ortc
from .channel import Channel
from .plain_transport import (
    SRTP_CRYPTO_SUITES,
    PlainTransport,
    validate_ip,
    validate_port,
)
from .producer import Producer

logger = logging.getLogger(__name__)


class Router(AsyncIOEventEmitter):
    """Routes producers to consumers across its transports. Events: "workerclose"."""

    def __init__(self, channel: Channel, router_id: str, rtp_capabilities: dict, app_data: Any,
                 on_close: Callable[[Router], None]) -> None:
        super().__init__()
        self._channel = channel
        self._id = router_id
        self._rtp_capabilities = rtp_capabilities
        self._closed = False
        self._on_close = on_close
        self._transports: dict[str, PlainTransport] = {}
        self._producers: dict[str, Producer] = {}
        self.app_data = app_data

    @property
    def id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def rtp_capabilities(self) -> dict:
        """The router's RTP capabilities (mediasoup-client shape)."""
        return self._rtp_capabilities

    @property
    def transports(self) -> list[PlainTransport]:
        return list(self._transports.values())

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"router {self._id} closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._channel.request_nowait(RouterMethod.CLOSE, self._id)
        self._finish()

    def _worker_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finish()
        self.emit("workerclose")

    def _finish(self) -> None:
        for transport in list(self._transports.values()):
            transport._router_closed()
        self._producers.clear()
        self._on_close(self)

    async def dump(self) -> dict:
        self._ensure_open()
        return await self._channel.request(RouterMethod.DUMP, self._id)

    async def create_plain_transport(
        self, *, listen_ip: str = "127.0.0.1", port: int | None = None, rtcp_mux: bool = True,
        comedia: bool = False, enable_srtp: bool = False,
        srtp_crypto_suite: str = "AES_CM_128_HMAC_SHA1_80", app_data: Any = None,
    ) -> PlainTransport:
        """A UDP transport for plain RTP; ``port=None`` takes one from the worker's range."""
        self._ensure_open()
        validate_ip(listen_ip, "listen_ip")
        validate_port(port, "port")
        for name, value in (("rtcp_mux", rtcp_mux), ("comedia", comedia),
                            ("enable_srtp", enable_srtp)):
            if not isinstance(value, bool):
                raise ArgumentError(f"{name} must be a bool")
        if srtp_crypto_suite not in SRTP_CRYPTO_SUITES:
            raise ArgumentError(f"srtp_crypto_suite must be one of {SRTP_CRYPTO_SUITES}")
        options = {"listenIp": listen_ip, "port": port, "rtcpMux": rtcp_mux, "comedia": comedia,
                   "enableSrtp": enable_srtp, "srtpCryptoSuite": srtp_crypto_suite}
        transport_id = str(uuid.uuid4())
        data = await self._channel.request(RouterMethod.CREATE_PLAIN_TRANSPORT, self._id,
                                           {"transportId": transport_id, **options})
        transport = PlainTransport(self._channel, self, transport_id,
                                   data if isinstance(data, dict) else {}, options, app_data,
                                   on_close=self._transport_closed)
        if self._closed:  # closed while the request was in flight
            transport._router_closed()
            raise InvalidStateError(f"router {self._id} closed")
        self._transports[transport_id] = transport
        return transport

    def can_consume(self, *, producer_id: str, rtp_capabilities: dict) -> bool:
        """Whether a peer with ``rtp_capabilities`` can consume producer ``producer_id``."""
        producer = self._producers.get(producer_id)
        if producer is None:
            logger.error("can_consume: producer %r not found", producer_id)
            return False
        try:
            return ortc.can_consume(producer.consumable_rtp_parameters, rtp_capabilities)
        except RelayError as exc:
            logger.error("can_consume: %s", exc)
            return False

    def _transport_closed(self, transport: PlainTransport) -> None:
        self._transports.pop(transport.id, None)

    def _add_producer(self, producer: Producer) -> None:
        self._producers[producer.id] = producer

    def _remove_producer(self, producer: Producer) -> None:
        self._producers.pop(producer.id, None)

    def _get_producer(self, producer_id: str) -> Producer | None:
        return self._producers.get(producer_id)

