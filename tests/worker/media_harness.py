"""In-process harness (shared by tests/worker via conftest.py) for the worker-side media objects: a real WorkerContext with a real
SendRing and PortAllocator, real UDP sockets on 127.0.0.1, requests sent straight to
`handle_request` (the channel is tested elsewhere, end to end)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
import uvloop

from relay.rtp.packet import build_rtp
from relay.transport.port_allocator import PortAllocator
from relay.uring import SendRing
from relay.worker.context import WorkerContext
from relay.worker.router import Router

OPUS = {"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}
VP8 = {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
PRODUCER_SSRC = 1111
# A VP8 payload that starts a key frame (descriptor S=1 PID=0, then P=0): RFC 7741.
VP8_KEY_FRAME = b"\x10\x00\x9d\x01\x2a" + b"\xab" * 35
VP8_DELTA_FRAME = b"\x10\x01" + b"\xab" * 38
MAPPED_SSRC = 5000


class Peer:
    """A remote endpoint: a non-blocking UDP socket on 127.0.0.1."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        # Tests drain at the end: with the default buffer (~150 small datagrams) the kernel
        # dropped the rest, and comparisons of what arrived saw only the first part.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []

    def send(self, data: bytes, tuple_: dict | tuple) -> None:
        if isinstance(tuple_, dict):
            tuple_ = (tuple_["localIp"], tuple_["localPort"])
        self.sock.sendto(data, tuple_)

    def drain(self) -> list[bytes]:
        while True:
            try:
                self.received.append(self.sock.recv(4096))
            except BlockingIOError:
                return self.received

    def close(self) -> None:
        self.sock.close()


class Media:
    def __init__(self, loop: asyncio.AbstractEventLoop, ring: SendRing, ports: PortAllocator) -> None:
        self.notifications: list[tuple[str, str, dict | None]] = []
        self.ctx = WorkerContext(
            loop=loop,
            ring=ring,
            ports=ports,
            handlers={},
            notify=lambda h, e, d: self.notifications.append((h, e, d)),
            settings={},
        )
        self.peers: list[Peer] = []

    def request(self, handler_id: str, method: str, data: dict | None = None):
        return self.ctx.handlers[handler_id].handle_request(method, data if data is not None else {})

    def router(self, router_id: str = "r1") -> Router:
        return Router(router_id, {"routerId": router_id, "mediaCodecs": [OPUS, VP8]}, self.ctx)

    def transport(self, transport_id: str, router_id: str = "r1", **options) -> dict:
        data = {
            "transportId": transport_id,
            "listenIp": "127.0.0.1",
            "port": None,
            "rtcpMux": True,
            "comedia": False,
            "enableSrtp": False,
            "srtpCryptoSuite": "AES_CM_128_HMAC_SHA1_80",
        }
        data.update(options)
        return self.request(router_id, "router.createPlainTransport", data)

    def peer(self) -> Peer:
        peer = Peer()
        self.peers.append(peer)
        return peer

    def connect(self, transport_id: str, peer: Peer, **extra) -> dict:
        return self.request(
            transport_id, "transport.connect", {"ip": "127.0.0.1", "port": peer.port, **extra}
        )

    def publish_subscribe(self) -> tuple[dict, dict, Peer, Peer]:
        """Router r1, a publishing peer on transport "tp" and a subscribing one on "tc":
        (tp's data, tc's data, publisher, subscriber)."""
        self.router()
        tp = self.transport("tp")
        tc = self.transport("tc")
        publisher, subscriber = self.peer(), self.peer()
        self.connect("tp", publisher)
        self.connect("tc", subscriber)
        return tp, tc, publisher, subscriber

    def produce(self, transport_id: str, producer_id: str = "p1", kind: str = "audio",
                ssrc: int | None = PRODUCER_SSRC, paused: bool = False, extensions=None) -> dict:
        codec = OPUS if kind == "audio" else VP8
        encoding = {"ssrc": ssrc} if ssrc is not None else {}
        mapped = 100 if kind == "audio" else 101
        return self.request(transport_id, "transport.produce", {
            "producerId": producer_id,
            "kind": kind,
            "rtpParameters": {
                "codecs": [codec],
                "headerExtensions": extensions if extensions is not None else [
                    {"uri": AUDIO_LEVEL, "id": 1}, {"uri": ABS_SEND_TIME, "id": 3}, {"uri": MID, "id": 4},
                ],
                "encodings": [encoding],
            },
            "rtpMapping": {
                "codecs": [{"payloadType": codec["payloadType"], "mappedPayloadType": mapped}],
                "encodings": [{**encoding, "mappedSsrc": MAPPED_SSRC}],
            },
            "paused": paused,
        })

    def consume(self, transport_id: str, consumer_id: str, ssrc: int, producer_id: str = "p1",
                kind: str = "audio", paused: bool = False, extensions=None) -> dict:
        codec = dict(OPUS if kind == "audio" else VP8)
        codec["payloadType"] = 100 if kind == "audio" else 101
        return self.request(transport_id, "transport.consume", {
            "consumerId": consumer_id,
            "producerId": producer_id,
            "kind": kind,
            "rtpParameters": {
                "codecs": [codec],
                "headerExtensions": extensions if extensions is not None else [
                    {"uri": AUDIO_LEVEL, "id": 10}, {"uri": ABS_SEND_TIME, "id": 2},
                ],
                "encodings": [{"ssrc": ssrc}],
            },
            "type": "simple",
            "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}],
            "paused": paused,
        })

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 3.0) -> None:
        """Let the loop run until `condition()` holds (polls every millisecond)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for a condition")
            await asyncio.sleep(0.001)

    async def settle(self) -> None:
        """Let pending socket readiness be processed (for 'nothing arrives' checks)."""
        for _ in range(5):
            await asyncio.sleep(0.005)


def rtp(seq: int, ts: int, ssrc: int = PRODUCER_SSRC, pt: int = 111, payload: bytes = b"\xab" * 40,
        **kw) -> bytes:
    return build_rtp(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                     payload=payload, **kw)


@pytest.fixture
def run_media():
    """run_media(async_fn): run `async_fn(media)` in a fresh uvloop loop with a fresh ring."""

    def run(body, ring_mode: str | None = None, min_port: int = 42000, max_port: int = 42999):
        async def main():
            loop = asyncio.get_running_loop()
            ring = SendRing(mode=ring_mode)
            ring.attach(loop)
            media = Media(loop, ring, PortAllocator(min_port, max_port))
            try:
                return await body(media)
            finally:
                for handler in list(media.ctx.handlers.values()):
                    if isinstance(handler, Router):
                        handler.close()
                for peer in media.peers:
                    peer.close()
                ring.detach()
                ring.close()

        return uvloop.run(main())

    return run
