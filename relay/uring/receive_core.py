"""The Python side of the C receive core (receive_core.c): its structs and the libsrtp it calls.

The core unprotects with pylibsrtp's own libsrtp, as the fan-out core protects with it
(`relay.uring.fanout_core` checked that it is the 2.x both are written for).

`RELAY_RECEIVE_CORE=0` in the environment keeps every datagram on the Python path (the
reference the tests compare the core with, and the "before" of a measurement). The core is
also off when the fan-out core is (it hands packets to `fc_fan_out`).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from relay.uring import fanout_core
from relay.uring._ring import ffi, lib

__all__ = ["ffi", "ENABLED", "REASON", "TransportCore", "Store", "new_stream", "StampedReader",
           "sockaddr_tuple"]

BATCH = lib.RX_BATCH
BUF_SIZE = lib.RX_BUF_SIZE
DONE = lib.RX_DONE
RAW = lib.RX_RAW
ROUTE = lib.RX_ROUTE
QUEUED = lib.RX_QUEUED
MORE = lib.RX_MORE

receive = lib.rx_receive  # (transport) -> count or -errno
next_event = lib.rx_next  # (transport, now) -> DONE | RAW | ROUTE | QUEUED | MORE
recv_stamped = lib.rx_recv_stamped  # see StampedReader


def _enable() -> tuple[bool, str]:
    if os.environ.get("RELAY_RECEIVE_CORE", "1") == "0":
        return False, "RELAY_RECEIVE_CORE=0"
    if not fanout_core.ENABLED:
        return False, f"the fan-out core is off ({fanout_core.REASON})"
    lib.rx_set_unprotect(fanout_core.libsrtp_function("srtp_unprotect"))
    return True, fanout_core.REASON


# Decided once per process, at import (start-up).
ENABLED, REASON = _enable()


class TransportCore:
    """One UDP socket's receive core: the C struct and its batch (freed with this object)."""

    __slots__ = ("c", "_batch", "_addr", "_tables", "batch_view")

    def __init__(self, fd: int, ring: Any, max_rtp_size: int) -> None:
        self.c = ffi.new("struct rx_transport *")
        self._batch = ffi.gc(lib.rx_batch_new(), lib.rx_batch_free)
        if self._batch == ffi.NULL:
            raise MemoryError("receive core batch")
        self.c.batch = self._batch
        self.c.fd = fd
        self.c.ring = ring if ring is not None else ffi.NULL
        self.c.max_rtp_size = max_rtp_size
        self._addr = ffi.new("unsigned char[128]")  # a struct sockaddr_storage
        # every datagram buffer of the batch, one after the other (RX_BUF_SIZE each)
        self.batch_view = memoryview(ffi.buffer(lib.rx_packet(self.c, 0), BATCH * BUF_SIZE))
        self._tables: list[Any] = []  # the stream structs the SSRC table points to

    def set_remote(self, match: tuple | None) -> None:
        """The remote in the form recvfrom() returns it (None: not known yet)."""
        if match is None:
            self.c.has_remote = 0
            return
        flowinfo, scope = (match[2], match[3]) if len(match) == 4 else (0, 0)
        if lib.rx_set_remote(self.c, match[0].encode(), match[1], flowinfo, scope) < 0:
            self.c.has_remote = 0

    def set_table(self, entries: list[tuple[int, Any]]) -> None:
        """(ssrc, struct rx_stream *) pairs; entries beyond the table's bound go to Python."""
        lib.rx_table_clear(self.c)
        for ssrc, stream in entries:
            lib.rx_table_add(self.c, ssrc, stream)
        self._tables = [stream for _, stream in entries]

    def packet(self, index: int, offset: int, n: int) -> Any:
        """The n bytes at `offset` in datagram `index`'s buffer (a slice of `batch_view`,
        valid until the next receive)."""
        start = index * BUF_SIZE + offset
        return self.batch_view[start:start + n]

    def source(self, index: int) -> tuple:
        """The source of datagram `index` as recvfrom() gives it."""
        size = lib.rx_source(self.c, index, self._addr, 128)
        return sockaddr_tuple(bytes(ffi.buffer(self._addr, max(0, size))))


