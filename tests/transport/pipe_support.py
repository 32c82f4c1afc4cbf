"""Shared pieces of the pipe tests: two workers, RTP senders and counting receivers on
127.0.0.1, VP8 key/delta frames."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import relay

OPUS = {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}
VP8 = {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
MEDIA_CODECS = [OPUS, VP8]
TEST_TIMEOUT = 40.0
OPUS_PT = 111
VP8_PT = 96
VP8_KEY = b"\x10\x00\x9d\x01\x2a" + b"\xab" * 35
VP8_DELTA = b"\x10\x01" + b"\xab" * 38
FB = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
      {"type": "ccm", "parameter": "fir"}]


def opus_parameters(ssrc: int = 11111111) -> dict:
    return {"codecs": [{"mimeType": "audio/opus", "payloadType": OPUS_PT, "clockRate": 48000,
                        "channels": 2}],
            "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1}],
            "encodings": [{"ssrc": ssrc}], "rtcp": {"cname": "sender"}}


def vp8_parameters(ssrcs: list[int]) -> dict:
    return {"codecs": [{"mimeType": "video/VP8", "payloadType": VP8_PT, "clockRate": 90000,
                        "rtcpFeedback": FB}],
            "headerExtensions": [], "encodings": [{"ssrc": s} for s in ssrcs],
            "rtcp": {"cname": "sender"}}


def rtp(seq: int, ts: int, ssrc: int, pt: int, payload: bytes = b"\xab" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class Endpoint:
    """A UDP socket on 127.0.0.1 (or `ip`) that sends RTP and collects what arrives."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(data, addr)

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            (self.rtcp if 64 <= (data[1] & 0x7F) <= 95 else self.rtp).append(data)

    def ssrc_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for packet in self.rtp:
            ssrc = struct.unpack_from("!I", packet, 8)[0]
            counts[ssrc] = counts.get(ssrc, 0) + 1
        return counts

    def close(self) -> None:
        self.sock.close()


def run(coro) -> None:
    """Run one test coroutine with a deadline."""
    asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


async def send_paced(sender: Endpoint, address: tuple[str, int], packets: list[bytes],
                     receivers: tuple[Endpoint, ...] = (), interval: float = 0.001) -> None:
    """Send `packets` one per `interval`, draining `receivers` on the way (their socket
    buffers never fill)."""
    for packet in packets:
        sender.send(packet, address)
        for receiver in receivers:
            receiver.drain()
        await asyncio.sleep(interval)


async def collect(endpoint: Endpoint, until, timeout: float = 5.0) -> None:
    """Drain `endpoint` until `until()` holds (or the time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        endpoint.drain()
        if until() or loop.time() > deadline:
            return
        await asyncio.sleep(0.01)


async def collect_all(endpoint: Endpoint, count: int) -> None:
    """Drain `endpoint` until `count` RTP packets arrived, then once more a moment later (a
    packet too many would show)."""
    await collect(endpoint, lambda: len(endpoint.rtp) >= count)
    await asyncio.sleep(0.1)
    endpoint.drain()


@contextlib.asynccontextmanager
async def two_workers():
    """Two workers with a router each."""
    worker_a = await relay.create_worker(rtc_min_port=43000, rtc_max_port=43499)
    worker_b = await relay.create_worker(rtc_min_port=43500, rtc_max_port=43999)
    try:
        router_a = await worker_a.create_router(media_codecs=MEDIA_CODECS)
        router_b = await worker_b.create_router(media_codecs=MEDIA_CODECS)
        yield router_a, router_b
    finally:
        for worker in (worker_a, worker_b):
            worker.close()
        for worker in (worker_a, worker_b):
            await asyncio.wait_for(worker.wait_closed(), 10)


async def ingress(router, kind: str, rtp_parameters: dict):
    """A comedia plain transport with a producer, and the endpoint that sends to it."""
    transport = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
    producer = await transport.produce(kind=kind, rtp_parameters=rtp_parameters)
    sender = Endpoint()
    address = (transport.tuple["localIp"], transport.tuple["localPort"])
    return transport, producer, sender, address


async def egress(router, producer_id: str):
    """A plain transport toward a fresh endpoint, consuming `producer_id` (simulcast
    producers give a simulcast consumer at the highest layer)."""
    receiver = Endpoint()
    transport = await router.create_plain_transport(listen_ip="127.0.0.1")
    await transport.connect(ip="127.0.0.1", port=receiver.port)
    consumer = await transport.consume(producer_id=producer_id,
                                       rtp_capabilities=router.rtp_capabilities)
    return transport, consumer, receiver
