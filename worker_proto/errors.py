"""The one error hierarchy shared by controller and worker, carried over the pipe by name.

A worker-side exception travels as ``{"type": <class name>, "message": <str>}`` and is raised
again on the controller side as the class of that name (``RelayError`` for unknown names).
"""

from __future__ import annotations

import json


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class ArgumentError(RelayError, TypeError):
    """A bad argument: wrong type, missing field, value out of range."""


class InvalidStateError(RelayError):
    """The object is closed, or not in a state that allows this call."""


class NotFoundError(InvalidStateError):
    """No object with that id (never existed, or already closed on the worker)."""


class UnsupportedError(RelayError):
    """Valid, but not supported (a codec, a crypto suite, a feature)."""


class UnknownMethodError(UnsupportedError):
    """The method name is not part of the protocol, or not handled by that object."""


class ResourceExhaustedError(RelayError):
    """A bounded resource ran out (e.g. no free port left in the worker's range)."""


class ProtocolError(RelayError):
    """A frame or message that does not follow PROTOCOL.md."""


class FrameTooLargeError(ProtocolError):
    """A frame whose declared length exceeds MAX_FRAME_SIZE."""


class WorkerDiedError(RelayError):
    """The worker process exited while it was expected to run.

    ``exit_code`` is the process exit status (None if killed by a signal); ``signal`` is the
    signal name (e.g. "SIGKILL") or None.
    """

    def __init__(self, message: str, exit_code: int | None = None, signal: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.signal = signal


class RequestTimeoutError(RelayError, TimeoutError):
    """A request got no response within its deadline (the worker is stopped, stuck or
    overloaded). Raised by the controller itself; never travels on the wire.

    ``method``, ``handler_id``, ``timeout`` (seconds) and ``request_id`` say which request.
    Also a builtin TimeoutError, so ``except TimeoutError`` catches it.
    """

    def __init__(self, message: str, method: str = "", handler_id: str = "",
                 timeout: float = 0.0, request_id: int | None = None):
        super().__init__(message)
        self.method = method
        self.handler_id = handler_id
        self.timeout = timeout
        self.request_id = request_id


class WorkerStartError(RelayError):
    """The worker process did not reach the "running" state (exited early, or timed out)."""


class SendModeUnavailableError(WorkerStartError):
    """An explicitly requested send mode ("zerocopy" or "copy") cannot be had here.

    ``mode`` is the mode asked for, ``errno`` the error number that refused it (ENOMEM when
    RLIMIT_MEMLOCK is too low for the io_uring or its registered buffers). Only "auto"
    degrades to a lower tier; an explicit mode is honoured or the worker does not start.
    """

    def __init__(self, message: str, mode: str | None = None, errno: int | None = None):
        super().__init__(message)
        self.mode = mode
        self.errno = errno


# Name → class for every error that may travel over the pipe.
ERROR_TYPES: dict[str, type[RelayError]] = {
    cls.__name__: cls
    for cls in (
        RelayError,
        ArgumentError,
        InvalidStateError,
        NotFoundError,
        UnsupportedError,
        UnknownMethodError,
        ResourceExhaustedError,
        ProtocolError,
        FrameTooLargeError,
    )
}

# The wire name of an exception that is not a RelayError (a bug, most likely).
GENERIC_ERROR_TYPE = "Error"


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """The ``error`` object of a response for ``exc``.

    RelayError subclasses travel by their own name. Plain TypeError/ValueError become
    ArgumentError (they almost always come from a bad request field); anything else is
    "Error" with its class name kept in the message, so nothing is silently mislabelled.
    """
    if isinstance(exc, RelayError):
        name = type(exc).__name__
        if name not in ERROR_TYPES:
            # A subclass defined elsewhere travels as its nearest known ancestor.
            name = next(c.__name__ for c in type(exc).__mro__ if c.__name__ in ERROR_TYPES)
        return {"type": name, "message": str(exc)}
    if isinstance(exc, (TypeError, ValueError)):
        return {"type": ArgumentError.__name__, "message": str(exc)}
    return {"type": GENERIC_ERROR_TYPE, "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(error: object) -> RelayError:
    """The exception to raise on the controller for a response's ``error`` object."""
    if not isinstance(error, dict):
        return ProtocolError(f"malformed error object: {error!r}")
    type_name = error.get("type")
    message = error.get("message")
    if not isinstance(message, str):
        message = repr(message)
    cls = ERROR_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        return RelayError(f"{type_name}: {message}" if type_name else message)
    return cls(message)


# A worker that cannot start because of a WorkerStartError writes this prefix and the error
# as JSON ({"type", "message"}, plus "mode" and "errno" for SendModeUnavailableError) as one
# line on stderr, then exits with status 1; the controller raises it by its type. (Not the
# pipe's wire: the channel is not open yet. PROTOCOL.md section 5.)
START_ERROR_PREFIX = "relay-start-error:"
START_ERROR_TYPES: dict[str, type[WorkerStartError]] = {
    cls.__name__: cls for cls in (WorkerStartError, SendModeUnavailableError)
}


def start_error_line(exc: WorkerStartError) -> str:
    """The stderr line that carries ``exc`` to the controller."""
    wire: dict[str, object] = {"type": type(exc).__name__, "message": str(exc)}
    if type(exc).__name__ not in START_ERROR_TYPES:
        wire["type"] = WorkerStartError.__name__
    if isinstance(exc, SendModeUnavailableError):
        wire.update(mode=exc.mode, errno=exc.errno)
    return START_ERROR_PREFIX + json.dumps(wire)


def start_error_from_line(line: str) -> RelayError | None:
    """The error a ``start_error_line`` carries, or None for any other line."""
    if not line.startswith(START_ERROR_PREFIX):
        return None
    try:
        wire = json.loads(line[len(START_ERROR_PREFIX):])
    except ValueError:
        wire = None
    if not isinstance(wire, dict) or not isinstance(wire.get("message"), str):
        return WorkerStartError(f"malformed start error line: {line[:200]!r}")
    cls = START_ERROR_TYPES.get(wire.get("type"), WorkerStartError)  # type: ignore[arg-type]
    if cls is SendModeUnavailableError:
        mode, err = wire.get("mode"), wire.get("errno")
        return SendModeUnavailableError(wire["message"], mode if isinstance(mode, str) else None,
                                        err if type(err) is int else None)
    return cls(wire["message"])
