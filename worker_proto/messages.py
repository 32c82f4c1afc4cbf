"""The four message kinds, their JSON encoding, and strict parsing of incoming ones.

Every message is a JSON object with a ``kind``:
  request       {kind, id, method, handlerId, data}          controller → worker
  response      {kind, id, ok: true, data}                   worker → controller
                {kind, id, ok: false, error: {type, message}}
  notification  {kind, handlerId, event, data}               worker → controller
  log           {kind, level, logger, message}               worker → controller
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError

try:  # orjson is ~5-10x faster than the stdlib for our messages; the wire format is the same.
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is missing
    _orjson = None

LOG_LEVELS = ("debug", "info", "warn", "error")

# Request ids are JSON integers in [0, MAX_REQUEST_ID] (safe in every JSON implementation).
MAX_REQUEST_ID = 2**53 - 1


def encode_message(message: dict[str, Any]) -> bytes:
    """UTF-8 JSON of ``message``."""
    if _orjson is not None:
        return _orjson.dumps(message)
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def decode_message(payload: bytes) -> dict[str, Any]:
    """The JSON object in ``payload``; ProtocolError if it is not one."""
    try:
        message = _orjson.loads(payload) if _orjson is not None else json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # the last: stdlib json
        raise ProtocolError(f"payload is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"message is a JSON {type(message).__name__}, not an object")
    return message


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    handler_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    id: int | None  # None: the worker could not attribute a bad frame to a request
    ok: bool
    data: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    handler_id: str
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class LogRecord:
    level: str
    logger: str
    message: str


def make_request(request_id: int, method: str, handler_id: str, data: dict | None) -> dict:
    return {"kind": "request", "id": request_id, "method": method, "handlerId": handler_id,
            "data": data}


def make_ok_response(request_id: int, data: Any) -> dict:
    return {"kind": "response", "id": request_id, "ok": True, "data": data}


def make_error_response(request_id: int | None, error: dict[str, str]) -> dict:
    return {"kind": "response", "id": request_id, "ok": False, "error": error}


def make_notification(handler_id: str, event: str, data: Any) -> dict:
    return {"kind": "notification", "handlerId": handler_id, "event": event, "data": data}


def make_log(level: str, logger: str, message: str) -> dict:
    return {"kind": "log", "level": level, "logger": logger, "message": message}


def _is_request_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REQUEST_ID


def request_id_of(message: dict[str, Any]) -> int | None:
    """The id of a (possibly malformed) request, if it has a usable one."""
    value = message.get("id")
    return value if _is_request_id(value) else None


def parse_request(message: dict[str, Any]) -> Request:
    """A Request from a decoded message; ProtocolError naming the first bad field."""
    if message.get("kind") != "request":
        raise ProtocolError(f"expected kind 'request', got {message.get('kind')!r}")
    request_id = message.get("id")
    if not _is_request_id(request_id):
        raise ProtocolError(f"request id must be an integer in [0, 2^53-1], got {request_id!r}")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise ProtocolError(f"request method must be a non-empty string, got {method!r}")
    handler_id = message.get("handlerId")
    if not isinstance(handler_id, str):
        raise ProtocolError(f"request handlerId must be a string, got {handler_id!r}")
    data = message.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise ProtocolError(f"request data must be an object or null, got {type(data).__name__}")
    return Request(request_id, method, handler_id, data)


def parse_worker_message(message: dict[str, Any]) -> Response | Notification | LogRecord:
    """A Response, Notification or LogRecord from a decoded worker message."""
    kind = message.get("kind")
    if kind == "response":
        request_id = message.get("id")
        if request_id is not None and not _is_request_id(request_id):
            raise ProtocolError(f"response id must be an integer or null, got {request_id!r}")
        ok = message.get("ok")
        if ok is True:
            return Response(request_id, True, data=message.get("data"))
        if ok is False:
            error = message.get("error")
            if not isinstance(error, dict):
                raise ProtocolError("error response without an error object")
            return Response(request_id, False, error=error)
        raise ProtocolError(f"response ok must be true or false, got {ok!r}")
    if kind == "notification":
        handler_id = message.get("handlerId")
        event = message.get("event")
        if not isinstance(handler_id, str) or not isinstance(event, str):
            raise ProtocolError("notification needs string handlerId and event")
        return Notification(handler_id, event, message.get("data"))
    if kind == "log":
        level = message.get("level")
        text = message.get("message")
        logger = message.get("logger", "")
        if level not in LOG_LEVELS or not isinstance(text, str) or not isinstance(logger, str):
            raise ProtocolError("log needs a level in debug|info|warn|error and a string message")
        return LogRecord(level, logger, text)
    raise ProtocolError(f"unknown message kind {kind!r}")
