"""The one error hierarchy shared by controller and worker, carried over the pipe by name.

A worker-side exception travels as ``{"type": <class name>, "message": <str>}`` and is raised
again on the controller side as the class of that name (``RelayError`` for unknown names).
"""

from __future__ import annotations


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


class WorkerStartError(RelayError):
    """The worker process did not reach the "running" state (exited early, or timed out)."""


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
