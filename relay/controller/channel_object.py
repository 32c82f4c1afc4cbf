"""The skeleton every controller-side proxy of a worker object shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import InvalidStateError

from .channel import Channel


class ChannelObject(AsyncIOEventEmitter):
    """A proxy of the worker object ``id``, reached through ``channel``; ``on_close`` is
    called once, when it closes. Subclasses name their kind (for error messages) and their
    close / dump methods."""

    _KIND = "object"
    _CLOSE_METHOD = ""
    _DUMP_METHOD = ""

    def __init__(self, channel: Channel, object_id: str, app_data: Any,
                 on_close: Callable[[Any], None]) -> None:
        super().__init__()
        self._channel = channel
        self._id = object_id
        self._closed = False
        self._on_close = on_close
        self.app_data = app_data

    @property
    def id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError(f"{self._KIND} {self._id} closed")

    async def _request(self, method: str, data: dict | None = None) -> Any:
        self._ensure_open()
        return await self._channel.request(method, self._id, data)

    async def dump(self) -> dict:
        return await self._request(self._DUMP_METHOD)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send_close()
        self._finish()

    def _send_close(self) -> None:
        self._channel.request_nowait(self._CLOSE_METHOD, self._id)

    def _closed_elsewhere(self, event: str) -> None:
        """Closed on the worker side already (e.g. with its parent): no close request;
        emits ``event``."""
        if self._closed:
            return
        self._closed = True
        self._finish()
        self.emit(event)

    def _finish(self) -> None:
        self._channel.remove_listener(self._id)
        self._close_children()
        self._on_close(self)
        self.emit("@close")  # however it closed (pipe_to_router ties pairs of objects by it)

    def _close_children(self) -> None:
        pass
