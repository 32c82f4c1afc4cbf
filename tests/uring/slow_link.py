"""A congested path for the slow-consumer test: a network namespace reached through a veth
pair whose host end is shaped by tc tbf, and a UDP receiver inside the namespace.

Everything is named with the "ring" prefix and a private /30 (10.199.X.0/30) whose both
ends are created here; ``close()`` deletes the veth pair (its peer goes with it) and the
namespace. Needs root, ``ip`` and ``tc``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

# Counts RTP (not RTCP: payload types 64-95 with rtcp-mux, RFC 5761) until stdin closes.
_RECEIVER = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], 0))
s.setblocking(False)
print(s.getsockname()[1], flush=True)
n = 0
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 1.0)
    if sys.stdin in r:
        break
    try:
        while True:
            p = s.recv(2048)
            if len(p) >= 12 and not 64 <= p[1] & 0x7F <= 95:
                n += 1
    except BlockingIOError:
        pass
print(n, flush=True)
"""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=20)


def _free_subnet() -> int:
    """A third octet X with no 10.199.X.* address on this host yet."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                          check=True).stdout
    for _ in range(100):
        x = random.randrange(256)
        if f"10.199.{x}." not in used:
            return x
    raise RuntimeError("no free 10.199.X.0/30 subnet")


class SlowLink:
    """Host end ``host_ip`` (bind the sender here), receiver at ``(peer_ip, port)``."""

    def __init__(self, rate: str = "1mbit", limit_bytes: int = 32 << 20) -> None:
        tag = f"{os.getpid() % 100000}{random.randrange(100)}"
        self.netns = f"ring-slow-{tag}"
        self.host_if = f"ringh{tag}"
        self.peer_if = f"ringp{tag}"
        x = _free_subnet()
        self.host_ip, self.peer_ip = f"10.199.{x}.1", f"10.199.{x}.2"
        self._receiver: subprocess.Popen | None = None
        try:
            _run("ip", "netns", "add", self.netns)
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if,
                 "netns", self.netns)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run("ip", "-n", self.netns, "addr", "add", f"{self.peer_ip}/30", "dev", self.peer_if)
            _run("ip", "-n", self.netns, "link", "set", self.peer_if, "up")
            _run("ip", "-n", self.netns, "link", "set", "lo", "up")
            # A queue deeper than the sender's socket buffer: the socket fills up (as behind
            # a real bottleneck with a deep buffer) instead of the qdisc dropping silently.
            _run("tc", "qdisc", "add", "dev", self.host_if, "root", "tbf", "rate", rate,
                 "burst", "32kbit", "limit", str(limit_bytes))
            self._receiver = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-c", _RECEIVER,
                 self.peer_ip], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.port = int(self._receiver.stdout.readline())
        except BaseException:
            self.close()
            raise

    def received(self) -> int:
        """Stop the receiver; how many RTP packets it got."""
        assert self._receiver is not None
        out, _ = self._receiver.communicate("", timeout=10)
        self._receiver = None
        return int(out.split()[-1])

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.kill()
            self._receiver.wait()
            self._receiver = None
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=20)
