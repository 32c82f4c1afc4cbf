"""Controller-side proxy of a worker Producer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import InvalidStateError
from worker_proto.methods import ProducerEvent, ProducerMethod

from .channel import Channel

logger = logging.getLogger(__name__)


class Producer(AsyncIOEventEmitter):
    """Media a transport receives. Events: "transportclose"."""

    def __init__(self, channel: Channel, producer_id: str, kind: str, rtp_parameters: dict,
                 producer_type: str, consumable_rtp_parameters: dict, paused: bool,
                 app_data: Any, on_close: Callable[[Producer], None]) -> None:
        super().__init__()
        self._channel = channel
        self._id = producer_id
        self._kind = kind
        self._rtp_parameters = rtp_parameters
        self._type = producer_type
        self._consumable_rtp_parameters = consumable_rtp_parameters
        self._paused = paused
        self._score: list[dict] = []
        self._closed = False
        self._on_close = on_close
        self.app_data = app_data
        channel.add_listener(producer_id, self._on_notification)

    @property
    def id(self) -> str:
        return self._id

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

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"producer {self._id} closed")

    def close(self) -> None:
        """Close the producer; its consumers get "producerclose" from the worker."""
        if self._closed:
            return
        self._closed = True
        self._channel.request_nowait(ProducerMethod.CLOSE, self._id)
        self._finish()

    def _transport_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finish()
        self.emit("transportclose")

    def _finish(self) -> None:
        self._channel.remove_listener(self._id)
        self._on_close(self)

    async def dump(self) -> dict:
        self._ensure_open()
        return await self._channel.request(ProducerMethod.DUMP, self._id)

    async def get_stats(self) -> Any:
        self._ensure_open()
        return await self._channel.request(ProducerMethod.GET_STATS, self._id)

    async def pause(self) -> None:
        self._ensure_open()
        await self._channel.request(ProducerMethod.PAUSE, self._id)
        self._paused = True

    async def resume(self) -> None:
        self._ensure_open()
        await self._channel.request(ProducerMethod.RESUME, self._id)
        self._paused = False

    def _on_notification(self, event: str, data: Any) -> None:
        if event == ProducerEvent.SCORE and isinstance(data, list):
            self._score = data
            self.emit("score", data)
        else:
            logger.debug("producer %s: ignored event %s", self._id, event)
