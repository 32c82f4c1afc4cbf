"""The pipe pair both ends speak over: one pipe read, one written, with asyncio transports.

The controller reads responses and writes requests; the worker the other way round. Each
side hands in what to do with the bytes it reads and with end-of-file (which it sees when
the other process dies or closes), and gets the two transports back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class _PipeReader(asyncio.Protocol):
    def __init__(self, on_data: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self._on_data = on_data
        self._on_eof = on_eof

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def eof_received(self) -> bool:
        self._on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_eof()


async def open_pipe_pair(
    loop: asyncio.AbstractEventLoop,
    read_fd: int,
    write_fd: int,
    on_data: Callable[[bytes], None],
    on_eof: Callable[[], None],
) -> tuple[asyncio.ReadTransport, asyncio.WriteTransport]:
    """Connect `read_fd` (bytes to `on_data`, then `on_eof`, maybe more than once) and
    `write_fd`; the caller owns both transports."""
    reader, _ = await loop.connect_read_pipe(
        lambda: _PipeReader(on_data, on_eof), os.fdopen(read_fd, "rb", buffering=0)
    )
    writer, _ = await loop.connect_write_pipe(
        asyncio.Protocol, os.fdopen(write_fd, "wb", buffering=0)
    )
    return reader, writer
