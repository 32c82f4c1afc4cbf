"""Router-level RTP observers of audio producers (mediasoup's AudioLevelObserver and
ActiveSpeakerObserver), fed from the ssrc-audio-level header extension (RFC 6464).

A producer added to an observer hands it each inbound packet's level (only while the producer
is not paused, and only if the producer negotiated the extension); the observer's timer ends
an interval every `interval` and notifies the controller:
- AudioLevelObserver: "volumes" [{producerId, volume}] loudest first (at most `maxEntries`,
  at or above `threshold` dBov), or one "silence" when they stop (`AudioLevelObserverCore`);
- ActiveSpeakerObserver: "dominantspeaker" {producerId} when it changes (`ActiveSpeakerCore`).
Paused observers take no levels and send nothing. Handler id = rtpObserverId.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.rtp.audio_level import ActiveSpeakerCore, AudioLevelObserverCore
from worker_proto.errors import ArgumentError, InvalidStateError, UnknownMethodError
from worker_proto.methods import RtpObserverEvent, RtpObserverMethod
from worker_proto.validation import optional_int, require_id

if TYPE_CHECKING:
    from relay.worker.context import WorkerContext
    from relay.worker.producer import Producer
    from relay.worker.router import Router

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


class RtpObserver:
    """What both observers share: producers, pause/resume, the interval timer, requests."""

    def __init__(self, observer_id: str, router: Router, interval_ms: int, ctx: WorkerContext) -> None:
        self.id = observer_id
        self.router = router
        self.interval = interval_ms / 1000
        self._ctx = ctx
        self.closed = False
        self.paused = False
        self.producers: dict[str, Producer] = {}
        self._timer: Any = ctx.loop.call_later(self.interval, self._on_timer)
        ctx.handlers[observer_id] = self

    def handle_request(self, method: str, data: dict) -> dict | None:
        if self.closed:
            raise InvalidStateError(f"rtpObserver {self.id} is closed")
        if method == RtpObserverMethod.CLOSE:
            self.close()
            return None
        if method == RtpObserverMethod.PAUSE:
            self.pause()
            return None
        if method == RtpObserverMethod.RESUME:
            self.resume()
            return None
        if method == RtpObserverMethod.ADD_PRODUCER:
            self.add_producer(self._producer(data))
            return None
        if method == RtpObserverMethod.REMOVE_PRODUCER:
            producer = self.producers.get(require_id(data or {}, "producerId"))
            if producer is not None:
                self.remove_producer(producer)
            return None
        if method == RtpObserverMethod.DUMP:
            return {"id": self.id, "paused": self.paused, "producerIds": list(self.producers)}
        raise UnknownMethodError(f"an rtpObserver does not handle {method!r}")

    def _producer(self, data: dict) -> Producer:
        producer_id = require_id(data or {}, "producerId")
        producer = self.router.producers.get(producer_id)
        if producer is None:
            raise ArgumentError(f"no producer with id {producer_id!r} in this router")
        if producer.kind != "audio":
            raise ArgumentError(f"producer {producer_id} is not an audio producer")
        return producer

    def add_producer(self, producer: Producer) -> None:
        if producer.id in self.producers:
            return
        self.producers[producer.id] = producer
        self._core_add(producer.id)
        producer.add_level_observer(self)

    def remove_producer(self, producer: Producer) -> None:
        if self.producers.pop(producer.id, None) is None:
            return
        self._core_remove(producer.id)
        producer.remove_level_observer(self)

    def on_level(self, producer_id: str, level: int, voice: bool) -> None:
        if not self.paused:
            self._core_level(producer_id, level, voice)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        self._on_interval()
        self._timer = self._ctx.loop.call_later(self.interval, self._on_timer)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for producer in list(self.producers.values()):
            producer.remove_level_observer(self)
        self.producers.clear()
        self.router.remove_observer(self)
        self._ctx.handlers.pop(self.id, None)

    # -- what each observer does ------------------------------------------------------------

    def _core_add(self, producer_id: str) -> None:
        raise NotImplementedError

    def _core_remove(self, producer_id: str) -> None:
        raise NotImplementedError

    def _core_level(self, producer_id: str, level: int, voice: bool) -> None:
        raise NotImplementedError

    def _on_interval(self) -> None:
        raise NotImplementedError


class AudioLevelObserver(RtpObserver):
    def __init__(self, router: Router, data: dict, ctx: WorkerContext) -> None:
        observer_id = require_id(data, "rtpObserverId")
        max_entries = optional_int(data, "maxEntries", 1, 10_000) or 1
        threshold = optional_int(data, "threshold", -127, 0)
        interval = optional_int(data, "interval", 250, 100_000)
        self.core = AudioLevelObserverCore(
            max_entries, -80 if threshold is None else threshold, 1.0
        )
        super().__init__(observer_id, router, 1000 if interval is None else interval, ctx)

    def _core_add(self, producer_id: str) -> None:
        self.core.add_producer(producer_id)

    def _core_remove(self, producer_id: str) -> None:
        self.core.remove_producer(producer_id)

    def _core_level(self, producer_id: str, level: int, voice: bool) -> None:
        self.core.on_level(producer_id, level, voice)

    def pause(self) -> None:
        super().pause()
        self.core.pause()

    def resume(self) -> None:
        super().resume()
        self.core.resume()

    def _on_interval(self) -> None:
        event = self.core.on_interval()
        if event is None:
            return
        if event.name == "volumes":
            self._ctx.notify(self.id, RtpObserverEvent.VOLUMES, [
                {"producerId": v.producer_id, "volume": v.volume} for v in event.volumes
            ])
        else:
            self._ctx.notify(self.id, RtpObserverEvent.SILENCE, None)


class ActiveSpeakerObserver(RtpObserver):
    def __init__(self, router: Router, data: dict, ctx: WorkerContext) -> None:
        observer_id = require_id(data, "rtpObserverId")
        interval = optional_int(data, "interval", 100, 100_000)
        interval = 300 if interval is None else interval
        self.core = ActiveSpeakerCore(interval / 1000)
        super().__init__(observer_id, router, interval, ctx)

    def _core_add(self, producer_id: str) -> None:
        self.core.add_producer(producer_id)

    def _core_remove(self, producer_id: str) -> None:
        self.core.remove_producer(producer_id)

    def _core_level(self, producer_id: str, level: int, voice: bool) -> None:
        self.core.on_level(producer_id, level, voice)

    def _on_interval(self) -> None:
        if self.paused:
            return
        dominant = self.core.on_interval()
        if dominant is not None:
            self._ctx.notify(self.id, RtpObserverEvent.DOMINANT_SPEAKER, {"producerId": dominant})
