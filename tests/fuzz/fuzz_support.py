"""Helpers shared by the fuzz targets: a byte reader for structured inputs, and the check
that a parser raised only what it documents.

The targets themselves never import atheris: pytest calls them directly (regression inputs,
hypothesis), and `run.py` hands them to libFuzzer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The worker receives into a 2048-byte buffer and passes (buffer, length): bytes past
# `length` are whatever the previous datagram left there. A parser must never look at them.
RECEIVE_BUFFER_SIZE = 2048
STALE_BYTE = 0xA5


class ContractError(AssertionError):
    """A target found input on which a parser broke its documented contract."""


def check(condition: bool, message: str) -> None:
    """An assertion that also holds under `python -O`."""
    if not condition:
        raise ContractError(message)


def in_receive_buffer(data: bytes) -> bytearray:
    """`data` at the start of a worker-sized receive buffer whose tail holds stale bytes."""
    buf = bytearray([STALE_BYTE]) * max(RECEIVE_BUFFER_SIZE, len(data) + 64)
    buf[: len(data)] = data
    return buf


def expect(
    call: Callable[[], T], allowed: tuple[type[BaseException], ...], what: str
) -> T | BaseException:
    """Run `call`; return its result, or the exception if it is one of `allowed`. Anything
    else is a broken contract (an IndexError or struct.error escaping a parser)."""
    try:
        return call()
    except allowed as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the point: anything else is the finding
        raise ContractError(f"{what} raised {type(exc).__name__}: {exc} "
                            f"(documented: {', '.join(a.__name__ for a in allowed)})") from exc


class ByteReader:
    """Structured values from fuzzer bytes; reads past the end give zeros, so every input
    is a valid program for a stateful target."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._data)

    def take(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk.ljust(n, b"\x00")

    def chunk(self, n: int) -> bytes:
        """Up to `n` bytes, fewer at the end of the input (no zero padding)."""
        piece = self._data[self._pos : self._pos + n]
        self._pos += n
        return piece

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def signed(self, low: int, high: int) -> int:
        """An integer in [low, high] from one or two bytes."""
        span = high - low + 1
        raw = self.u8() if span <= 256 else self.u16()
        return low + raw % span
