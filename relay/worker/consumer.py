"""Worker-side Consumer (type "simple"): one producer stream re-sent to a transport's remote
with the consumer's own SSRC, payload types, header-extension ids and continuous seq/ts.

The packet path itself is in `Producer.receive` (the fan-out loop); this object holds what
that loop reads (`rewriter`, `extension_table`, `fd`, `addr`, `srtp`, counters) and keeps
the producer's fan-out groups in step with its state: a consumer is *active* (receives
packets) when neither it nor its producer is paused and its transport knows its remote.

Header extensions the consumer did not negotiate are neutralised in place (overwritten with
padding zeros, which receivers skip), not removed: the packet keeps its length and nothing
moves. mediasoup removes them; the effect on a receiver is the same.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from relay.rtp.rewriter import NO_PAYLOAD_TYPE, RtpRewriter
from relay.rtp.rtp_parameters import (
    check_codecs,
    check_encodings,
    check_header_extensions,
    extension_id_table,
    is_media_codec,
    optional_bool,
    optional_int,
    payload_type_table,
    require_dict,
    require_int,
    require_kind,
)
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)
from worker_proto.methods import ConsumerEvent, ConsumerMethod

if TYPE_CHECKING:
    from relay.transport.plain_transport import PlainTransport
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer


class Consumer:
    # Slots: the fan-out loop reads and bumps these for every packet and consumer.
    __slots__ = (
        "id", "kind", "transport", "producer", "_ctx", "closed", "paused", "producer_paused",
        "rtp_parameters", "ssrc", "stream_index", "extension_table", "rewriter",
        "packets_sent", "bytes_sent", "dropped", "ring_drops", "keyframe_requests",
        "fd", "addr", "srtp", "active",
    )

    def __init__(
        self,
        consumer_id: str,
        transport: PlainTransport,
        producer: Producer,
        data: dict,
        ctx: WorkerContext,
    ) -> None:
        kind = require_kind(data)
        if kind != producer.kind:
            raise ArgumentError(f"kind {kind!r} does not match the producer's {producer.kind!r}")
        consumer_type = data.get("type", "simple")
        if consumer_type != "simple":
            raise UnsupportedError(f"consumer type {consumer_type!r} is not supported (only 'simple')")
        rtp_parameters = require_dict(data.get("rtpParameters"), "rtpParameters")
        codecs = check_codecs(rtp_parameters, "rtpParameters")
        extensions = check_header_extensions(rtp_parameters, "rtpParameters")
        encodings = check_encodings(rtp_parameters, "rtpParameters")
        ssrc = require_int(encodings[0], "ssrc", 0, 0xFFFFFFFF, name="rtpParameters.encodings[0].ssrc")
        consumable = data.get("consumableRtpEncodings")
        mapped_ssrc = None
        if consumable is not None:
            if not isinstance(consumable, list) or not consumable:
                raise ArgumentError("consumableRtpEncodings must be a non-empty array")
            first = require_dict(consumable[0], "consumableRtpEncodings[0]")
            mapped_ssrc = optional_int(first, "ssrc", 0, 0xFFFFFFFF, name="consumableRtpEncodings[0].ssrc")
        paused = optional_bool(data, "paused", False)
        if producer.closed:
            raise InvalidStateError(f"producer {producer.id} is closed")
        stream_index = producer.stream_index(mapped_ssrc)
        pt_table = payload_type_table(producer.codecs, producer.mapped_pt, codecs)
        if all(pt == NO_PAYLOAD_TYPE for pt in pt_table):
            raise ArgumentError("rtpParameters.codecs has no codec of the producer")
        media = [c for c in codecs if is_media_codec(c)]

        self.id = consumer_id
        self.kind = kind
        self.transport = transport
        self.producer = producer
        self._ctx = ctx
        self.closed = False
        self.paused = paused
        self.producer_paused = producer.paused
        self.rtp_parameters = rtp_parameters
        self.ssrc = ssrc
        self.stream_index = stream_index
        self.extension_table = extension_id_table(producer.header_extensions, extensions)
        self.rewriter = RtpRewriter(ssrc, pt_table, media[0]["clockRate"])
        self.packets_sent = 0
        self.bytes_sent = 0
        self.dropped = 0  # by the rewriter (codec not taken, reordered across a restart) or SRTP
        self.ring_drops = 0
        self.keyframe_requests = 0
        self.fd, self.addr, self.srtp = transport.route()
        self.active = False

        transport.register_consumer(self)  # raises on a duplicate SSRC, before anything else
        ctx.handlers[consumer_id] = self
        self.active = self._is_active()
        producer.add_consumer(self)
        if self.active:
            self.request_key_frame()  # a video receiver can't start without one

    # -- requests ---------------------------------------------------------------------------

    def handle_request(self, method: str, data: dict) -> Any:
        if self.closed:
            raise InvalidStateError(f"consumer {self.id} is closed")
        if method == ConsumerMethod.CLOSE:
            self.close(notify=None)
            return None
        if method == ConsumerMethod.DUMP:
            return self.dump()
        if method == ConsumerMethod.GET_STATS:
            return self.get_stats()
        if method == ConsumerMethod.PAUSE:
            self.pause()
            return None
        if method == ConsumerMethod.RESUME:
            self.resume()
            return None
        if method == ConsumerMethod.REQUEST_KEY_FRAME:
            self.request_key_frame()
            return None
        raise UnknownMethodError(f"a consumer does not handle {method!r}")

    def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        self._refresh()

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self._refresh():
            self.request_key_frame()

    def request_key_frame(self) -> None:
        """A video consumer asks its producer's sender for a key frame (audio: nothing)."""
        if self.kind == "video" and not self.closed:
            self.keyframe_requests += 1
            self.producer.request_key_frame()

    # -- state changes from the producer / transport -----------------------------------------

    def on_producer_pause(self) -> None:
        self.producer_paused = True
        self._refresh(rebuild=False)  # the producer rebuilds once for all
        self._ctx.notify(self.id, ConsumerEvent.PRODUCER_PAUSE, None)

    def on_producer_resume(self) -> None:
        self.producer_paused = False
        self._refresh(rebuild=False)
        self._ctx.notify(self.id, ConsumerEvent.PRODUCER_RESUME, None)

    def update_route(self) -> None:
        """The transport's remote or SRTP session changed."""
        self.fd, self.addr, self.srtp = self.transport.route()
        if self._refresh():
            self.request_key_frame()

    def _is_active(self) -> bool:
        return not (self.closed or self.paused or self.producer_paused or self.addr is None)

    def _refresh(self, rebuild: bool = True) -> bool:
        """Recompute `active`; on a stop remember where the output got to. True if the
        consumer just became active."""
        was_active = self.active
        self.active = self._is_active()
        if was_active and not self.active:
            self.rewriter.stop(self.producer.streams[self.stream_index])
        if rebuild and was_active != self.active:
            self.producer.rebuild_fanout()
        return self.active and not was_active

    # -- description --------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "id": self.id,
            "producerId": self.producer.id,
            "kind": self.kind,
            "type": "simple",
            "rtpParameters": self.rtp_parameters,
            "paused": self.paused,
            "producerPaused": self.producer_paused,
            "active": self.active,
        }

    def get_stats(self) -> list[dict]:
        return [
            {
                "type": "outbound-rtp",
                "timestamp": int(time.time() * 1000),
                "kind": self.kind,
                "ssrc": self.ssrc,
                "packetCount": self.packets_sent,
                "byteCount": self.bytes_sent,
                "dropped": self.dropped,
                "ringDrops": self.ring_drops,
                "keyFrameRequests": self.keyframe_requests,
                "paused": self.paused,
                "producerPaused": self.producer_paused,
            }
        ]

    # -- closing ------------------------------------------------------------------------------

    def close(self, notify: str | None) -> None:
        """Close; `notify` is the event to send the controller ("producerclose") or None when
        the controller itself asked (or closes its proxy along with the transport)."""
        if self.closed:
            return
        self.closed = True
        self.active = False
        self.producer.remove_consumer(self)
        self.transport.unregister_consumer(self)
        self._ctx.handlers.pop(self.id, None)
        if notify is not None:
            self._ctx.notify(self.id, notify, None)
