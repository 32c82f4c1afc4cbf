"""Worker-side Router: owns transports, knows every producer of its transports (consumers
may take any of them), and answers router.* requests. Closing it closes its transports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay.rtp.rtp_parameters import require_dict, require_str
from relay.transport.plain_transport import PlainTransport
from worker_proto.errors import ArgumentError, InvalidStateError, UnknownMethodError
from worker_proto.methods import RouterMethod

if TYPE_CHECKING:
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer


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
        self.transports: dict[str, PlainTransport] = {}
        self.producers: dict[str, Producer] = {}
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
        raise UnknownMethodError(f"a router does not handle {method!r}")

    def create_plain_transport(self, data: dict) -> dict:
        transport_id = require_str(data, "transportId")
        if transport_id in self._ctx.handlers:
            raise ArgumentError(f"an object with id {transport_id!r} already exists")
        transport = PlainTransport(transport_id, self, data, self._ctx)
        self.transports[transport_id] = transport
        return transport.description()

    # -- children -----------------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer

    def remove_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)

    def remove_transport(self, transport: PlainTransport) -> None:
        self.transports.pop(transport.id, None)

    def dump(self) -> dict:
        return {
            "id": self.id,
            "mediaCodecs": self.media_codecs,
            "transportIds": list(self.transports),
            "producerIds": list(self.producers),
            "mapProducerIdConsumerIds": {
                pid: [c.id for c in p.consumers] for pid, p in self.producers.items()
            },
            "mapConsumerIdProducerId": {
                c.id: pid for pid, p in self.producers.items() for c in p.consumers
            },
        }

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for transport in list(self.transports.values()):
            transport.close()
        self._ctx.handlers.pop(self.id, None)
