import os
import socket

import pytest


class Receiver:
    """A loopback UDP socket that reads exactly what was sent, with a timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for a whole batch: a zero-copy skb's truesize is far above its payload.
        opt = getattr(socket, "SO_RCVBUFFORCE", 33) if os.geteuid() == 0 else socket.SO_RCVBUF
        self.sock.setsockopt(socket.SOL_SOCKET, opt, 16 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.addr = self.sock.getsockname()

    def recv_n(self, n: int) -> list[bytes]:
        return [self.sock.recv(65535) for _ in range(n)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def sender():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield s
    s.close()
