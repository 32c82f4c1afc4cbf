"""The self-test target: a loopback reflector child process standing where the worker
stands, so the harness's own ceiling (generator + sinks) can be measured the same way.
It sends with UDP GSO (see reflector_core.h) so that it, not the harness, has headroom."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

from .proc_stats import ProcessSample, sample_process
from .scenario import Scenario
from .traffic import Traffic


class ReflectorTarget:
    kind = "reflector"
    send_mode = "reflector"
    label = "reflector"

    def __init__(self, gso: bool = True) -> None:
        self.gso = gso
        self.process: asyncio.subprocess.Process | None = None
        self.pinned: list[int] | None = None
        self.initial_send_ring: dict = {}
        self._sockets: list[socket.socket] = []
        self._cpus: set[int] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self, cpus: set[int] | None) -> None:
        self._cpus = cpus  # the process starts in build(), once the sinks are known

    async def build(self, scenario: Scenario, traffic: Traffic, srtp_suite: str | None) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.bind(("127.0.0.1", 0))
        out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self._sockets.append(out)
        in_fds, destinations = [], []
        for room in scenario.rooms:
            for group in room.send_groups:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                sock.setblocking(False)
                self._sockets.append(sock)
                in_fds.append(sock.fileno())
                for stream in group:
                    traffic.set_destination(stream, sock.getsockname())
                destinations.append([list(traffic.sink_address(s))
                                     for s in scenario.sinks_of_group(group)])
        if srtp_suite:  # the reflector does not re-encrypt: sinks decrypt the generator's key
            for sink in range(scenario.sinks):
                traffic.set_sink_key(sink, srtp_suite, traffic.generator_key)
        config = json.dumps({"inFds": in_fds, "outFd": out.fileno(),
                             "destinations": destinations, "gso": self.gso})
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay.loadtest.reflector", config,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            pass_fds=[out.fileno(), *in_fds], env=env)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 15)
        if line.strip() != b"ready":
            raise RuntimeError("the reflector did not start")
        if self._cpus:
            try:
                os.sched_setaffinity(self.process.pid, self._cpus)
                self.pinned = sorted(self._cpus)
            except OSError:
                self.pinned = None

    async def send_ring(self) -> dict:
        return {}

    async def stats(self) -> dict:
        """The reflector's own counters (datagrams in and out, sends, GSO in use)."""
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(b"stats\n")
        await self.process.stdin.drain()
        return json.loads(await asyncio.wait_for(self.process.stdout.readline(), 5))

    def sample(self) -> ProcessSample | None:
        return sample_process(self.pid) if self.pid else None

    async def close(self) -> int | None:
        code = None
        if self.process is not None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                code = await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                code = await self.process.wait()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        return code
