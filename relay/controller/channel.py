"""The controller's end of the pipe pair: requests by id, notifications to listeners."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    ProtocolError,
    RelayError,
    RequestTimeoutError,
    error_from_wire,
)
from worker_proto.framing import FrameDecoder, encode_frame
from worker_proto.messages import (
    MAX_REQUEST_ID,
    LogRecord,
    Notification,
    decode_message,
    encode_message,
    make_request,
    parse_worker_message,
)
from worker_proto.pipe import open_pipe_pair
from worker_proto.validation import brief

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("relay.worker")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "error": logging.ERROR}

NotificationListener = Callable[[str, Any], None]  # (event, data)

# A request's deadline, in seconds, unless the worker or the call sets another. A healthy
# worker answers in milliseconds even under full media load; 15 s is three orders of
# magnitude of headroom (GC pauses, swapping, a burst of creates) yet bounds the wait on a
# stopped or wedged worker. It is mediasoup's value, so code ported from it sees the same.
DEFAULT_REQUEST_TIMEOUT = 15.0
# Added to the channel's timeout per request already pending when one is sent (mediasoup
# does the same): the worker answers in order, so the end of a burst waits for its start.
PENDING_ALLOWANCE = 0.1
# Ids of timed-out requests kept to recognise (and count) their late answers. Ids only grow
# (2^53 of them), so one forgotten here is still never confused with a newer request.
MAX_TIMED_OUT_IDS = 10_000


def check_timeout(value: Any, name: str) -> float:
    """``value`` as a positive, finite number of seconds; ArgumentError naming ``name``."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0
            or not math.isfinite(value)):
        raise ArgumentError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _target(method: str, handler_id: str) -> str:
    """ "worker.dump on the worker" / "router.dump on handler 'abc'" for messages."""
    return f"{method} on handler {brief(handler_id)!r}" if handler_id else f"{method} on the worker"


class _Pending:
    """A request awaiting its response."""

    __slots__ = ("future", "method", "handler_id", "timeout", "timer")

    def __init__(self, future: asyncio.Future, method: str, handler_id: str, timeout: float,
                 timer: asyncio.TimerHandle) -> None:
        self.future = future
        self.method = method
        self.handler_id = handler_id
        self.timeout = timeout
        self.timer = timer


def worker_logger_for(name: str) -> logging.Logger:
    """The controller-side logger of a worker logger: "relay.uring" → "relay.worker.uring"."""
    if name == "relay.worker" or name.startswith("relay.worker."):
        return logging.getLogger(name)
    name = name.removeprefix("relay.")
    return worker_logger.getChild(name) if name else worker_logger


def worker_log(level: str, name: str, message: str) -> None:
    """Log a worker's record (wire level name) on the controller side."""
    worker_logger_for(name).log(_LOG_LEVELS.get(level, logging.ERROR), "%s", message)



