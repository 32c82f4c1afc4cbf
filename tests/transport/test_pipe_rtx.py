"""A pipe with RTX repairs a packet lost on the way: two routers in two WorkerContexts of one
process (each with its own send ring), joined by pipe transports on 127.0.0.1; one datagram
is taken off the far pipe socket before the far router reads it. The far router NACKs it,
the pipe consumer answers with RTX, and the far subscriber gets every packet."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))

from media_harness import (  # noqa: E402
    MAPPED_SSRC,
    VP8,
    VP8_DELTA_FRAME,
    VP8_KEY_FRAME,
    Media,
    rtp,
)

from relay.transport.port_allocator import PortAllocator  # noqa: E402
from relay.uring import SendRing  # noqa: E402

FB = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"},
      {"type": "ccm", "parameter": "fir"}]
PACKETS = 40
LOST = 20  # the pipe datagram dropped on the way (0-based, counting media only)


def _video(pt: int, rtx_pt: int | None = None) -> list[dict]:
    codecs = [{**VP8, "payloadType": pt, "rtcpFeedback": FB}]
    if rtx_pt is not None:
        codecs.append({"mimeType": "video/rtx", "payloadType": rtx_pt, "clockRate": 90000,
                       "parameters": {"apt": pt}})
    return codecs


def test_pipe_rtx_repairs_a_lost_packet():
    uvloop.run(asyncio.wait_for(_scenario(), 30))


async def _scenario() -> None:
    loop = asyncio.get_running_loop()
    rings = [SendRing(mode="copy"), SendRing(mode="copy")]
    for ring in rings:
        ring.attach(loop)
    a = Media(loop, rings[0], PortAllocator(45000, 45499))
    b = Media(loop, rings[1], PortAllocator(45500, 45999))
    try:
        await _run(a, b)
    finally:
        for media in (a, b):
            for handler in list(media.ctx.handlers.values()):
                if handler.__class__.__name__ == "Router":
                    handler.close()
            for peer in media.peers:
                peer.close()
        for ring in rings:
            ring.detach()
            ring.close()


async def _run(a: Media, b: Media) -> None:
    a.router("ra")
    b.router("rb")
    a.transport("tp", router_id="ra")
    sender = a.peer()
    a.connect("tp", sender)
    a.request("tp", "transport.produce", {
        "producerId": "p1", "kind": "video",
        "rtpParameters": {"codecs": _video(96), "headerExtensions": [],
                          "encodings": [{"ssrc": 1111}]},
        "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                       "encodings": [{"ssrc": 1111, "mappedSsrc": MAPPED_SSRC}]}})
    listen = {"listenInfo": {"protocol": "udp", "ip": "127.0.0.1"}, "enableRtx": True}
    pa = a.request("ra", "router.createPipeTransport", {"transportId": "pa", **listen})
    pb = b.request("rb", "router.createPipeTransport", {"transportId": "pb", **listen})
    assert pa["rtx"] is True and pa["srtpParameters"] is None
    a.request("pa", "transport.connect", {"ip": "127.0.0.1", "port": pb["tuple"]["localPort"]})
    b.request("pb", "transport.connect", {"ip": "127.0.0.1", "port": pa["tuple"]["localPort"]})
    pipe = {"codecs": _video(101, 102), "headerExtensions": [],
            "encodings": [{"ssrc": 9000, "rtx": {"ssrc": 9500}}], "rtcp": {"cname": "a"}}
    a.request("pa", "transport.consume", {
        "consumerId": "pipe", "producerId": "p1", "kind": "video", "type": "pipe",
        "rtpParameters": pipe, "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}]})
    b.request("pb", "transport.produce", {
        "producerId": "p1", "kind": "video", "rtpParameters": pipe,
        "rtpMapping": {"codecs": [{"payloadType": 101, "mappedPayloadType": 101},
                                  {"payloadType": 102, "mappedPayloadType": 102}],
                       "encodings": [{"ssrc": 9000, "mappedSsrc": MAPPED_SSRC}]}})
    b.transport("tc", router_id="rb")
    subscriber = b.peer()
    b.connect("tc", subscriber)
    b.request("tc", "transport.consume", {
        "consumerId": "c1", "producerId": "p1", "kind": "video", "type": "simple",
        "rtpParameters": {"codecs": [{**VP8, "payloadType": 101, "rtcpFeedback": FB}],
                          "headerExtensions": [], "encodings": [{"ssrc": 4242}]},
        "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}]})

    far_pipe = b.ctx.handlers["pb"]
    far_socket = far_pipe._sock
    loop_reader = far_pipe._on_readable
    b.ctx.loop.remove_reader(far_pipe.fd)  # this test reads the far pipe itself
    media_seen = 0
    dropped = None
    for i in range(PACKETS):
        sender.send(rtp(100 + i, i * 3000, ssrc=1111, pt=96,
                        payload=VP8_KEY_FRAME if i == 0 else VP8_DELTA_FRAME), a.ctx.handlers["tp"]
                    .tuple())
        await asyncio.sleep(0.002)  # the near router forwards it into the pipe
        if media_seen == LOST and dropped is None:
            data = far_socket.recv(2048)  # lost on the way (an SR before it, too)
            while 64 <= data[1] & 0x7F <= 95:
                data = far_socket.recv(2048)
            dropped = int.from_bytes(data[2:4], "big")
        media_seen += 1
        loop_reader()
    b.ctx.loop.add_reader(far_pipe.fd, loop_reader)  # NACK -> RTX -> the far router
    await b.wait_for(lambda: len([p for p in subscriber.drain()
                                  if not 64 <= p[1] & 0x7F <= 95]) >= PACKETS, 5)
    media = [p for p in subscriber.received if not 64 <= p[1] & 0x7F <= 95]
    assert len(media) == PACKETS
    assert sorted(int.from_bytes(p[2:4], "big") for p in media) == \
        sorted({int.from_bytes(p[2:4], "big") for p in media})  # no duplicates
    lane = a.request("pipe", "consumer.getStats")[0]
    assert lane["nackCount"] >= 1 and lane["retransmittedPackets"] >= 1
    assert lane["rtxSsrc"] == 9500
    producer = b.request("p1", "producer.getStats")[0]
    assert producer["rtxPacketsReceived"] >= 1 and producer["packetsRecovered"] >= 1
    assert dropped is not None
