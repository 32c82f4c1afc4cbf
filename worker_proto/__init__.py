"""worker_proto: the wire contract between a relay controller and a relay worker.

Framing, message kinds, method/event names, errors and the protocol version. It imports
nothing from ``relay``; PROTOCOL.md describes it for implementers in other languages.
"""

from .errors import (
    ERROR_TYPES,
    ArgumentError,
    FrameTooLargeError,
    InvalidStateError,
    NotFoundError,
    ProtocolError,
    RelayError,
    RequestTimeoutError,
    ResourceExhaustedError,
    UnknownMethodError,
    UnsupportedError,
    WorkerDiedError,
    WorkerStartError,
    error_from_wire,
    error_to_wire,
)
from .framing import MAX_FRAME_SIZE, FrameDecoder, encode_frame
from .messages import (
    LogRecord,
    Notification,
    Request,
    Response,
    decode_message,
    encode_message,
)
from .methods import ALL_EVENTS, ALL_METHODS, WORKER_HANDLER_ID
from .version import PROTOCOL_VERSION

__all__ = [
    "ALL_EVENTS",
    "ALL_METHODS",
    "ERROR_TYPES",
    "MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "WORKER_HANDLER_ID",
    "ArgumentError",
    "FrameDecoder",
    "FrameTooLargeError",
    "InvalidStateError",
    "LogRecord",
    "NotFoundError",
    "Notification",
    "ProtocolError",
    "RelayError",
    "Request",
    "RequestTimeoutError",
    "ResourceExhaustedError",
    "Response",
    "UnknownMethodError",
    "UnsupportedError",
    "WorkerDiedError",
    "WorkerStartError",
    "decode_message",
    "encode_frame",
    "encode_message",
    "error_from_wire",
    "error_to_wire",
]
