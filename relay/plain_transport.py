"""Controller-side proxy of a worker PlainTransport (plain RTP/RTCP over UDP, optional SRTP)."""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import ArgumentError, InvalidStateError, NotFoundError, UnsupportedError
from worker_proto.methods import TransportEvent, TransportMethod

from . import ortc
from .channel import Channel
from .consumer import Consumer
from .producer import Producer

if TYPE_CHECKING:
    from .router import Router

logger = logging.getLogger(__name__)

SRTP_CRYPTO_SUITES = ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80",
                      "AES_CM_128_HMAC_SHA1_32")

_MAX_MID = 100_000_000


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


class PlainTransport(AsyncIOEventEmitter):
    """Events: "routerclose"; "tuple" / "rtcptuple" when comedia learns the remote address."""

    def __init__(self, channel: Channel, router: Router, transport_id: str, data: dict,
                 options: dict, app_data: Any, on_close: Callable[[PlainTransport], None]
                 ) -> None:
        super().__init__()
        self._channel = channel
        self._router = router
        self._id = transport_id
        self._tuple = data.get("tuple")
        self._rtcp_tuple = data.get("rtcpTuple")
        self._srtp_parameters = data.get("srtpParameters")
        self._options = options
        self._closed = False
        self._on_close = on_close
        self._producers: dict[str, Producer] = {}
        self._consumers: dict[str, Consumer] = {}
        self._next_mid = 0
        self._cname_for_producers: str | None = None
        self.app_data = app_data
        channel.add_listener(transport_id, self._on_notification)

    @property
    def id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed

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

    @property
    def producers(self) -> list[Producer]:
        return list(self._producers.values())

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"transport {self._id} closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._channel.request_nowait(TransportMethod.CLOSE, self._id)
        self._finish()

    def _router_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finish()
        self.emit("routerclose")

    def _finish(self) -> None:
        self._channel.remove_listener(self._id)
        for producer in list(self._producers.values()):
            producer._transport_closed()
        for consumer in list(self._consumers.values()):
            consumer._transport_closed()
        self._on_close(self)

    async def dump(self) -> dict:
        self._ensure_open()
        return await self._channel.request(TransportMethod.DUMP, self._id)

    async def get_stats(self) -> Any:
        self._ensure_open()
        return await self._channel.request(TransportMethod.GET_STATS, self._id)

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
        result = await self._channel.request(TransportMethod.CONNECT, self._id, data)
        if isinstance(result, dict):
            self._tuple = result.get("tuple", self._tuple)
            self._rtcp_tuple = result.get("rtcpTuple", self._rtcp_tuple)

    async def produce(self, *, kind: str, rtp_parameters: dict, paused: bool = False,
                      app_data: Any = None) -> Producer:
        """Receive media described by ``rtp_parameters`` (ORTC shape, camelCase keys)."""
        self._ensure_open()
        if kind not in ("audio", "video"):
            raise ArgumentError(f"kind must be 'audio' or 'video', got {kind!r}")
        if not isinstance(paused, bool):
            raise ArgumentError("paused must be a bool")
        params = ortc.validate_rtp_parameters(rtp_parameters)
        if not params["encodings"]:
            raise ArgumentError("rtp_parameters.encodings must not be empty")
        # As mediasoup: producers of one transport share a CNAME; fill it in when missing.
        if params["rtcp"].get("cname"):
            self._cname_for_producers = self._cname_for_producers or params["rtcp"]["cname"]
        else:
            self._cname_for_producers = self._cname_for_producers or uuid.uuid4().hex[:8]
            params["rtcp"]["cname"] = self._cname_for_producers
        caps = self._router.rtp_capabilities
        mapping = ortc.get_producer_rtp_parameters_mapping(params, caps)
        consumable = ortc.get_consumable_rtp_parameters(kind, params, caps, mapping)
        producer_id = str(uuid.uuid4())
        result = await self._channel.request(TransportMethod.PRODUCE, self._id, {
            "producerId": producer_id, "kind": kind, "rtpParameters": params,
            "rtpMapping": mapping, "paused": paused,
        })
        producer_type = result.get("type", "simple") if isinstance(result, dict) else "simple"
        producer = Producer(self._channel, producer_id, kind, params, producer_type, consumable,
                            paused, app_data, on_close=self._producer_closed)
        if self._closed:  # closed while the request was in flight
            producer._transport_closed()
            raise InvalidStateError(f"transport {self._id} closed")
        self._producers[producer_id] = producer
        self._router._add_producer(producer)
        return producer

    async def consume(self, *, producer_id: str, rtp_capabilities: dict, paused: bool = False,
                      enable_rtx: bool | None = None, preferred_layers: dict | None = None,
                      app_data: Any = None) -> Consumer:
        """Send the router's producer ``producer_id`` to a peer with ``rtp_capabilities``.

        ``enable_rtx``: keep sent packets and answer the peer's NACKs (through RTX when its
        capabilities have it); by default on for video, off for audio (as mediasoup).
        A producer with several encodings gives a "simulcast" consumer that forwards one
        spatial layer: ``preferred_layers`` {"spatialLayer": n} (default: the highest)."""
        self._ensure_open()
        if not isinstance(producer_id, str) or not producer_id:
            raise ArgumentError("producer_id must be a non-empty string")
        if not isinstance(paused, bool):
            raise ArgumentError("paused must be a bool")
        producer = self._router._get_producer(producer_id)
        if producer is None:
            raise NotFoundError(f"producer {producer_id!r} not found")
        caps = ortc.validate_rtp_capabilities(rtp_capabilities)
        if not ortc.can_consume(producer.consumable_rtp_parameters, caps):
            raise UnsupportedError(f"cannot consume producer {producer_id}")
        if enable_rtx is None:
            enable_rtx = producer.kind == "video"
        elif not isinstance(enable_rtx, bool):
            raise ArgumentError("enable_rtx must be a bool")
        params = ortc.get_consumer_rtp_parameters(producer.consumable_rtp_parameters, caps,
                                                  enable_rtx=enable_rtx)
        consumer_type = (
            "simulcast" if len(producer.consumable_rtp_parameters["encodings"]) > 1 else "simple"
        )
        if preferred_layers is not None and not isinstance(preferred_layers, dict):
            raise ArgumentError("preferred_layers must be a dict")
        params["mid"] = str(self._next_mid)
        self._next_mid = (self._next_mid + 1) % _MAX_MID
        consumer_id = str(uuid.uuid4())
        request = {
            "consumerId": consumer_id, "producerId": producer_id, "kind": producer.kind,
            "rtpParameters": params, "type": consumer_type,
            "consumableRtpEncodings": producer.consumable_rtp_parameters["encodings"],
            "paused": paused,
        }
        if consumer_type == "simulcast" and preferred_layers is not None:
            request["preferredLayers"] = preferred_layers
        result = await self._channel.request(TransportMethod.CONSUME, self._id, request)
        result = result if isinstance(result, dict) else {}
        consumer = Consumer(self._channel, consumer_id, producer_id, producer.kind, params,
                            consumer_type, bool(result.get("paused", paused)),
                            bool(result.get("producerPaused", producer.paused)), app_data,
                            on_close=self._consumer_closed)
        if self._closed:
            consumer._transport_closed()
            raise InvalidStateError(f"transport {self._id} closed")
        self._consumers[consumer_id] = consumer
        return consumer

    def _producer_closed(self, producer: Producer) -> None:
        self._producers.pop(producer.id, None)
        self._router._remove_producer(producer)

    def _consumer_closed(self, consumer: Consumer) -> None:
        self._consumers.pop(consumer.id, None)

    def _on_notification(self, event: str, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        if event == TransportEvent.TUPLE:
            self._tuple = data.get("tuple")
            self.emit("tuple", self._tuple)
        elif event == TransportEvent.RTCP_TUPLE:
            self._rtcp_tuple = data.get("rtcpTuple")
            self.emit("rtcptuple", self._rtcp_tuple)
        else:
            logger.debug("transport %s: ignored event %s", self._id, event)
