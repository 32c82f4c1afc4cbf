"""Controller-side proxy of a worker Consumer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import InvalidStateError
from worker_proto.methods import ConsumerEvent, ConsumerMethod

from .channel import Channel

logger = logging.getLogger(__name__)


class Consumer(AsyncIOEventEmitter):
    """Media a transport sends. Events: "transportclose", "producerclose", "producerpause",
    "producerresume"."""

    def __init__(self, channel: Channel, consumer_id: str, producer_id: str, kind: str,
                 rtp_parameters: dict, consumer_type: str, paused: bool, producer_paused: bool,
                 app_data: Any, on_close: Callable[[Consumer], None]) -> None:
        super().__init__()
        self._channel = channel
        self._id = consumer_id
        self._producer_id = producer_id
        self._kind = kind
        self._rtp_parameters = rtp_parameters
        self._type = consumer_type
        self._paused = paused
        self._producer_paused = producer_paused
        self._closed = False
        self._on_close = on_close
        self.app_data = app_data
        channel.add_listener(consumer_id, self._on_notification)

    @property
    def id(self) -> str:
        return self._id

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
    def paused(self) -> bool:
        return self._paused

    @property
    def producer_paused(self) -> bool:
        return self._producer_paused

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"consumer {self._id} closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._channel.request_nowait(ConsumerMethod.CLOSE, self._id)
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
        return await self._channel.request(ConsumerMethod.DUMP, self._id)

    async def get_stats(self) -> Any:
        self._ensure_open()
        return await self._channel.request(ConsumerMethod.GET_STATS, self._id)

    async def pause(self) -> None:
        self._ensure_open()
        await self._channel.request(ConsumerMethod.PAUSE, self._id)
        self._paused = True

    async def resume(self) -> None:
        self._ensure_open()
        await self._channel.request(ConsumerMethod.RESUME, self._id)
        self._paused = False

    async def request_key_frame(self) -> None:
        self._ensure_open()
        await self._channel.request(ConsumerMethod.REQUEST_KEY_FRAME, self._id)

    def _on_notification(self, event: str, data: Any) -> None:
        if event == ConsumerEvent.PRODUCER_CLOSE:
            if self._closed:
                return
            self._closed = True  # the worker already closed it: no close request
            self._finish()
            self.emit("producerclose")
        elif event == ConsumerEvent.PRODUCER_PAUSE:
            if not self._producer_paused:
                self._producer_paused = True
                self.emit("producerpause")
        elif event == ConsumerEvent.PRODUCER_RESUME:
            if self._producer_paused:
                self._producer_paused = False
                self.emit("producerresume")
        else:
            logger.debug("consumer %s: ignored event %s", self._id, event)
