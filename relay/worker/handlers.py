"""Worker-level requests (handlerId ""): dump, getResourceUsage, createRouter, close."""

from __future__ import annotations

import inspect
import logging
import os
import resource
from collections.abc import Callable
from typing import Any

from relay.transport.webrtc_server import WebRtcServer
from relay.uring import fanout_core, receive_core
from worker_proto.errors import ArgumentError, InvalidStateError, UnknownMethodError
from worker_proto.methods import RouterMethod, WorkerMethod
from worker_proto.validation import require_id
from worker_proto.version import PROTOCOL_VERSION

from .context import WorkerContext
from .router import Router

logger = logging.getLogger(__name__)


def send_ring_summary(ring: Any) -> dict[str, Any]:
    """The ring's tier and registration result, then everything its stats() reports."""
    summary: dict[str, Any] = {
        "mode": getattr(ring, "mode", None),
        "zeroCopyEnabled": getattr(ring, "zero_copy_enabled", None),
        "registrationErrno": getattr(ring, "registration_errno", None),
    }
    summary.update(ring.stats())
    return summary


def resource_usage() -> dict[str, float | int]:
    """getrusage(RUSAGE_SELF) with mediasoup's key names; times in milliseconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "ru_utime": usage.ru_utime * 1000.0,
        "ru_stime": usage.ru_stime * 1000.0,
        "ru_maxrss": usage.ru_maxrss,
        "ru_ixrss": usage.ru_ixrss,
        "ru_idrss": usage.ru_idrss,
        "ru_isrss": usage.ru_isrss,
        "ru_minflt": usage.ru_minflt,
        "ru_majflt": usage.ru_majflt,
        "ru_nswap": usage.ru_nswap,
        "ru_inblock": usage.ru_inblock,
        "ru_oublock": usage.ru_oublock,
        "ru_msgsnd": usage.ru_msgsnd,
        "ru_msgrcv": usage.ru_msgrcv,
        "ru_nsignals": usage.ru_nsignals,
        "ru_nvcsw": usage.ru_nvcsw,
        "ru_nivcsw": usage.ru_nivcsw,
    }


class WorkerHandler:
    """Answers requests addressed to the worker itself."""

    def __init__(self, ctx: WorkerContext, request_close: Callable[[], None],
                 channel_stats: Callable[[], dict] | None = None) -> None:
        self._ctx = ctx
        self._request_close = request_close
        self._channel_stats = channel_stats
        self._router_ids: list[str] = []

    def router_ids(self) -> list[str]:
        """Routers still alive (a router removes itself from ctx.handlers when it closes)."""
        self._router_ids = [rid for rid in self._router_ids if rid in self._ctx.handlers]
        return list(self._router_ids)

    def handle_request(self, method: str, data: dict) -> dict | None:
        if method == WorkerMethod.DUMP:
            return self.dump()
        if method == WorkerMethod.GET_RESOURCE_USAGE:
            return resource_usage()
        if method == WorkerMethod.CREATE_ROUTER:
            return self.create_router(data)
        if method == WorkerMethod.CLOSE:
            self._request_close()
            return None
        if method == WorkerMethod.CREATE_WEBRTC_SERVER:
            from relay.transport.webrtc_server import create_webrtc_server

            require_id(data, "webRtcServerId")  # bounded before it becomes a handler id
            return create_webrtc_server(data, self._ctx)
        if method == WorkerMethod.CLOSE_WEBRTC_SERVER:
            return self.close_webrtc_server(data)
        raise UnknownMethodError(f"the worker does not handle {method!r}")

    def dump(self) -> dict[str, Any]:
        dump: dict[str, Any] = {
            "pid": os.getpid(),
            "protocolVersion": PROTOCOL_VERSION,
            "routerIds": self.router_ids(),
            "handlerIds": sorted(h for h in self._ctx.handlers if h),
            "settings": dict(self._ctx.settings),
            "sendRing": send_ring_summary(self._ctx.ring),
            # the C fan-out core (relay/uring/fanout_core.c): used, and why not / its libsrtp
            "fanoutCore": {"enabled": fanout_core.ENABLED, "detail": fanout_core.REASON},
            # the C receive core of plain and pipe transports (relay/uring/receive_core.c)
            "receiveCore": {"enabled": receive_core.ENABLED, "detail": receive_core.REASON},
        }
        if self._channel_stats is not None:
            dump["channel"] = self._channel_stats()
        return dump

    def create_router(self, data: dict) -> None:
        router_id = require_id(data, "routerId")
        if router_id in self._ctx.handlers:
            raise InvalidStateError(f"an object with id {router_id!r} already exists")
        media_codecs = data.get("mediaCodecs")
        if not isinstance(media_codecs, list):
            raise ArgumentError("mediaCodecs must be an array")
        for index, codec in enumerate(media_codecs):
            _check_router_codec(index, codec)
        Router(router_id, data, self._ctx)
        if router_id not in self._ctx.handlers:  # the Router registers itself; verify it did
            raise InvalidStateError(f"router {router_id!r} did not register its handler")
        self._router_ids.append(router_id)
        return None

    def close_webrtc_server(self, data: dict) -> None:
        # A non-string id used to reach dict.get() and crash (unhashable): check it first.
        server = self._ctx.handlers.get(require_id(data, "webRtcServerId"))
        if not isinstance(server, WebRtcServer):
            raise ArgumentError("no WebRtcServer with that webRtcServerId")
        server.close()
        return None

    async def close_routers(self) -> None:
        """Close every live router the way the controller would (children close with them)."""
        for router_id in self.router_ids():
            handler = self._ctx.handlers.get(router_id)
            if handler is None:
                continue
            try:
                result = handler.handle_request(RouterMethod.CLOSE, {})
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - closing must go on for the others
                logger.exception("closing router %s failed", router_id)
            self._ctx.handlers.pop(router_id, None)


def _check_router_codec(index: int, codec: Any) -> None:
    """The fields every router codec needs (the controller computes them; trust nothing)."""
    if not isinstance(codec, dict):
        raise ArgumentError(f"mediaCodecs[{index}] must be an object")
    if not isinstance(codec.get("mimeType"), str) or "/" not in codec["mimeType"]:
        raise ArgumentError(f"mediaCodecs[{index}].mimeType must be a 'kind/name' string")
    for key, low, high in (("clockRate", 1, 2**32 - 1), ("preferredPayloadType", 0, 127)):
        value = codec.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ArgumentError(f"mediaCodecs[{index}].{key} must be an integer in {low}..{high}")
