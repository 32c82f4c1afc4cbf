"""Controller-side proxy of a worker Producer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker_proto.methods import ProducerEvent, ProducerMethod

from .channel import Channel
from .channel_object import ChannelObject

logger = logging.getLogger(__name__)


class Producer(ChannelObject):
    """Media a transport receives. Events: "transportclose"."""

    _KIND = "producer"
    _CLOSE_METHOD = ProducerMethod.CLOSE
    _DUMP_METHOD = ProducerMethod.DUMP

    def __init__(self, channel: Channel, producer_id: str, kind: str, rtp_parameters: dict,
                 producer_type: str, consumable_rtp_parameters: dict, paused: bool,
                 app_data: Any, on_close: Callable[[Producer], None]) -> None:
        super().__init__(channel, producer_id, app_data, on_close)
        self._kind = kind
        self._rtp_parameters = rtp_parameters
        self._type = producer_type
        self._consumable_rtp_parameters = consumable_rtp_parameters
        self._paused = paused
        self._score: list[dict] = []
        channel.add_listener(producer_id, self._on_notification)

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
    def consumable_rtp_parameters(self) -> dict:
        """The producer as the router sees it (router payload types, mapped SSRCs)."""
        return self._consumable_rtp_parameters

    @property
    def score(self) -> list[dict]:
        """The latest per-stream scores: [{encodingIdx, ssrc, rid, score (0-10)}]."""
        return self._score

    @property
    def paused(self) -> bool:
        return self._paused

    def close(self) -> None:
        """Close the producer; its consumers get "producerclose" from the worker."""
        super().close()

    def _transport_closed(self) -> None:
        self._closed_elsewhere("transportclose")

    async def get_stats(self) -> Any:
        return await self._request(ProducerMethod.GET_STATS)

    async def pause(self) -> None:
        await self._request(ProducerMethod.PAUSE)
        self._paused = True

    async def resume(self) -> None:
        await self._request(ProducerMethod.RESUME)
        self._paused = False

    def _on_notification(self, event: str, data: Any) -> None:
        if event == ProducerEvent.SCORE and isinstance(data, list):
            self._score = data
            self.emit("score", data)
        else:
            logger.debug("producer %s: ignored event %s", self._id, event)