def sockaddr_tuple(raw: bytes) -> tuple:
    """A struct sockaddr's bytes as recvfrom() gives the address."""
    family = struct.unpack_from("=H", raw)[0] if len(raw) >= 2 else 0
    if family == socket.AF_INET:
        port = struct.unpack_from("!H", raw, 2)[0]
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6:
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        scope = struct.unpack_from("=I", raw, 24)[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flowinfo, scope
    return ("", 0)


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # (Linux; absent from Python's module)


class StampedReader:
    """Reads a UDP socket's datagrams into `buf` with the kernel's arrival time of each
    (`rx_recv_stamped`: recvmsg with SO_TIMESTAMPNS). In C because Python's recvmsg_into
    builds the ancillary data as objects (4.1 us a datagram against recvfrom_into's 2.4).
    The caller's loop, per datagram: `n = recv_stamped(*args)` (the length, or -errno), then
    `sources.get(key[0]) or source(key[0])` (the address as recvfrom gives it, cached by the
    C side's IPv4 key: making the address's bytes costs ~1 us) and `arrival[0]` (monotonic
    s). The cache is bounded: it starts over when full."""

    __slots__ = ("args", "key", "arrival", "sources", "_addr", "_addrlen")

    # more than the peers a WebRtcServer's socket of one worker serves (a full cache costs
    # ~1.5 us a datagram); ~200 bytes each, so a stranger's port spray holds ~3 MB at most
    MAX_SOURCES = 16384

    def __init__(self, sock: socket.socket, buf: bytearray) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._addr = ffi.new("unsigned char[128]")  # a struct sockaddr_storage
        self._addrlen = ffi.new("unsigned *")
        self.key = ffi.new("unsigned long long *")
        self.arrival = ffi.new("double *")
        # (fd, buf, size, addr, addrlen, key, arrival): keep buf alive and never resize it
        self.args = (sock.fileno(), ffi.from_buffer("unsigned char[]", buf), len(buf),
                     self._addr, self._addrlen, self.key, self.arrival)
        self.sources: dict[int, tuple] = {}

    def source(self, key: int) -> tuple:
        """The last datagram's source as recvfrom() gives it, when `sources` has none for
        its `key` (0: not IPv4, never cached)."""
        source = sockaddr_tuple(ffi.unpack(ffi.cast("char *", self._addr), self._addrlen[0]))
        if key:
            if len(self.sources) >= self.MAX_SOURCES:
                self.sources.clear()
            self.sources[key] = source
        return source


def new_stream(clock_rate: int) -> Any:
    """A zeroed `struct rx_stream *` (owned by the returned cdata)."""
    s = ffi.new("struct rx_stream *")
    s.clock_rate = clock_rate
    s.nack_newest = -1
    s.frame_ts = -1
    return s


class Store:
    """A C retransmission store (`struct rx_store`), NackBuffer's rules."""

    __slots__ = ("c", "_seqs", "_times", "_lens", "_data", "_out")

    def __init__(self, capacity: int, max_age: float, slot_size: int) -> None:
        self.c = ffi.new("struct rx_store *")
        self._seqs = ffi.new("long long[]", capacity)
        self._times = ffi.new("double[]", capacity)
        self._lens = ffi.new("unsigned[]", capacity)
        self._data = ffi.new("unsigned char[]", capacity * slot_size)
        self._out = ffi.new("unsigned char[]", slot_size)
        c = self.c
        c.capacity = capacity
        c.slot_size = slot_size
        c.max_age = max_age
        c.seqs = self._seqs
        c.times = self._times
        c.lens = self._lens
        c.data = self._data
        lib.rx_store_clear(c)

    def put(self, seq: int, packet: Any, now: float) -> None:
        n = len(packet)
        if n <= self.c.slot_size:
            lib.rx_store_put(self.c, seq, ffi.from_buffer(packet), n, now)

    def get(self, seq: int, now: float) -> bytes | None:
        n = lib.rx_store_get(self.c, seq & 0xFFFF, now, self._out, self.c.slot_size)
        return bytes(ffi.buffer(self._out, n)) if n >= 0 else None

    def clear(self) -> None:
        lib.rx_store_clear(self.c)

    def __len__(self) -> int:
        return lib.rx_store_count(self.c)
