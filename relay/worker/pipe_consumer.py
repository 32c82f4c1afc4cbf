"""Worker-side pipe consumer: every encoding of a producer, sent as it is to another router
over a pipe transport (mediasoup's PipeConsumer).

No layer selection and no bandwidth estimation: each producer stream goes out on its own
SSRC (the controller picks them, `rtpParameters.encodings[i]` for
`consumableRtpEncodings[i]`), with the router's payload types and header-extension ids and
continuous sequence numbers; the remote router's pipe producer has these SSRCs as its
encodings. Feedback from the remote router is PLI/FIR (a key frame is asked of the sender),
and NACK answered by RTX when the pipe has RTX.

Each stream is a "lane": a simple `Consumer` of one producer stream, so the fan-out, the
rewriting, key-frame waits, RTCP (SR, RR, NACK, PLI/FIR by the lane's SSRC) and
retransmission are the ones every consumer has. The lanes are not handlers of their own: the
controller sees one consumer (this object), which answers its requests and sends its events
once for all lanes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.worker.rtp_parameters import (
    check_encodings,
    check_header_extensions,
    extension_id_table,
    require_kind,
)
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)
from worker_proto.methods import ConsumerEvent, ConsumerMethod
from worker_proto.validation import optional_bool, require_dict, require_int, require_list

from .consumer import Consumer

# Sender-only extensions a pipe still carries (a subscriber's consumer blanks them): the far
# router's producer sees each encoding's RID, and RTX's repaired RID, as the sender wrote them.
PIPE_KEPT_EXTENSIONS = frozenset({
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
})

if TYPE_CHECKING:
    from relay.transport.base import Transport
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer


class PipeStreamConsumer(Consumer):
    """One producer stream of a pipe consumer (a lane); its events go through the pipe
    consumer."""

    __slots__ = ("pipe", "pipe_consumer_id", "lane")

    def on_producer_pause(self) -> None:
        self.producer_paused = True
        self._refresh(rebuild=False)  # the producer rebuilds once for all
        self.pipe.on_lane_producer_event(self, paused=True)

    def on_producer_resume(self) -> None:
        self.producer_paused = False
        self._refresh(rebuild=False)
        self.pipe.on_lane_producer_event(self, paused=False)

    def _notify_score(self) -> None:
        """Scores are for subscribers; a pipe has none of its own."""

    def close(self, notify: str | None) -> None:
        if self.closed:
            return
        if not self.pipe.closed:  # a lane closes only with its pipe consumer
            self.pipe.close(notify)
            return
        super().close(notify=None)


class PipeConsumer:
    """Handler of one pipe consumer (handler id = its consumerId)."""

    consumer_type = "pipe"

    def __init__(self, consumer_id: str, transport: Transport, producer: Producer, data: dict,
                 ctx: WorkerContext) -> None:
        kind = require_kind(data)
        if kind != producer.kind:
            raise ArgumentError(f"kind {kind!r} does not match the producer's {producer.kind!r}")
        if producer.closed:
            raise InvalidStateError(f"producer {producer.id} is closed")
        rtp_parameters = require_dict(data.get("rtpParameters"), "rtpParameters")
        encodings = check_encodings(rtp_parameters, "rtpParameters")
        extension_table = extension_id_table(
            producer.header_extensions, check_header_extensions(rtp_parameters, "rtpParameters"),
            keep=PIPE_KEPT_EXTENSIONS)
        consumable = require_list(data, "consumableRtpEncodings")
        paused = optional_bool(data, "paused", False)
        if len(consumable) != len(producer.streams) or len(encodings) != len(consumable):
            raise ArgumentError(
                f"a pipe consumer takes every encoding: consumableRtpEncodings and "
                f"rtpParameters.encodings need {len(producer.streams)} entries each")
        streams = []
        for i, entry in enumerate(consumable):
            require_dict(entry, f"consumableRtpEncodings[{i}]")
            streams.append(producer.stream_index(require_int(
                entry, "ssrc", 0, 0xFFFFFFFF, name=f"consumableRtpEncodings[{i}].ssrc")))
        if len(set(streams)) != len(streams):
            raise ArgumentError("consumableRtpEncodings names a producer encoding twice")
        ssrcs = [require_int(e, "ssrc", 0, 0xFFFFFFFF, name=f"rtpParameters.encodings[{i}].ssrc")
                 for i, e in enumerate(encodings)]
        if len(set(ssrcs)) != len(ssrcs):
            raise ArgumentError("rtpParameters.encodings ssrc values are duplicated")
        lane_ids = [f"{consumer_id}#{i}" for i in range(len(encodings))]
        if any(lane_id in ctx.handlers for lane_id in lane_ids):
            raise ArgumentError(f"an object with an id of the form {consumer_id!r}#n exists")

        self.id = consumer_id
        self.kind = kind
        self.transport = transport
        self.producer = producer
        self._ctx = ctx
        self.closed = False
        self.paused = paused
        self.producer_paused = producer.paused
        self.rtp_parameters = rtp_parameters
        self.lanes: list[PipeStreamConsumer] = []
        try:
            for i, (encoding, entry) in enumerate(zip(encodings, consumable, strict=True)):
                lane_data = {
                    "kind": kind, "type": "simple", "paused": paused,
                    "rtpParameters": {**rtp_parameters, "encodings": [encoding]},
                    "consumableRtpEncodings": [entry],
                }
                lane = PipeStreamConsumer.__new__(PipeStreamConsumer)
                lane.pipe = self
                lane.pipe_consumer_id = consumer_id
                lane.lane = i
                Consumer.__init__(lane, lane_ids[i], transport, producer, lane_data, ctx)
                ctx.handlers.pop(lane_ids[i], None)  # requests come to this object
                lane.extension_table = extension_table
                self.lanes.append(lane)
            producer.rebuild_fanout()  # the lanes' groups with their extension table
        except BaseException:
            self.closed = True
            for lane in self.lanes:
                Consumer.close(lane, notify=None)
            raise
        ctx.handlers[consumer_id] = self

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
            self.paused = True
            for lane in self.lanes:
                lane.pause()
            return None
        if method == ConsumerMethod.RESUME:
            self.paused = False
            for lane in self.lanes:
                lane.resume()
            return None
        if method == ConsumerMethod.REQUEST_KEY_FRAME:
            if self.kind == "video":
                self.producer.request_key_frame()
            return None
        if method in (ConsumerMethod.SET_PREFERRED_LAYERS, ConsumerMethod.SET_PRIORITY):
            raise UnsupportedError(f"a pipe consumer forwards every layer ({method} does "
                                   f"not apply)")
        raise UnknownMethodError(f"a consumer does not handle {method!r}")

    # -- from the lanes -----------------------------------------------------------------------

    def on_lane_producer_event(self, lane: PipeStreamConsumer, paused: bool) -> None:
        """The producer paused or resumed: tell the controller once (the first lane)."""
        self.producer_paused = paused
        if lane is self.lanes[0]:
            self._ctx.notify(self.id, ConsumerEvent.PRODUCER_PAUSE if paused
                             else ConsumerEvent.PRODUCER_RESUME, None)

    # -- description --------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "id": self.id,
            "producerId": self.producer.id,
            "kind": self.kind,
            "type": self.consumer_type,
            "rtpParameters": self.rtp_parameters,
            "paused": self.paused,
            "producerPaused": self.producer_paused,
            "streams": [{"ssrc": lane.ssrc, "producerStream": lane.stream_index,
                         "active": lane.active, "waitingForKeyFrame": lane.key_frame_pending}
                        for lane in self.lanes],
        }

    def get_stats(self) -> list[dict]:
        return [stats for lane in self.lanes for stats in lane.get_stats()]

    # -- closing ------------------------------------------------------------------------------

    def close(self, notify: str | None) -> None:
        """Close every lane; `notify` as `Consumer.close` (once, for the pipe consumer)."""
        if self.closed:
            return
        self.closed = True
        for lane in self.lanes:
            lane.close(notify=None)
        self._ctx.handlers.pop(self.id, None)
        if notify is not None:
            self._ctx.notify(self.id, notify, None)
