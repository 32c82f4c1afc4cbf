"""examples/two_hosts across two "hosts": two network namespaces made here, joined by a veth
pair, each running its own controller and worker (`ip netns exec`). A producer on the origin
is piped to the edge with SRTP and delivered to a receiver on the edge's side: every packet
arrives, and pause, resume and close follow across. Needs root and `ip`; the namespaces, the veth
pair and every process are removed whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "examples" / "two_hosts" / "node.py"
PACKETS = 400

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="network namespaces need root and ip(8)")

# Counts RTP packets (not RTCP, RFC 5761) until stdin closes, then prints the count.
_RECEIVER = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
n = 0
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 1.0)
    if s in r:
        p = s.recv(2048)
        if len(p) >= 12 and not 64 <= p[1] & 0x7F <= 95:
            n += 1
    elif sys.stdin in r:
        break
print(n, flush=True)
"""

# From one socket (the origin's comedia transport learns its address from the first packet),
# for each stdin line "count first": sends `count` Opus packets (SSRC 11111111, PT 111) to
# argv[1]:argv[2], five back to back every 5 ms (as several producers' packets reach a
# pipe: the origin batches them), from sequence number `first`, then prints "sent".
_SENDER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
target = (sys.argv[1], int(sys.argv[2]))
for line in sys.stdin:
    count, first = map(int, line.split())
    for i in range(first, first + count):
        s.sendto(struct.pack("!BBHII", 0x80, 111, i & 0xFFFF, i * 960, 11111111)
                 + b"\xab" * 160, target)
        if i % 5 == 4:
            time.sleep(0.005)
    print("sent", flush=True)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _free_subnet() -> int:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                          check=True).stdout
    for _ in range(100):
        x = random.randrange(256)
        if f"10.198.{x}." not in used:
            return x
    raise RuntimeError("no free 10.198.X.0/30 subnet")


class TwoHosts:
    """Namespaces `origin` and `edge` with a veth pair: origin_ip <-> edge_ip."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{random.randrange(100)}"
        self.origin, self.edge = f"pipe-o-{tag}", f"pipe-e-{tag}"
        x = _free_subnet()
        self.origin_ip, self.edge_ip = f"10.198.{x}.1", f"10.198.{x}.2"
        self.processes: list[subprocess.Popen] = []
        _ip("netns", "add", self.origin)
        _ip("netns", "add", self.edge)
        _ip("link", "add", f"po{tag}", "netns", self.origin, "type", "veth",
            "peer", "name", f"pe{tag}", "netns", self.edge)
        for ns, dev, ip in ((self.origin, f"po{tag}", self.origin_ip),
                            (self.edge, f"pe{tag}", self.edge_ip)):
            _ip("-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def run(self, ns: str, *argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(5)
        for ns in (self.origin, self.edge):  # the veth pair goes with them
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def _line(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise AssertionError(f"no output (rc {proc.poll()}): {proc.stderr.read()[-3000:]}")
    return line


def _event(proc: subprocess.Popen, name: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(_line(proc, max(0.1, deadline - time.monotonic())))
        if message["event"] == name:
            return message


def test_producer_piped_between_two_hosts_with_srtp():
    hosts = TwoHosts()
    try:
        _scenario(hosts)
    finally:
        hosts.close()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert hosts.origin not in namespaces and hosts.edge not in namespaces


def _scenario(hosts: TwoHosts) -> None:
    receiver = hosts.run(hosts.edge, "-c", _RECEIVER, hosts.edge_ip)
    receiver_port = int(_line(receiver))
    edge = hosts.run(hosts.edge, str(NODE), "edge", "--ip", hosts.edge_ip, "--signal-port",
                     "7000", "--deliver-to", f"{hosts.edge_ip}:{receiver_port}")
    _event(edge, "listening")
    origin = hosts.run(hosts.origin, str(NODE), "origin", "--ip", hosts.origin_ip, "--edge",
                       f"{hosts.edge_ip}:7000")
    ready = _event(origin, "ready")
    assert ready["srtp"] is True
    _event(edge, "consuming")

    sender = hosts.run(hosts.origin, "-c", _SENDER, hosts.origin_ip, str(ready["rtpPort"]))
    _send(sender, PACKETS, 1)
    time.sleep(0.5)
    edge.stdin.write("stats\n")
    edge.stdin.flush()
    stats = _event(edge, "stats")["stats"]
    assert stats["type"] == "pipe-transport"
    assert stats["rtpPacketsReceived"] == PACKETS
    assert stats["srtpRecv"] and set(stats["dropped"]) <= {"rtcpIgnored"}
    assert stats["tuple"]["remoteIp"] == hosts.origin_ip
    # both ends are relay: the parameters carried `batching`, the origin batched bursts
    assert stats["batching"]["receives"] and stats["batching"]["sends"]
    assert stats["batching"]["packetsReceived"] >= PACKETS // 2, stats["batching"]

    # pause and resume follow across: nothing arrives while paused
    _command(origin, "pause")
    _event(edge, "producerpause")
    _send(sender, 100, PACKETS + 1)
    _command(origin, "resume")
    _event(edge, "producerresume")
    _send(sender, 100, PACKETS + 101)
    time.sleep(0.5)
    receiver.stdin.close()
    assert int(_line(receiver)) == PACKETS + 100  # every packet sent unpaused, at the far side

    # closing the producer on the origin closes its copy on the edge
    _command(origin, "close")
    _event(edge, "producerclose")
    origin.stdin.close()
    assert origin.wait(20) == 0, origin.stderr.read()
    edge.stdin.close()
    assert edge.wait(20) == 0, edge.stderr.read()


def _command(proc: subprocess.Popen, command: str) -> None:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    _event(proc, command)


def _send(sender: subprocess.Popen, count: int, first: int) -> None:
    sender.stdin.write(f"{count} {first}\n")
    sender.stdin.flush()
    assert _line(sender, 30) == "sent\n"
