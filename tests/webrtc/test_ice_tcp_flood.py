"""Strangers cannot lock a WebRtcServer's ICE-TCP port (issue 12, item 2).

A flooder process holds 260 idle connections on the shared TCP port (more than the listener's
256 slots), from 30 source addresses under the per-address limit and one address far over it,
and reconnects each one the moment it is dropped. Meanwhile legit clients connect from another
address and send ICE checks (RFC 4571 framing, a Binding request with the transport's
credentials): nearly every check must succeed within a few seconds, and the connections that
passed their check must outlive the flood. A second test shows the first-check deadline and
the frame budget of a connection nobody has claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from aioice import stun
from aiortc_signalling import MEDIA_CODECS
from raw_webrtc_client import binding_request

import relay
from relay.transport import webrtc_sockets
from relay.transport.tcp_framing import FrameDecoder, encode_frame

FLOODER = Path(__file__).with_name("ice_tcp_flooder.py")
FLOOD_SECONDS = 10.0
# 30 addresses x 8 connections (each under the per-address limit) + 20 from one address:
# 260 connections for 256 slots, as in the probe.
CROWD = [(f"127.0.0.{i}", 8) for i in range(10, 40)]
LONE = ("127.0.0.2", 20)
LEGIT_SOURCE = "127.0.0.1"
CHECKS = 13
CHECK_SPACING = 0.5  # s between the starts of two legit checks: 13 of them in 6 s
CHECK_TIMEOUT = 3.0  # s for connect + check + response
MIN_SUCCESSES = 12


@contextlib.asynccontextmanager
async def server_and_router():
    worker = await relay.create_worker(rtc_min_port=46000, rtc_max_port=46999)
    try:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        server = await worker.create_webrtc_server(
            listen_infos=[{"protocol": "tcp", "ip": "127.0.0.1"}])
        yield server, router
    finally:
        worker.close()
        await asyncio.wait_for(worker.wait_closed(), 10)


class IceTcpClient:
    """One ICE-TCP connection of a legit client: Binding requests out, responses in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._decoder = FrameDecoder()
        self._frames: list[bytes] = []

    @classmethod
    async def connect(cls, host: str, port: int) -> IceTcpClient:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(LEGIT_SOURCE, 0))
        return cls(reader, writer)

    async def check(self, ice: dict) -> bool:
        """Send a check; True on a success response for it (EOF raises ConnectionError)."""
        tid = os.urandom(12)
        self.writer.write(encode_frame(binding_request(ice, transaction_id=tid)))
        while True:
            while self._frames:
                message = stun.parse_message(self._frames.pop(0))
                if message.transaction_id == tid:
                    return message.message_class == stun.Class.RESPONSE
            chunk = await self.reader.read(4096)
            if not chunk:
                raise ConnectionError("closed by relay")
            self._frames += self._decoder.feed(chunk)

    def close(self) -> None:
        self.writer.close()


async def timed_check(delay: float, host: str, port: int,
                      ice: dict) -> tuple[float | None, IceTcpClient | None]:
    """After `delay`, connect and check: (seconds it took, the client) or (None, None)."""
    await asyncio.sleep(delay)
    start = time.monotonic()
    client = None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            client = await IceTcpClient.connect(host, port)
            if await client.check(ice):
                return time.monotonic() - start, client
    except (TimeoutError, OSError):
        pass
    if client is not None:
        client.close()
    return None, None


async def test_idle_connection_flood_does_not_lock_out_ice_checks():
    async with server_and_router() as (server, router):
        transports = [await router.create_webrtc_transport(webrtc_server=server, enable_udp=False,
                                                           enable_tcp=True)
                      for _ in range(CHECKS)]
        host, port = server.tcp_servers[0]["ip"], server.tcp_servers[0]["port"]
        groups = [f"{ip}:{n}" for ip, n in [*CROWD, LONE]]
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, str(FLOODER), host, str(port), str(FLOOD_SECONDS), *groups,
            stdout=asyncio.subprocess.PIPE)
        clients: list[IceTcpClient] = []
        try:
            flood_end = time.monotonic() + FLOOD_SECONDS
            assert await asyncio.wait_for(flooder.stdout.readline(), 5) == b"filled\n"
            results = await asyncio.gather(*(
                timed_check(i * CHECK_SPACING, host, port, t.ice_parameters)
                for i, t in enumerate(transports)))
            checks_done = time.monotonic()
            passed = [(c, t) for (_, c), t in zip(results, transports, strict=True)
                      if c is not None]
            clients = [c for c, _ in passed]
            times = [round(t, 3) for t, _ in results if t is not None]
            stdout, _ = await asyncio.wait_for(flooder.communicate(), FLOOD_SECONDS + 5)
            flood = json.loads(stdout.splitlines()[-1])
            print(f"legit checks: {len(times)}/{CHECKS} succeeded, seconds: {times}; "
                  f"flooder: {flood}")
            assert checks_done < flood_end  # every check ran while the flood was on
            assert flood["connects"] > 260  # ... and the flooder was being dropped
            assert len(times) >= MIN_SUCCESSES, f"only {len(times)} of {CHECKS} checks succeeded"

            # Connections that passed ICE are the transports': no stranger evicted them.
            for client, transport in passed:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    assert await client.check(transport.ice_parameters)

            listener = (await server.dump())["tcpServers"][0]
            print(f"listener: {listener}")
            assert listener["claimed"] >= len(clients)
            assert listener["evictedOldest"] > 0  # the full listener made room
            assert listener["evictedPerAddress"] > 0  # the lone address was held to its limit
            assert listener["unclaimed"] <= webrtc_sockets.MAX_TCP_CONNECTIONS
        finally:
            for client in clients:
                client.close()
            if flooder.returncode is None:
                flooder.kill()
                await flooder.wait()


async def test_silent_and_chatty_strangers_are_closed():
    """A connection that sends nothing valid is closed at the first-check deadline; one that
    sends frames without passing a check is closed when its frame budget is spent."""
    async with server_and_router() as (server, router):
        transport = await router.create_webrtc_transport(webrtc_server=server, enable_udp=False,
                                                         enable_tcp=True)
        host, port = server.tcp_servers[0]["ip"], server.tcp_servers[0]["port"]
        wrong = {**transport.ice_parameters, "password": "x" * 32}

        async def seconds_until_closed(reader: asyncio.StreamReader) -> float:
            start = time.monotonic()
            async with asyncio.timeout(webrtc_sockets.FIRST_CHECK_TIMEOUT + 3):
                assert await reader.read(4096) == b""
            return time.monotonic() - start

        silent_reader, silent = await asyncio.open_connection(host, port)
        chatty_reader, chatty = await asyncio.open_connection(host, port)
        chatty.write(b"".join(encode_frame(binding_request(wrong))
                              for _ in range(webrtc_sockets.MAX_UNCLAIMED_FRAMES + 1)))
        try:
            chatty_after, silent_after = await asyncio.gather(
                seconds_until_closed(chatty_reader), seconds_until_closed(silent_reader))
            assert chatty_after < 1.0
            assert webrtc_sockets.FIRST_CHECK_TIMEOUT - 0.2 < silent_after \
                < webrtc_sockets.FIRST_CHECK_TIMEOUT + 1.0

            client = await IceTcpClient.connect(host, port)  # a legit one still gets in
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    assert await client.check(transport.ice_parameters)
            finally:
                client.close()
            listener = (await server.dump())["tcpServers"][0]
            assert listener["closedNoValidCheck"] == 1
            assert listener["closedTooManyFrames"] == 1
            assert listener["claimed"] == 1
        finally:
            silent.close()
            chatty.close()
