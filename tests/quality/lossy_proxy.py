"""A UDP proxy for the quality tests: sits between a peer and the relay on 127.0.0.1 and
drops chosen RTP packets once (a deterministic loss pattern), forwarding everything else
both ways. Runs on the test's event loop (add_reader), no threads."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable


class LossyProxy:
    """peer <-> [outer socket | inner socket] <-> relay.

    `drop(packet) -> bool` decides, for each datagram going towards the relay (`upstream`)
    or towards the peer (`downstream`), whether to drop it. Dropped packets are kept in
    `dropped_up` / `dropped_down`. With `peer` None the peer is whoever sends to the outer
    socket first (an ICE agent whose port isn't known in advance)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer: tuple[str, int] | None,
                 relay: tuple[str, int] | None = None,
                 drop_up: Callable[[bytes], bool] = lambda p: False,
                 drop_down: Callable[[bytes], bool] = lambda p: False) -> None:
        self.outer = self._socket()  # the peer talks to this one
        self.inner = self._socket()  # the relay talks to this one
        self.peer = peer
        self.relay = relay
        self.drop_up, self.drop_down = drop_up, drop_down
        self.dropped_up: list[bytes] = []
        self.dropped_down: list[bytes] = []
        self.forwarded_up = self.forwarded_down = 0
        self._loop = loop
        loop.add_reader(self.outer.fileno(), self._on_outer)
        loop.add_reader(self.inner.fileno(), self._on_inner)

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    @property
    def outer_address(self) -> tuple[str, int]:
        return self.outer.getsockname()

    @property
    def inner_address(self) -> tuple[str, int]:
        return self.inner.getsockname()

    def _on_outer(self) -> None:
        for data, addr in _drain_from(self.outer):
            if self.peer is None:
                self.peer = addr
            if self.drop_up(data):
                self.dropped_up.append(data)
            elif self.relay is not None:
                self.forwarded_up += 1
                self.inner.sendto(data, self.relay)

    def _on_inner(self) -> None:
        for data in _drain(self.inner):
            if self.drop_down(data):
                self.dropped_down.append(data)
            elif self.peer is not None:
                self.forwarded_down += 1
                self.outer.sendto(data, self.peer)

    def close(self) -> None:
        for sock in (self.outer, self.inner):
            self._loop.remove_reader(sock.fileno())
            sock.close()


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def _drain_from(sock: socket.socket) -> list[tuple[bytes, tuple]]:
    out = []
    while True:
        try:
            out.append(sock.recvfrom(4096))
        except BlockingIOError:
            return out


def is_rtcp(packet: bytes) -> bool:
    return len(packet) >= 2 and 64 <= packet[1] & 0x7F <= 95


def rtp_seq_ssrc(packet: bytes) -> tuple[int, int]:
    seq, = struct.unpack_from("!H", packet, 2)
    ssrc, = struct.unpack_from("!I", packet, 8)
    return seq, ssrc


def once(predicate: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
    """Drop each packet the predicate selects only the first time it is seen."""
    seen: set[bytes] = set()

    def decide(packet: bytes) -> bool:
        if packet in seen or not predicate(packet):
            return False
        seen.add(packet)
        return True

    return decide
