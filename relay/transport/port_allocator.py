"""UDP ports for transports, from the worker's [min_port, max_port] range.

`allocate()` returns a bound, non-blocking UDP socket. Without an explicit port it walks the
range from a cursor that moves on after every allocation (a just-released port is not handed
out again at once, so late packets for a closed transport don't reach a new one), skipping
ports in use by us or, found by a failed bind, by anyone else. When no port is left the error
says so: `ResourceExhaustedError` ("no free UDP port ..."). An explicit port is bound as given, even
outside the range (mediasoup's "port" option), and is tracked the same way.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from worker_proto.errors import ArgumentError, ResourceExhaustedError

# Large kernel buffers absorb bursts while the event loop is busy fanning out (the kernel
# caps them at net.core.{r,w}mem_max without privileges).
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class PortAllocator:
    def __init__(self, min_port: int, max_port: int) -> None:
        for name, value in (("min_port", min_port), ("max_port", max_port)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                raise ArgumentError(f"{name} must be an integer in 1–65535, got {value!r}")
        if min_port > max_port:
            raise ArgumentError(f"min_port {min_port} is above max_port {max_port}")
        self.min_port = min_port
        self.max_port = max_port
        self._next = min_port
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    def allocate(self, ip: str, port: int | None = None) -> socket.socket:
        """A non-blocking UDP socket bound to (ip, port); port None = the next free one in range."""
        family = _family(ip)
        if port is not None:
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ArgumentError(f"port must be an integer in 1–65535, got {port!r}")
            if port in self._in_use:
                raise ResourceExhaustedError(f"UDP port {port} is already used by this worker")
            sock = _bind(family, ip, port)
            if sock is None:
                raise ResourceExhaustedError(f"UDP port {port} on {ip} is in use")
            self._in_use.add(port)
            return sock
        size = self.max_port - self.min_port + 1
        for _ in range(size):
            candidate = self._next
            self._next = candidate + 1 if candidate < self.max_port else self.min_port
            if candidate in self._in_use:
                continue
            sock = _bind(family, ip, candidate)
            if sock is not None:
                self._in_use.add(candidate)
                return sock
        raise ResourceExhaustedError(
            f"no free UDP port on {ip} in the worker's range {self.min_port}–{self.max_port} "
            f"({len(self._in_use)} used by this worker, the rest by other processes)"
        )

    def release(self, port: int) -> None:
        """Give `port` back (the caller closes its socket). Unknown ports are ignored."""
        self._in_use.discard(port)


def _family(ip: str) -> socket.AddressFamily:
    try:
        address = ipaddress.ip_address(ip)
    except (ValueError, TypeError):
        raise ArgumentError(f"not an IP address: {ip!r}") from None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _bind(family: socket.AddressFamily, ip: str, port: int) -> socket.socket | None:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return None
        raise ArgumentError(f"cannot bind UDP {ip}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        except OSError:
            pass
    return sock
