"""Length-prefixed frames: a 4-byte big-endian unsigned length, then that many payload bytes."""

from __future__ import annotations

import struct

from .errors import FrameTooLargeError

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

# Large enough for any dump of a busy router, small enough that a garbage length prefix
# cannot make either side allocate gigabytes.
MAX_FRAME_SIZE = 4 * 1024 * 1024


def encode_frame(payload: bytes) -> bytes:
    """The frame carrying ``payload``; FrameTooLargeError if it exceeds MAX_FRAME_SIZE."""
    if len(payload) > MAX_FRAME_SIZE:
        raise FrameTooLargeError(
            f"frame payload of {len(payload)} bytes exceeds MAX_FRAME_SIZE ({MAX_FRAME_SIZE})"
        )
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get complete payloads back.

    An oversized frame is not buffered: its declared length is skipped as the bytes arrive
    and a FrameTooLargeError is reported in its place, so the stream stays in sync and the
    reader stays alive.
    """

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._max = max_frame_size
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | FrameTooLargeError]:
        """Payloads (and oversized-frame errors) completed by ``data``, in stream order."""
        out: list[bytes | FrameTooLargeError] = []
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        buf = self._buffer
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (length,) = HEADER.unpack_from(buf, pos)
            if length > self._max:
                out.append(
                    FrameTooLargeError(
                        f"frame of {length} bytes exceeds MAX_FRAME_SIZE ({self._max}); skipped"
                    )
                )
                pos += HEADER_SIZE
                available = end - pos
                if available >= length:
                    pos += length
                    continue
                self._skip = length - available
                pos = end
                break
            if end - pos - HEADER_SIZE < length:
                break
            start = pos + HEADER_SIZE
            out.append(bytes(buf[start : start + length]))
            pos = start + length
        if pos:
            del buf[:pos]
        return out
