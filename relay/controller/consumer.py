"""Controller-side proxy of a worker Consumer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker_proto.errors import ArgumentError
from worker_proto.methods import ConsumerEvent, ConsumerMethod

from .channel import Channel
from .channel_object import ChannelObject

logger = logging.getLogger(__name__)


class Consumer(ChannelObject):
    """Media a transport sends. Events: "transportclose", "producerclose", "producerpause",
    "producerresume", "score" ({score, producerScore, producerScores}), "layerschange"
    ({spatialLayer, temporalLayer} of a simulcast consumer, or None)."""

    _KIND = "consumer"
    _CLOSE_METHOD = ConsumerMethod.CLOSE
    _DUMP_METHOD = ConsumerMethod.DUMP

    def __init__(self, channel: Channel, consumer_id: str, producer_id: str, kind: str,
                 rtp_parameters: dict, consumer_type: str, paused: bool, producer_paused: bool,
                 app_data: Any, on_close: Callable[[Consumer], None]) -> None:
        super().__init__(channel, consumer_id, app_data, on_close)
        self._producer_id = producer_id
        self._kind = kind
        self._rtp_parameters = rtp_parameters
        self._type = consumer_type
        self._paused = paused
        self._producer_paused = producer_paused
        self._score: dict = {"score": 10, "producerScore": 10, "producerScores": []}
        self._preferred_layers: dict | None = None
        self._current_layers: dict | None = None
        channel.add_listener(consumer_id, self._on_notification)

    @property
    def producer_id(self) -> str:
        return self._producer_id

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def rtp_parameters(self) -> dict:
        return self._rtp_parameters

    @property
    def type(self) -> str:
        return self._type

    @property
    def preferred_layers(self) -> dict | None:
        """{spatialLayer, temporalLayer} a simulcast consumer aims at (None: the highest)."""
        return self._preferred_layers

    @property
    def current_layers(self) -> dict | None:
        """{spatialLayer, temporalLayer} a simulcast consumer forwards now (None: none yet)."""
        return self._current_layers

    async def set_preferred_layers(self, *, spatial_layer: int, temporal_layer: int | None = None) -> None:
        """Switch a simulcast consumer to ``spatial_layer`` on that layer's next key frame."""
        self._ensure_open()
        if not isinstance(spatial_layer, int) or isinstance(spatial_layer, bool) or spatial_layer < 0:
            raise ArgumentError("spatial_layer must be a non-negative integer")
        data: dict = {"spatialLayer": spatial_layer}
        if temporal_layer is not None:
            data["temporalLayer"] = temporal_layer
        result = await self._request(ConsumerMethod.SET_PREFERRED_LAYERS, data)
        self._preferred_layers = result if isinstance(result, dict) else data

    async def set_priority(self, priority: int) -> None:
        """Its share when the transport's available outgoing bitrate is divided among video
        consumers (1–255, default 1; mediasoup's name): a higher priority is served first."""
        self._ensure_open()
        if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 255:
            raise ArgumentError("priority must be an integer in 1..255")
        result = await self._request(ConsumerMethod.SET_PRIORITY, {"priority": priority})
        self._priority = result.get("priority", priority) if isinstance(result, dict) else priority

    @property
    def priority(self) -> int:
        return getattr(self, "_priority", 1)

    @property
    def score(self) -> dict:
        """The latest {score, producerScore, producerScores} (0-10 each)."""
        return self._score

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def producer_paused(self) -> bool:
        return self._producer_paused

    def _transport_closed(self) -> None:
        self._closed_elsewhere("transportclose")

    async def get_stats(self) -> Any:
        return await self._request(ConsumerMethod.GET_STATS)

    async def pause(self) -> None:
        await self._request(ConsumerMethod.PAUSE)
        self._paused = True
        self.emit("@pause")  # internal, as "@close": pipe_to_router follows it across

    async def resume(self) -> None:
        await self._request(ConsumerMethod.RESUME)
        self._paused = False
        self.emit("@resume")

    async def request_key_frame(self) -> None:
        await self._request(ConsumerMethod.REQUEST_KEY_FRAME)

    def _on_notification(self, event: str, data: Any) -> None:
        if event == ConsumerEvent.PRODUCER_CLOSE:
            self._closed_elsewhere("producerclose")  # the worker already closed it
        elif event == ConsumerEvent.PRODUCER_PAUSE:
            if not self._producer_paused:
                self._producer_paused = True
                self.emit("producerpause")
        elif event == ConsumerEvent.PRODUCER_RESUME:
            if self._producer_paused:
                self._producer_paused = False
                self.emit("producerresume")
        elif event == ConsumerEvent.LAYERS_CHANGE:
            self._current_layers = data if isinstance(data, dict) else None
            self.emit("layerschange", self._current_layers)
        elif event == ConsumerEvent.SCORE and isinstance(data, dict):
            self._score = data
            self.emit("score", data)
        else:
            logger.debug("consumer %s: ignored event %s", self._id, event)