class Channel:
    """Sends requests on ``request_fd``, reads responses/notifications/logs on ``response_fd``.

    ``fail_all(exc)`` makes every pending and future request fail with ``exc`` at once; the
    Worker calls it when the process dies or is closed.

    Every request has a deadline (``request_timeout`` plus PENDING_ALLOWANCE per request
    already pending, or a call's own ``timeout``); past it the call raises
    RequestTimeoutError, and the answer, if it ever comes, is dropped and counted in
    ``stats["lateResponses"]``. Ids are never reused, so a late answer cannot be taken for
    another request's.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, request_fd: int, response_fd: int,
                 on_eof: Callable[[], None] | None = None,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self._loop = loop
        self._request_fd = request_fd
        self._response_fd = response_fd
        self._on_eof_cb = on_eof
        self._decoder = FrameDecoder()
        self.request_timeout = check_timeout(request_timeout, "request_timeout")
        self._last_id = 0
        self._pending: dict[int, _Pending] = {}
        # Timed-out request id → what it was, oldest first (bounded by MAX_TIMED_OUT_IDS).
        self._timed_out: dict[int, str] = {}
        self.stats = {"requests": 0, "responses": 0, "timeouts": 0, "lateResponses": 0,
                      "unknownResponses": 0}
        self._listeners: dict[str, NotificationListener] = {}
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._failure: RelayError | None = None
        self._eof = False

    async def open(self) -> None:
        self._reader, self._writer = await open_pipe_pair(
            self._loop, self._response_fd, self._request_fd, self._on_data, self._on_eof)

    # -- requests ---------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def _next_id(self) -> int:
        """A fresh id: counts up; after 2^53 - 1 it wraps, skipping ids that may still answer."""
        while True:
            self._last_id = self._last_id + 1 if self._last_id < MAX_REQUEST_ID else 1
            if self._last_id not in self._pending and self._last_id not in self._timed_out:
                return self._last_id

    def _send(self, method: str, handler_id: str, data: dict | None,
              timeout: float | None = None) -> tuple[int, asyncio.Future]:
        if self._failure is not None:
            raise self._failure
        writer = self._writer
        if writer is None or writer.is_closing():
            raise InvalidStateError("channel closed")
        if timeout is None:
            timeout = self.request_timeout + PENDING_ALLOWANCE * len(self._pending)
        else:
            timeout = check_timeout(timeout, "timeout")
        request_id = self._next_id()
        frame = encode_frame(encode_message(make_request(request_id, method, handler_id, data)))
        future = self._loop.create_future()
        timer = self._loop.call_later(timeout, self._on_timeout, request_id)
        self._pending[request_id] = _Pending(future, method, handler_id, timeout, timer)
        self.stats["requests"] += 1
        writer.write(frame)
        return request_id, future

    async def request(self, method: str, handler_id: str = "", data: dict | None = None, *,
                      timeout: float | None = None) -> Any:
        """Send a request and wait for its response; the worker's error is raised here.

        ``timeout`` (seconds) replaces the channel's deadline for this call; past it the call
        raises RequestTimeoutError.
        """
        _, future = self._send(method, handler_id, data, timeout)
        return await future

    def request_nowait(self, method: str, handler_id: str = "", data: dict | None = None) -> None:
        """Fire a request whose outcome nobody waits for (close() calls); errors are logged."""
        try:
            _, future = self._send(method, handler_id, data)
        except RelayError as exc:
            logger.debug("%s for %r not sent: %s", method, handler_id, exc)
            return
        future.add_done_callback(lambda f: self._log_ignored(f, method, handler_id))

    @staticmethod
    def _log_ignored(future: asyncio.Future, method: str, handler_id: str) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.debug("%s for %r failed: %s", method, handler_id, future.exception())

    def fail_all(self, exc: RelayError) -> None:
        """Fail every pending request with ``exc``; later requests raise it at once."""
        if self._failure is None:
            self._failure = exc
        pending, self._pending = self._pending, {}
        self._timed_out.clear()  # a dead or closed worker answers nothing more
        for entry in pending.values():
            entry.timer.cancel()
            if not entry.future.done():
                entry.future.set_exception(exc)

    def _on_timeout(self, request_id: int) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        self.stats["timeouts"] += 1
        target = _target(entry.method, entry.handler_id)
        self._timed_out[request_id] = target
        if len(self._timed_out) > MAX_TIMED_OUT_IDS:
            del self._timed_out[next(iter(self._timed_out))]
        logger.debug("request %d (%s) timed out after %g s", request_id, target, entry.timeout)
        if not entry.future.done():
            entry.future.set_exception(RequestTimeoutError(
                f"{target}: no response within {entry.timeout:g} s (request id {request_id});"
                " the worker is stopped, stuck or overloaded",
                method=entry.method, handler_id=entry.handler_id, timeout=entry.timeout,
                request_id=request_id))

    def close(self) -> None:
        """Close the request pipe (the worker sees EOF) and stop reading."""
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            self._reader.close()

    # -- notifications ----------------------------------------------------------------------

    def add_listener(self, handler_id: str, listener: NotificationListener) -> None:
        self._listeners[handler_id] = listener

    def remove_listener(self, handler_id: str) -> None:
        self._listeners.pop(handler_id, None)

    # -- incoming ---------------------------------------------------------------------------

    def _on_eof(self) -> None:
        if not self._eof:
            self._eof = True
            if self._on_eof_cb is not None:
                self._on_eof_cb()

    def _on_data(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, ProtocolError):
                logger.warning("bad frame from worker: %s", item)
                continue
            try:
                message = parse_worker_message(decode_message(item))
            except ProtocolError as exc:
                logger.warning("bad message from worker: %s", exc)
                continue
            if isinstance(message, Notification):
                self._on_notification(message)
            elif isinstance(message, LogRecord):
                worker_log(message.level, message.logger, message.message)
            else:
                self._on_response(message.id, message.ok, message.data, message.error)

    def _on_response(self, request_id: int | None, ok: bool, data: Any, error: Any) -> None:
        if request_id is None:  # the worker rejected a frame it could not attribute
            logger.warning("worker rejected a frame: %s", error)
            return
        entry = self._pending.pop(request_id, None)
        if entry is None:
            target = self._timed_out.pop(request_id, None)
            if target is not None:
                self.stats["lateResponses"] += 1
                logger.info("late response to request %d (%s) after its time-out: dropped",
                            request_id, target)
            else:
                self.stats["unknownResponses"] += 1
                logger.debug("response to unknown request %d: dropped", request_id)
            return
        entry.timer.cancel()
        self.stats["responses"] += 1
        future = entry.future
        if future.done():  # the caller was cancelled
            return
        if ok:
            future.set_result(data)
        else:
            future.set_exception(error_from_wire(error))

    def _on_notification(self, notification: Notification) -> None:
        listener = self._listeners.get(notification.handler_id)
        if listener is None:
            logger.debug("notification %s for unknown handler %r", notification.event,
                         notification.handler_id)
            return
        try:
            listener(notification.event, notification.data)
        except Exception:  # noqa: BLE001 - a listener bug must not stop the reader
            logger.exception("listener for %s of %r failed", notification.event,
                             notification.handler_id)
