"""Worker-side Router: owns transports, knows every producer of its transports (consumers
may take any of them), and answers router.* requests. It makes producers and consumers for
its transports (`produce` / `consume`), so the transport package never imports them.
Closing it closes its transports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.transport.base import Transport
from relay.transport.pipe import PipeTransport
from relay.transport.plain import PlainTransport
from relay.transport.webrtc import WebRtcTransport
from relay.transport.webrtc_server import WebRtcServer
from worker_proto.errors import ArgumentError, InvalidStateError, UnknownMethodError
from worker_proto.methods import RouterMethod
from worker_proto.validation import require_dict, require_id

from .bitrate_allocation import distribute
from .consumer import Consumer
from .pipe_consumer import PipeConsumer
from .producer import Producer
from .rtp_observer import ActiveSpeakerObserver, AudioLevelObserver
from .simulcast_consumer import SimulcastConsumer

if TYPE_CHECKING:
    from relay.worker.context import WorkerContext


class Router:
    def __init__(self, router_id: str, data: dict, ctx: WorkerContext) -> None:
        if not isinstance(router_id, str) or not router_id:
            raise ArgumentError("routerId must be a non-empty string")
        data = require_dict(data, "data")
        media_codecs = data.get("mediaCodecs") or []
        if not isinstance(media_codecs, list):
            raise ArgumentError("mediaCodecs must be an array")
        self.id = router_id
        self.media_codecs = media_codecs
        self._ctx = ctx
        self.closed = False
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.observers: dict[str, Any] = {}  # rtpObserverId -> audio observer
        ctx.handlers[router_id] = self

    def handle_request(self, method: str, data: dict) -> dict | None:
        if self.closed:
            raise InvalidStateError(f"router {self.id} is closed")
        if method == RouterMethod.CLOSE:
            self.close()
            return None
        if method == RouterMethod.DUMP:
            return self.dump()
        if method == RouterMethod.CREATE_PLAIN_TRANSPORT:
            return self.create_plain_transport(require_dict(data, "data"))
        if method == RouterMethod.CREATE_PIPE_TRANSPORT:
            return self.create_pipe_transport(require_dict(data, "data"))
        if method == RouterMethod.CREATE_WEBRTC_TRANSPORT:
            return self.create_webrtc_transport(require_dict(data, "data"))
        if method in (RouterMethod.CREATE_AUDIO_LEVEL_OBSERVER, RouterMethod.CREATE_ACTIVE_SPEAKER_OBSERVER):
            return self.create_rtp_observer(method, require_dict(data, "data"))
        raise UnknownMethodError(f"a router does not handle {method!r}")

    def create_plain_transport(self, data: dict) -> dict:
        transport_id = require_id(data, "transportId")
        if transport_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {transport_id!r} already exists")
        transport = PlainTransport(transport_id, self, data, self._ctx)
        self._allocate_bitrate(transport)
        self.transports[transport_id] = transport
        return transport.description()

    def create_pipe_transport(self, data: dict) -> dict:
        """A transport to another router (no bandwidth estimation: no bitrate allocation)."""
        transport_id = require_id(data, "transportId")
        if transport_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {transport_id!r} already exists")
        transport = PipeTransport(transport_id, self, data, self._ctx)
        self.transports[transport_id] = transport
        return transport.description()

    def create_webrtc_transport(self, data: dict) -> dict:
        transport_id = require_id(data, "transportId")
        if transport_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {transport_id!r} already exists")
        server = None
        if data.get("webRtcServerId") is not None:
            server_id = require_id(data, "webRtcServerId")
            server = self._ctx.handlers.get(server_id)
            if not isinstance(server, WebRtcServer):
                raise ArgumentError(f"no WebRtcServer with id {server_id!r}")
        transport = WebRtcTransport(transport_id, self, data, self._ctx, server)
        self._allocate_bitrate(transport)
        self.transports[transport_id] = transport
        return transport.description()

    def create_rtp_observer(self, method: str, data: dict) -> None:
        observer_id = require_id(data, "rtpObserverId")
        if observer_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {observer_id!r} already exists")
        if method == RouterMethod.CREATE_AUDIO_LEVEL_OBSERVER:
            observer: AudioLevelObserver | ActiveSpeakerObserver = AudioLevelObserver(self, data, self._ctx)
        else:
            observer = ActiveSpeakerObserver(self, data, self._ctx)
        self.observers[observer_id] = observer
        return None

    def remove_observer(self, observer: Any) -> None:
        self.observers.pop(observer.id, None)

    def _allocate_bitrate(self, transport: Transport) -> None:
        """The transport's bandwidth estimate toward its remote is divided among its
        consumers (relay.worker.bitrate_allocation) each time it changes."""
        estimation = transport.send_estimation

        def on_bitrate(bps: int) -> None:
            estimation.wanted_bps = distribute(list(transport.consumers.values()), bps)

        transport.send_estimation.on_bitrate = on_bitrate

    # -- children -----------------------------------------------------------------------------

    def produce(self, transport: Transport, data: dict) -> Producer:
        """transport.produce: a producer on `transport`, known to every transport's consumers."""
        producer_id = require_id(data, "producerId")
        if producer_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {producer_id!r} already exists")
        producer = Producer(producer_id, transport, data, self._ctx)
        self.producers[producer_id] = producer
        return producer

    def consume(self, transport: Transport, data: dict) -> Consumer | PipeConsumer:
        """transport.consume: a consumer on `transport` of any producer of this router."""
        consumer_id = require_id(data, "consumerId")
        if consumer_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {consumer_id!r} already exists")
        producer_id = require_id(data, "producerId")
        producer = self.producers.get(producer_id)
        if producer is None:
            raise ArgumentError(f"no producer with id {producer_id!r} in this router")
        # A pipe transport carries pipe consumers only, and only it carries them.
        is_pipe = isinstance(transport, PipeTransport)
        if (data.get("type") == "pipe") != is_pipe:
            raise ArgumentError('type "pipe" is the one consumer type of a pipe transport'
                                if is_pipe else 'type "pipe" needs a pipe transport')
        if is_pipe:
            return PipeConsumer(consumer_id, transport, producer, data, self._ctx)
        consumer_class = SimulcastConsumer if data.get("type") == "simulcast" else Consumer
        return consumer_class(consumer_id, transport, producer, data, self._ctx)

    def remove_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)

    def remove_transport(self, transport: Transport) -> None:
        self.transports.pop(transport.id, None)

    def dump(self) -> dict:
        return {
            "id": self.id,
            "mediaCodecs": self.media_codecs,
            "transportIds": list(self.transports),
            "producerIds": list(self.producers),
            # a pipe consumer once, not each of its streams
            "mapProducerIdConsumerIds": {
                pid: list(dict.fromkeys(_handler_id(c) for c in p.consumers))
                for pid, p in self.producers.items()
            },
            "mapConsumerIdProducerId": {
                _handler_id(c): pid for pid, p in self.producers.items() for c in p.consumers
            },
        }

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for observer in list(self.observers.values()):
            observer.close()
        for transport in list(self.transports.values()):
            transport.close()
        self._ctx.handlers.pop(self.id, None)


def _handler_id(consumer: Consumer) -> str:
    """The consumer's id for the controller (a pipe consumer's stream: the pipe consumer's)."""
    return getattr(consumer, "pipe_consumer_id", consumer.id)
