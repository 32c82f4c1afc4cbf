"""The controller's end of the pipe pair: requests by id, notifications to listeners."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from worker_proto.errors import InvalidStateError, ProtocolError, RelayError, error_from_wire
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

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("relay.worker")

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "error": logging.ERROR}

NotificationListener = Callable[[str, Any], None]  # (event, data)


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
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, request_fd: int, response_fd: int,
                 on_eof: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._request_fd = request_fd
        self._response_fd = response_fd
        self._on_eof_cb = on_eof
        self._decoder = FrameDecoder()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future, str]] = {}
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

    def _send(self, method: str, handler_id: str, data: dict | None) -> tuple[int, asyncio.Future]:
        if self._failure is not None:
            raise self._failure
        writer = self._writer
        if writer is None or writer.is_closing():
            raise InvalidStateError("channel closed")
        request_id = next(self._ids)
        if request_id > MAX_REQUEST_ID:  # never in practice; keeps ids in the documented range
            self._ids = itertools.count(1)
            request_id = next(self._ids)
        frame = encode_frame(encode_message(make_request(request_id, method, handler_id, data)))
        future = self._loop.create_future()
        self._pending[request_id] = (future, method)
        writer.write(frame)
        return request_id, future

    async def request(self, method: str, handler_id: str = "", data: dict | None = None) -> Any:
        """Send a request and wait for its response; the worker's error is raised here."""
        _, future = self._send(method, handler_id, data)
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
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(exc)

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
            logger.debug("response to unknown request %d", request_id)
            return
        future, _method = entry
        if future.done():
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
