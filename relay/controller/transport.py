"""What PlainTransport and WebRtcTransport share: produce(), consume(), their producers and
consumers, get_stats(), dump() and closing (their producers and consumers close with them)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_proto.errors import ArgumentError, InvalidStateError, NotFoundError, UnsupportedError
from worker_proto.methods import TransportMethod

from . import ortc
from .channel import Channel
from .channel_object import ChannelObject
from .consumer import Consumer
from .producer import Producer

if TYPE_CHECKING:
    from .router import Router

_MAX_MID = 100_000_000


class Transport(ChannelObject):
    """Base of PlainTransport and WebRtcTransport (connect() and events are theirs)."""

    _KIND = "transport"
    _CLOSE_METHOD = TransportMethod.CLOSE
    _DUMP_METHOD = TransportMethod.DUMP

    def __init__(self, channel: Channel, router: Router, transport_id: str, app_data: Any,
                 on_close: Callable[[Any], None]) -> None:
        super().__init__(channel, transport_id, app_data, on_close)
        self._router = router
        self._producers: dict[str, Producer] = {}
        self._consumers: dict[str, Consumer] = {}
        self._next_mid = 0
        self._cname_for_producers: str | None = None
        channel.add_listener(transport_id, self._on_notification)

    @property
    def producers(self) -> list[Producer]:
        return list(self._producers.values())

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    def _router_closed(self) -> None:
        self._closed_elsewhere("routerclose")

    def _close_children(self) -> None:
        for producer in list(self._producers.values()):
            producer._transport_closed()
        for consumer in list(self._consumers.values()):
            consumer._transport_closed()

    async def get_stats(self) -> Any:
        return await self._request(TransportMethod.GET_STATS)

    async def set_max_outgoing_bitrate(self, bitrate: int | None) -> None:
        """Cap the send-side bandwidth estimate toward the remote (bits/s; None or 0: no
        cap), and so what its video consumers are given (mediasoup's name)."""
        if bitrate is not None and (not isinstance(bitrate, int) or isinstance(bitrate, bool)
                                    or bitrate < 0):
            raise ArgumentError("bitrate must be a non-negative integer or None")
        await self._request(TransportMethod.SET_MAX_OUTGOING_BITRATE, {"bitrate": bitrate or None})

    async def enable_trace_event(self, types: list[str]) -> None:
        """Emit "trace" events of these types: "bwe" (each estimate update: the available
        outgoing bitrate and the estimator's state)."""
        if not isinstance(types, list) or not all(t in ("bwe",) for t in types):
            raise ArgumentError('types must be a list of "bwe"')
        await self._request(TransportMethod.ENABLE_TRACE_EVENT, {"types": types})

    async def set_max_incoming_bitrate(self, bitrate: int | None) -> None:
        """Cap what relay's congestion feedback (transport-cc / REMB) lets the remote sender
        send on this transport, in bits/s; None or 0 lifts the cap (mediasoup's name)."""
        if bitrate is not None and (not isinstance(bitrate, int) or isinstance(bitrate, bool)
                                    or bitrate < 0):
            raise ArgumentError("bitrate must be a non-negative integer or None")
        await self._request(TransportMethod.SET_MAX_INCOMING_BITRATE, {"bitrate": bitrate or None})

    async def produce(self, *, kind: str, rtp_parameters: dict, paused: bool = False,
                      app_data: Any = None) -> Producer:
        """Receive media described by ``rtp_parameters`` (ORTC shape, camelCase keys)."""
        return await self._produce(str(uuid.uuid4()), kind, rtp_parameters, paused, app_data)

    async def _produce(self, producer_id: str, kind: str, rtp_parameters: dict, paused: bool,
                       app_data: Any) -> Producer:
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
        raise NotImplementedError
