"""The worker's end of the pipe pair: read requests, dispatch by handlerId, write answers."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from worker_proto.errors import (
    NotFoundError,
    ProtocolError,
    RelayError,
    UnknownMethodError,
    error_to_wire,
)
from worker_proto.framing import FrameDecoder, encode_frame
from worker_proto.messages import (
    decode_message,
    encode_message,
    make_error_response,
    make_log,
    make_notification,
    make_ok_response,
    parse_request,
    request_id_of,
)
from worker_proto.methods import ALL_METHODS
from worker_proto.pipe import open_pipe_pair
from worker_proto.validation import brief, check_request_data

from .context import RequestHandler

logger = logging.getLogger(__name__)

# A controller that stops reading must not make the worker's memory grow without bound.
# Past this much unsent output, logs are dropped (and counted)...
MAX_BUFFERED_LOG_BYTES = 8 * 1024 * 1024
# ...past this, notifications too (they report state a dump can still tell)...
MAX_BUFFERED_NOTIFICATION_BYTES = 16 * 1024 * 1024
# ...and responses are never dropped (a caller waits for each), but past this hard limit
# (room for 16 maximal frames) the worker gives up on its controller: it closes the channel,
# says why on stderr and exits, which the controller sees as the worker's death.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024


class WorkerChannel:
    """Requests in on ``request_fd``; responses, notifications and logs out on ``response_fd``.

    ``handlers`` is the shared handlerId → object map (WorkerContext.handlers). A handler
    that raises gets an error response; the worker never dies of a request.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        request_fd: int,
        response_fd: int,
        handlers: dict[str, RequestHandler],
        on_eof: Callable[[], None],
        *,
        max_buffered_log_bytes: int = MAX_BUFFERED_LOG_BYTES,
        max_buffered_notification_bytes: int = MAX_BUFFERED_NOTIFICATION_BYTES,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self._loop = loop
        self._request_fd = request_fd
        self._response_fd = response_fd
        self._handlers = handlers
        self._on_eof_cb = on_eof
        self._decoder = FrameDecoder()
        self._reader: asyncio.ReadTransport | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._eof = False
        self._tasks: set[asyncio.Task] = set()
        self._max_log_bytes = max_buffered_log_bytes
        self._max_notification_bytes = max_buffered_notification_bytes
        self._max_bytes = max_buffered_bytes
        self.overflowed = False  # closed because the controller stopped reading
        self.stats = {"requests": 0, "errors": 0, "badFrames": 0, "droppedLogs": 0,
                      "droppedNotifications": 0}

    async def open(self) -> None:
        self._reader, self._writer = await open_pipe_pair(
            self._loop, self._request_fd, self._response_fd, self._on_data, self._on_eof)

    # -- outgoing ---------------------------------------------------------------------------

    def _write(self, message: dict) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        try:
            frame = encode_frame(encode_message(message))
        except RelayError as exc:  # oversized: say so instead of sending a frame nobody reads
            logger.error("dropping outgoing %s: %s", message.get("kind"), exc)
            if message.get("kind") == "response":
                self._write(make_error_response(message.get("id"), error_to_wire(exc)))
            return False
        if writer.get_write_buffer_size() + len(frame) > self._max_bytes:
            self._overflow(writer)
            return False
        writer.write(frame)
        return True

    def _overflow(self, writer: asyncio.WriteTransport) -> None:
        """The controller has stopped reading even its responses: give up on it."""
        buffered = writer.get_write_buffer_size()
        self.overflowed = True
        writer.abort()  # drop the backlog: nobody reads it; the log below now goes to stderr
        if self._reader is not None:
            self._reader.close()
        logger.error("the controller has not read %d bytes of output (limit %d): closing the "
                     "channel; the worker exits", buffered, self._max_bytes)
        self._on_eof()  # the same way out as a controller that closed its end

    def _buffered(self) -> int:
        writer = self._writer
        return 0 if writer is None else writer.get_write_buffer_size()

    def notify(self, handler_id: str, event: str, data: dict | None = None) -> None:
        if self._buffered() > self._max_notification_bytes:
            self.stats["droppedNotifications"] += 1
            return
        self._write(make_notification(handler_id, event, data))

    def log(self, level: str, logger_name: str, message: str) -> None:
        if self._buffered() > self._max_log_bytes:
            self.stats["droppedLogs"] += 1
            return
        self._write(make_log(level, logger_name, message))

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until everything written has reached the pipe."""
        writer = self._writer
        deadline = self._loop.time() + timeout
        while (
            writer is not None
            and not writer.is_closing()
            and writer.get_write_buffer_size()
            and self._loop.time() < deadline
        ):
            await asyncio.sleep(0.005)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._writer is not None:
            self._writer.close()

    # -- incoming ---------------------------------------------------------------------------

    def _on_eof(self) -> None:
        if not self._eof:
            self._eof = True
            self._on_eof_cb()

    def _on_data(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, ProtocolError):
                self._reject(None, item)
            else:
                self._on_frame(item)

    def _reject(self, request_id: int | None, exc: BaseException) -> None:
        self.stats["badFrames" if request_id is None else "errors"] += 1
        logger.warning("rejected request %s: %s", request_id, exc)
        self._write(make_error_response(request_id, error_to_wire(exc)))

    def _on_frame(self, payload: bytes) -> None:
        try:
            message = decode_message(payload)
        except ProtocolError as exc:
            self._reject(None, exc)
            return
        try:
            request = parse_request(message)
        except ProtocolError as exc:
            self._reject(request_id_of(message), exc)
            return
        self.stats["requests"] += 1
        request_id = request.id
        try:
            if request.method not in ALL_METHODS:
                raise UnknownMethodError(f"unknown method {brief(request.method)!r}")
            handler = self._handlers.get(request.handler_id)
            if handler is None:
                raise NotFoundError(
                    f"no handler with id {brief(request.handler_id)!r} (method {request.method})"
                )
            # Bounded depth and string sizes before any handler keeps a part of it.
            check_request_data(request.data, payload)
            result = handler.handle_request(request.method, request.data)
        except Exception as exc:  # noqa: BLE001 - any handler bug becomes an error response
            self._answer_error(request_id, request.method, exc)
            return
        if inspect.isawaitable(result):
            task = self._loop.create_task(self._answer_later(request_id, request.method, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._answer(request_id, result)

    async def _answer_later(self, request_id: int, method: str, awaitable: Any) -> None:
        try:
            result = await awaitable
        except Exception as exc:  # noqa: BLE001
            self._answer_error(request_id, method, exc)
            return
        self._answer(request_id, result)

    def _answer(self, request_id: int, result: Any) -> None:
        try:
            written = self._write(make_ok_response(request_id, result))
        except Exception as exc:  # noqa: BLE001 - e.g. a result that is not JSON-serialisable
            self._answer_error(request_id, "?", exc)
            return
        if not written:
            logger.debug("response %d not sent: channel closed", request_id)

    def _answer_error(self, request_id: int, method: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        if isinstance(exc, RelayError):
            logger.debug("request %d (%s) failed: %r", request_id, method, exc)
        else:  # not raised on purpose: keep the traceback for whoever debugs it
            logger.error("request %d (%s) crashed", request_id, method, exc_info=exc)
        self._write(make_error_response(request_id, error_to_wire(exc)))

    async def wait_pending(self, timeout: float = 2.0) -> None:
        """Let in-flight async requests finish (bounded) before shutting down."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
