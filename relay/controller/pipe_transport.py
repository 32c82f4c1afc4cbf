"""Controller-side proxy of a worker PipeTransport: carries producers between two routers
(in two workers of this controller, or on two hosts whose applications exchange the
parameters), as mediasoup's PipeTransport.

    a = await router_a.create_pipe_transport(listen_info={"ip": "127.0.0.1"}, enable_srtp=True)
    b = await router_b.create_pipe_transport(listen_info={"ip": "127.0.0.1"}, enable_srtp=True)
    await a.connect(ip=b.tuple["localAddress"], port=b.tuple["localPort"],
                    srtp_parameters=b.srtp_parameters, batching=b.batching)
    await b.connect(ip=a.tuple["localAddress"], port=a.tuple["localPort"],
                    srtp_parameters=a.srtp_parameters, batching=a.batching)
    pipe_consumer = await a.consume(producer_id=producer.id)
    pipe_producer = await b.produce(id=producer.id, kind=pipe_consumer.kind,
                                    rtp_parameters=pipe_consumer.rtp_parameters,
                                    paused=pipe_consumer.producer_paused)

`router.pipe_to_router()` does all of this for two routers of one controller.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_proto.errors import ArgumentError, InvalidStateError, NotFoundError
from worker_proto.methods import TransportEvent, TransportMethod
from worker_proto.validation import MAX_ID_LENGTH

from . import ortc
from .channel import Channel
from .consumer import Consumer
from .plain_transport import validate_ip, validate_port
from .producer import Producer
from .transport import Transport

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)

PIPE_SRTP_CRYPTO_SUITE = "AEAD_AES_256_GCM"


def validate_listen_info(value: Any) -> dict:
    """{protocol: "udp", ip, announcedAddress?, port?} (mediasoup's TransportListenInfo)."""
    if not isinstance(value, dict):
        raise ArgumentError("listen_info must be a dict {ip, port?, announcedAddress?}")
    protocol = value.get("protocol", "udp")
    if protocol != "udp":
        raise ArgumentError('listen_info.protocol must be "udp" (a pipe is UDP only)')
    announced = value.get("announcedAddress")
    if announced is not None and (not isinstance(announced, str) or not announced):
        raise ArgumentError("listen_info.announcedAddress must be a non-empty string")
    return {"protocol": "udp", "ip": validate_ip(value.get("ip"), "listen_info.ip"),
            "announcedAddress": announced,
            "port": validate_port(value.get("port"), "listen_info.port")}


def validate_pipe_srtp_parameters(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ArgumentError("srtp_parameters must be a dict {cryptoSuite, keyBase64}")
    if value.get("cryptoSuite") != PIPE_SRTP_CRYPTO_SUITE:
        raise ArgumentError(f"srtp_parameters.cryptoSuite must be {PIPE_SRTP_CRYPTO_SUITE}")
    if not isinstance(value.get("keyBase64"), str) or not value["keyBase64"]:
        raise ArgumentError("srtp_parameters.keyBase64 must be a non-empty string")
    return {"cryptoSuite": PIPE_SRTP_CRYPTO_SUITE, "keyBase64": value["keyBase64"]}


class PipeTransport(Transport):
    """Events: "routerclose" (and "@close" however it closes)."""

    def __init__(self, channel: Channel, router: Router, transport_id: str, data: dict,
                 app_data: Any, on_close: Callable[[PipeTransport], None]) -> None:
        self._tuple = data.get("tuple")
        self._srtp_parameters = data.get("srtpParameters")
        self._rtx = bool(data.get("rtx", False))
        self._batching = bool(data.get("batching", False))
        super().__init__(channel, router, transport_id, app_data, on_close)

    @property
    def tuple(self) -> dict | None:
        """{localAddress, localIp, localPort, remoteIp?, remotePort?, protocol: "udp"}."""
        return self._tuple

    @property
    def srtp_parameters(self) -> dict | None:
        """{cryptoSuite: "AEAD_AES_256_GCM", keyBase64}: the key this side encrypts with
        (give it to the other side's connect()); None without SRTP."""
        return self._srtp_parameters

    @property
    def rtx(self) -> bool:
        """Whether its pipe consumers answer NACKs with RTX (enable_rtx)."""
        return self._rtx

    @property
    def batching(self) -> bool:
        """Whether it takes several packets per datagram (enable_batching): give it to the
        other side's connect()."""
        return self._batching

    async def connect(self, *, ip: str, port: int, srtp_parameters: dict | None = None,
                      batching: bool = False) -> None:
        """The other pipe transport's address (its tuple's localAddress and localPort),
        with SRTP its srtp_parameters, and its ``batching`` (False for a mediasoup peer):
        this side sends batched datagrams when both sides enabled batching."""
        self._ensure_open()
        if not isinstance(batching, bool):
            raise ArgumentError("batching must be a bool")
        data = {"ip": validate_ip(ip, "ip"), "port": validate_port(port, "port", False),
                "srtpParameters": validate_pipe_srtp_parameters(srtp_parameters),
                "batching": batching}
        result = await self._request(TransportMethod.CONNECT, data)
        if isinstance(result, dict):
            self._tuple = result.get("tuple", self._tuple)

    async def produce(self, *, id: str, kind: str, rtp_parameters: dict,  # noqa: A002
                      paused: bool = False, app_data: Any = None) -> Producer:
        """Re-create, with the same ``id``, a producer of another router whose pipe
        consumer sends to this transport (``rtp_parameters``: that consumer's)."""
        if not isinstance(id, str) or not id or len(id) > MAX_ID_LENGTH:
            raise ArgumentError(f"id must be a non-empty string of at most {MAX_ID_LENGTH} "
                                "characters")
        return await self._produce(id, kind, rtp_parameters, paused, app_data)

    async def consume(self, *, producer_id: str,  # type: ignore[override]
                      app_data: Any = None) -> Consumer:
        """A pipe consumer of the router's producer ``producer_id``: every encoding, fresh
        SSRCs, for the router at the other end."""
        self._ensure_open()
        if not isinstance(producer_id, str) or not producer_id:
            raise ArgumentError("producer_id must be a non-empty string")
        producer = self._router._get_producer(producer_id)
        if producer is None:
            raise NotFoundError(f"producer {producer_id!r} not found")
        consumable = producer.consumable_rtp_parameters
        params = ortc.get_pipe_consumer_rtp_parameters(consumable, enable_rtx=self._rtx)
        consumer_id = str(uuid.uuid4())
        result = await self._channel.request(TransportMethod.CONSUME, self._id, {
            "consumerId": consumer_id, "producerId": producer_id, "kind": producer.kind,
            "rtpParameters": params, "type": "pipe",
            "consumableRtpEncodings": consumable["encodings"], "paused": False,
        })
        result = result if isinstance(result, dict) else {}
        consumer = Consumer(self._channel, consumer_id, producer_id, producer.kind, params,
                            "pipe", False, bool(result.get("producerPaused", producer.paused)),
                            app_data, on_close=self._consumer_closed)
        if self._closed:
            consumer._transport_closed()
            raise InvalidStateError(f"transport {self._id} closed")
        self._consumers[consumer_id] = consumer
        return consumer

    def _on_notification(self, event: str, data: Any) -> None:
        if event == TransportEvent.TRACE:
            self.emit("trace", data)
        else:
            logger.debug("pipe transport %s: ignored event %s", self._id, event)
