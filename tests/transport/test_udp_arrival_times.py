"""A WebRTC UDP socket's arrival times (`UdpSocket.now`, which transport-cc feedback
reports): when the worker reads late, each datagram keeps the time the kernel received it,
not the time the worker got round to it (relay/transport/webrtc_sockets.py, LATE_READ; read
by relay.uring.receive_core.StampedReader), and its source as recvfrom gives it."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

from relay.transport.webrtc_sockets import UdpSocket
from relay.uring.receive_core import StampedReader


async def open_socket(family: int = socket.AF_INET, host: str = "127.0.0.1"
                      ) -> tuple[UdpSocket, list[tuple[bytes, float, object]], socket.socket]:
    ctx = SimpleNamespace(loop=asyncio.get_running_loop(),
                          ring=SimpleNamespace(flush_soon=lambda: None, forget_fd=lambda fd: None),
                          ports=None)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    arrivals: list[tuple[bytes, float, object]] = []

    def handler(udp: UdpSocket, n: int, addr: object) -> int:
        arrivals.append((bytes(udp.buf[:n]), udp.now, addr))
        return 0

    udp = UdpSocket(ctx, sock, None, handler)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.connect(sock.getsockname())
    return udp, arrivals, sender


async def wait_for(arrivals: list, count: int) -> None:
    async with asyncio.timeout(5):
        while len(arrivals) < count:
            await asyncio.sleep(0.001)


async def late_read() -> None:
    udp, arrivals, sender = await open_socket()
    try:
        # the event loop is held (as when another process has the CPU) while three datagrams
        # arrive 30 ms apart; the worker reads them together 30 ms after the last
        sent = []
        for payload in (b"a", b"b", b"c"):
            sent.append(time.monotonic())
            sender.send(payload)
            time.sleep(0.03)
        read_from = time.monotonic()
        await wait_for(arrivals, 3)
        assert [payload for payload, _, _ in arrivals] == [b"a", b"b", b"c"]
        for (_, arrival, _), at in zip(arrivals, sent, strict=True):
            # as sent (loopback delivers at once), not as read 30-90 ms later
            assert at - 0.001 <= arrival <= at + 0.005, (arrival - at, read_from - at)
        gaps = [b[1] - a[1] for a, b in zip(arrivals, arrivals[1:], strict=False)]
        assert all(0.025 <= gap <= 0.045 for gap in gaps), gaps  # the 30-ms spacing survives
        assert udp.late_reads == 3
        assert udp.stats()["lateReads"] == 3
    finally:
        udp.close()
        sender.close()


async def sources(family: int, host: str) -> None:
    udp, arrivals, first = await open_socket(family, host)
    others = []
    try:
        for _ in range(2):
            other = socket.socket(family, socket.SOCK_DGRAM)
            other.connect(udp.sock.getsockname())
            others.append(other)
        senders = [first, *others] * 4
        for i, sender in enumerate(senders):
            sender.send(bytes([i]))
            await asyncio.sleep(0.001)
        await wait_for(arrivals, len(senders))
        for i, (payload, _, source) in enumerate(arrivals):
            assert payload == bytes([i])
            assert source == senders[i].getsockname()  # as recvfrom gives it
        times = [arrival for _, arrival, _ in arrivals]
        assert times == sorted(times)
        assert udp.stats()["errors"] == {}
    finally:
        udp.close()
        for sender in [first, *others]:
            sender.close()


def test_sources_as_recvfrom_gives_them_ipv4() -> None:
    asyncio.run(sources(socket.AF_INET, "127.0.0.1"))


def test_sources_as_recvfrom_gives_them_ipv6() -> None:
    asyncio.run(sources(socket.AF_INET6, "::1"))


def test_sources_past_the_cache_bound(monkeypatch) -> None:
    monkeypatch.setattr(StampedReader, "MAX_SOURCES", 2)  # three senders: it starts over
    asyncio.run(sources(socket.AF_INET, "127.0.0.1"))

def test_a_late_read_keeps_each_datagrams_kernel_arrival_time() -> None:
    asyncio.run(late_read())
