"""RFC 4571 framing for ICE-TCP: every packet (STUN, DTLS, RTP, RTCP) on the TCP stream is
preceded by its length as a 16-bit big-endian unsigned integer.

`FrameDecoder` takes the stream in whatever chunks TCP delivers (a partial header, several
frames, a frame split over many reads) and returns whole frames. A declared length above
the decoder's maximum means the stream is garbage (or out of sync, which is the same thing
for a length-prefixed stream): `FramingError` is raised and the decoder stays broken, so
the caller closes the connection. Zero-length frames carry nothing and are skipped (counted).
"""

from __future__ import annotations

import struct

HEADER_SIZE = 2
MAX_FRAME_SIZE = 65535  # the largest value a 16-bit length can declare

_LENGTH = struct.Struct("!H")


class FramingError(ValueError):
    """The stream is not RFC 4571 framed packets (or not within our limits)."""


def encode_frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Return `payload` with its 2-byte length prefix."""
    size = len(payload)
    if size > MAX_FRAME_SIZE:
        raise ValueError(f"frame of {size} bytes exceeds the RFC 4571 limit of {MAX_FRAME_SIZE}")
    return _LENGTH.pack(size) + bytes(payload)


class FrameDecoder:
    """Incremental decoder: `feed(chunk)` returns the frames completed by that chunk."""

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 1 <= max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in 1..{MAX_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._broken = False
        self.frames_decoded = 0
        self.empty_frames = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame (bounded by header + max frame size)."""
        return len(self._buffer)

    @property
    def broken(self) -> bool:
        return self._broken

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[bytes]:
        if self._broken:
            raise FramingError("decoder already failed on garbage; close the connection")
        buffer = self._buffer
        buffer += chunk
        frames: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_SIZE:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if size > self.max_frame_size:
                self._broken = True
                buffer.clear()
                raise FramingError(
                    f"frame length {size} exceeds the maximum of {self.max_frame_size}"
                )
            if end - offset - HEADER_SIZE < size:
                break  # wait for the rest of this frame
            start = offset + HEADER_SIZE
            offset = start + size
            if size == 0:
                self.empty_frames += 1
                continue
            frames.append(bytes(buffer[start:offset]))
        if offset:
            del buffer[:offset]
        self.frames_decoded += len(frames)
        return frames
