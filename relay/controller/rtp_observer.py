"""Controller-side proxies of a router's audio observers: AudioLevelObserver ("volumes",
"silence") and ActiveSpeakerObserver ("dominantspeaker"), both RtpObservers (add_producer,
remove_producer, pause, resume, close; "routerclose" when their router closes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_proto.errors import ArgumentError
from worker_proto.methods import RtpObserverEvent, RtpObserverMethod

from .channel import Channel
from .channel_object import ChannelObject

if TYPE_CHECKING:
    from .producer import Producer

logger = logging.getLogger(__name__)


class RtpObserver(ChannelObject):
    _KIND = "rtpObserver"
    _CLOSE_METHOD = RtpObserverMethod.CLOSE
    _DUMP_METHOD = RtpObserverMethod.DUMP

    def __init__(self, channel: Channel, observer_id: str,
                 get_producer: Callable[[str], Producer | None], app_data: Any,
                 on_close: Callable[[RtpObserver], None]) -> None:
        super().__init__(channel, observer_id, app_data, on_close)
        self._get_producer = get_producer
        self._paused = False
        channel.add_listener(observer_id, self._on_notification)

    @property
    def paused(self) -> bool:
        return self._paused

    def _router_closed(self) -> None:
        self._closed_elsewhere("routerclose")

    async def pause(self) -> None:
        await self._request(RtpObserverMethod.PAUSE)
        self._paused = True

    async def resume(self) -> None:
        await self._request(RtpObserverMethod.RESUME)
        self._paused = False

    async def add_producer(self, *, producer_id: str) -> None:
        self._ensure_open()
        if not isinstance(producer_id, str) or not producer_id:
            raise ArgumentError("producer_id must be a non-empty string")
        await self._request(RtpObserverMethod.ADD_PRODUCER, {"producerId": producer_id})

    async def remove_producer(self, *, producer_id: str) -> None:
        self._ensure_open()
        if not isinstance(producer_id, str) or not producer_id:
            raise ArgumentError("producer_id must be a non-empty string")
        await self._request(RtpObserverMethod.REMOVE_PRODUCER, {"producerId": producer_id})

    def _on_notification(self, event: str, data: Any) -> None:
        logger.debug("rtpObserver %s: ignored event %s", self._id, event)


class AudioLevelObserver(RtpObserver):
    """Events: "volumes" ([{"producer": Producer, "volume": dBov}], loudest first),
    "silence", "routerclose"."""

    def _on_notification(self, event: str, data: Any) -> None:
        if event == RtpObserverEvent.VOLUMES and isinstance(data, list):
            volumes = []
            for entry in data:
                producer = self._get_producer(entry.get("producerId")) if isinstance(entry, dict) else None
                if producer is not None:
                    volumes.append({"producer": producer, "volume": entry.get("volume")})
            if volumes:
                self.emit("volumes", volumes)
        elif event == RtpObserverEvent.SILENCE:
            self.emit("silence")
        else:
            super()._on_notification(event, data)


class ActiveSpeakerObserver(RtpObserver):
    """Events: "dominantspeaker" ({"producer": Producer}), "routerclose"."""

    def _on_notification(self, event: str, data: Any) -> None:
        if event == RtpObserverEvent.DOMINANT_SPEAKER and isinstance(data, dict):
            producer = self._get_producer(data.get("producerId"))
            if producer is not None:
                self.emit("dominantspeaker", {"producer": producer})
        else:
            super()._on_notification(event, data)
