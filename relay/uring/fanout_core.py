"""The Python side of the C fan-out core (fanout_core.c): its tables and the libsrtp it calls.

The core protects with pylibsrtp's own libsrtp (no second copy of it in the process): the
address of its `srtp_protect` is handed to the core once, after checking that the libsrtp
inside pylibsrtp is the 2.x the core's call signature is written for (libsrtp 3 changed
`srtp_protect`). pylibsrtp's cffi module does not export `srtp_get_version`, its shared
object does, so that one is read with ctypes.

`RELAY_FANOUT_CORE=0` in the environment keeps every consumer on the Python fan-out loop (the
reference the tests compare the core with; it runs the same C rewrite per consumer).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

from relay.uring._ring import ffi, lib

LIBSRTP_MAJOR = 2  # the srtp_protect(srtp_t, void *, int *) signature fanout_core.c calls
MAX_PACKET = lib.FC_MAX_PACKET
MALFORMED = lib.FC_MALFORMED
STREAM_QUEUED = lib.FC_STREAM_QUEUED
NO_PAYLOAD_TYPE = lib.FC_NO_PAYLOAD_TYPE

fan_out = lib.fc_fan_out  # (ring, groups, ngroups, packet, n, seq, ts, older, tid, payload, now)


def _libsrtp_version() -> int:
    from pylibsrtp import _binding  # the extension that carries libsrtp

    get_version = ctypes.CDLL(_binding.__file__).srtp_get_version
    get_version.restype = ctypes.c_uint
    return int(get_version())


def as_void_pointer(pointer: Any) -> Any:
    """A pointer of pylibsrtp's cffi module (a libsrtp function, an srtp_t) as this
    module's void *."""
    from pylibsrtp._binding import ffi as srtp_ffi

    return ffi.cast("void *", int(srtp_ffi.cast("uintptr_t", pointer)))


def libsrtp_function(name: str) -> Any:
    """The address of libsrtp's function `name` in the library pylibsrtp carries."""
    from pylibsrtp._binding import ffi as srtp_ffi
    from pylibsrtp._binding import lib as srtp_lib

    return as_void_pointer(srtp_ffi.addressof(srtp_lib, name))


def _enable() -> tuple[bool, str]:
    if os.environ.get("RELAY_FANOUT_CORE", "1") == "0":
        return False, "RELAY_FANOUT_CORE=0"
    try:
        version = _libsrtp_version()
    except (OSError, AttributeError, ImportError) as exc:
        return False, f"cannot read pylibsrtp's libsrtp version ({exc})"
    if version >> 24 != LIBSRTP_MAJOR:
        return False, (f"pylibsrtp carries libsrtp {version >> 24}.{(version >> 16) & 0xFF}; "
                       f"the fan-out core calls libsrtp {LIBSRTP_MAJOR}.x")
    lib.fc_set_protect(libsrtp_function("srtp_protect"))
    return True, f"libsrtp {version >> 24}.{(version >> 16) & 0xFF}.{(version >> 8) & 0xFF}"


# Decided once per process, at import (start-up): (the core is used, why / which libsrtp)
ENABLED, REASON = _enable()


def new_consumer() -> Any:
    """A zeroed `struct fc_consumer *` (owned by the returned cdata); its `rw` must point at
    an RtpRewriter's struct (`relay.uring.rewriter`) kept alive with it."""
    return ffi.new("struct fc_consumer *")


def set_address(c: Any, dst: Any) -> None:
    """dst: the ring's C destination (bytes of RC_ADDR_SIZE), or NULL/None when connected."""
    if dst is None or dst == ffi.NULL:
        c.addressed = 0
    else:
        ffi.memmove(c.addr, dst, lib.RC_ADDR_SIZE)
        c.addressed = 1


def new_srtp(srtp_t: Any) -> Any:
    """A `struct fc_srtp *` for libsrtp session `srtp_t` (a pylibsrtp cffi pointer). The
    caller keeps the session alive as long as this is in any table."""
    s = ffi.new("struct fc_srtp *")
    s.ctx = as_void_pointer(srtp_t)
    return s


class TccRing:
    """One transport's transport-wide numbers as the core gives them: (send time, size) by
    number, in arrays the send history copies from (`relay.transport.core_send_history`)."""

    __slots__ = ("c", "times", "sizes")

    def __init__(self, capacity: int) -> None:
        self.times = ffi.new("double[]", capacity)
        self.sizes = ffi.new("unsigned[]", capacity)
        self.c = ffi.new("struct fc_tcc *")
        self.c.last = -1
        self.c.mask = capacity - 1
        self.c.times = self.times
        self.c.sizes = self.sizes


class GroupTable:
    """One producer stream's groups as the core reads them; holds every struct it points to
    (consumer structs, through `keep`, which also holds their SRTP sessions)."""

    __slots__ = ("groups", "count", "_arrays", "keep")

    def __init__(self, groups: list[tuple[bytes, int, int, list[Any]]], keep: list[Any]) -> None:
        self.count = len(groups)
        self.groups = ffi.new("struct fc_group[]", max(1, len(groups)))
        self._arrays = []
        for index, (table, max_tid, tcc_id, consumers) in enumerate(groups):
            g = self.groups[index]
            ffi.memmove(g.ext_table, table, 256)
            g.max_tid = max_tid
            g.tcc_id = tcc_id
            array = ffi.new("struct fc_consumer *[]", max(1, len(consumers)))
            for i, c in enumerate(consumers):
                array[i] = c
            g.nconsumers = len(consumers)
            g.consumers = array
            self._arrays.append(array)
        self.keep = keep


# A stream buffer's size: a loop turn's packets for one owner, sent at once from half of it
# (where the core says FC_STREAM_QUEUED again), so the other half holds what comes meanwhile.
STREAM_BUFFER_BYTES = 64 * 1024


class StreamBuffer:
    """RFC 4571 framed packets the core wrote for one ICE-TCP connection or batching pipe,
    sent by their owner's `send(buffer)` once per event-loop turn: `queued()` (the owner's
    `media_queued`, when the core's result says FC_STREAM_QUEUED) schedules the send at the
    end of the turn, or sends at once when the buffer is half full; `send_now()` sends what
    is there (before anything the owner sends itself, which keeps the order). After a send
    the buffer is empty."""

    __slots__ = ("c", "buf", "_ptr", "_send", "_loop", "_scheduled")

    def __init__(self, capacity: int = STREAM_BUFFER_BYTES,
                 send: Callable[[StreamBuffer], object] | None = None, loop: Any = None) -> None:
        self.buf = bytearray(capacity)
        self._ptr = ffi.from_buffer("unsigned char[]", self.buf)
        self.c = ffi.new("struct fc_stream *")
        self.c.buf = self._ptr
        self.c.cap = capacity
        self._send = send
        self._loop = loop
        self._scheduled = False

    def __len__(self) -> int:
        return self.c.len

    def view(self) -> memoryview:
        return memoryview(self.buf)[:self.c.len]

    def clear(self) -> None:
        self.c.len = 0

    def queued(self) -> None:
        """The core framed into this buffer (its first packet since the last send, or past
        half of it): send at the end of this loop turn, or now if it is half full."""
        if self.c.len >= self.c.cap // 2:
            self.send_now()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.send_now)

    def send_now(self) -> None:
        self._scheduled = False
        if self.c.len:
            self._send(self)
            self.c.len = 0
