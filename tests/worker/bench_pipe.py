"""Micro-benchmark of what a pipe costs (not a test): one inbound audio packet fanned out to
K consumers on one router, against the same K split over two routers joined by a pipe
transport pair (K/2 on the producer's router, a pipe consumer, then K/2 on the other). Both
"workers" run in this process (two WorkerContexts, two send rings), so an instruction count
covers the work of both. Two more layouts take each side of a pipe alone: `send`, the
producer's worker with K consumers and a pipe consumer toward a socket (compare with
`single`: the pipe consumer's share); `recv`, the far worker alone, a pipe transport fed by a
socket as the pipe consumer would, its producer fanned out to K consumers (compare with
`single`: the pipe's receive path against a plain transport's):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python3 tests/worker/bench_pipe.py --layout piped --packets 1200
    (the same with --packets 200; (difference) / 1000 = instructions per inbound packet)

Without valgrind it prints wall-clock ns per inbound packet (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import uvloop

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from media_harness import MAPPED_SSRC, OPUS, PRODUCER_SSRC, Media, rtp  # noqa: E402

from relay.transport.port_allocator import PortAllocator  # noqa: E402
from relay.uring import SendRing  # noqa: E402

BATCH = 32
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def _consumers(media: Media, router: str, transport_prefix: str, count: int,
               producer_id: str = "p1") -> None:
    for i in range(count):
        tid = f"{transport_prefix}{i}"
        media.transport(tid, router_id=router)
        media.connect(tid, media.peer())
        media.consume(tid, f"c{transport_prefix}{i}", ssrc=7000 + i, producer_id=producer_id)


async def setup(layout: str, consumers: int, mode: str):
    loop = asyncio.get_running_loop()
    rings = [SendRing(mode=mode), SendRing(mode=mode)]
    for ring in rings:
        ring.attach(loop)
    a = Media(loop, rings[0], PortAllocator(45000, 45499))
    a.router()
    a.transport("tp")
    sender = a.peer()
    a.connect("tp", sender)
    a.produce("tp", extensions=[{"uri": LEVEL, "id": 1}])
    drains = [a.ctx.handlers["tp"]._on_rtp_readable]
    if layout == "single":
        _consumers(a, "r1", "tc", consumers)
        return [a], rings, sender, drains
    listen = {"listenInfo": {"protocol": "udp", "ip": "127.0.0.1"}}
    codec = {**OPUS, "payloadType": 100}
    pipe_parameters = {"codecs": [codec], "headerExtensions": [{"uri": LEVEL, "id": 10}],
                       "encodings": [{"ssrc": 9000}], "rtcp": {"cname": "bench"}}
    if layout == "send":
        sink = a.peer()
        a.request("r1", "router.createPipeTransport", {"transportId": "pa", **listen})
        a.request("pa", "transport.connect", {"ip": "127.0.0.1", "port": sink.port})
        a.request("pa", "transport.consume", {
            "consumerId": "pipe", "producerId": "p1", "kind": "audio", "type": "pipe",
            "rtpParameters": pipe_parameters, "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}]})
        _consumers(a, "r1", "tc", consumers)
        return [a], rings, sender, drains
    b = Media(loop, rings[1], PortAllocator(45500, 45999))
    b.router("r2")
    pa = a.request("r1", "router.createPipeTransport", {"transportId": "pa", **listen})
    pb = b.request("r2", "router.createPipeTransport", {"transportId": "pb", **listen})
    a.request("pa", "transport.connect", {"ip": "127.0.0.1", "port": pb["tuple"]["localPort"]})
    b.request("pb", "transport.connect", {"ip": "127.0.0.1", "port": pa["tuple"]["localPort"]})
    a.request("pa", "transport.consume", {
        "consumerId": "pipe", "producerId": "p1", "kind": "audio", "type": "pipe",
        "rtpParameters": pipe_parameters, "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}]})
    b.request("pb", "transport.produce", {
        "producerId": "p1", "kind": "audio", "rtpParameters": pipe_parameters,
        "rtpMapping": {"codecs": [{"payloadType": 100, "mappedPayloadType": 100}],
                       "encodings": [{"ssrc": 9000, "mappedSsrc": MAPPED_SSRC}]}})
    if layout == "recv":  # the far side alone: this process's socket plays the pipe consumer
        a.request("pa", "transport.close")
        feed = b.peer()
        b.ctx.handlers["pb"].remote = None
        b.ctx.handlers["pb"]._remote_match = ("127.0.0.1", feed.port)
        _consumers(b, "r2", "tb", consumers)
        return [b], rings, feed, [b.ctx.handlers["pb"]._on_readable]
    _consumers(a, "r1", "ta", consumers // 2)
    _consumers(b, "r2", "tb", consumers - consumers // 2)
    drains.append(b.ctx.handlers["pb"]._on_readable)
    return [a, b], rings, sender, drains


async def run(layout: str, consumers: int, packets: int, mode: str) -> None:
    medias, rings, sender, drains = await setup(layout, consumers, mode)
    inbound = medias[0].ctx.handlers["pb" if layout == "recv" else "tp"]
    target = (inbound.local_ip, inbound.local_port)
    ssrc, pt, ext = (9000, 100, 10) if layout == "recv" else (PRODUCER_SSRC, 111, 1)
    peers = [peer for media in medias for peer in media.peers if peer is not sender]
    sent = 0
    elapsed = 0
    seq = 0
    while sent < packets:
        for _ in range(min(BATCH, packets - sent)):
            seq += 1
            sender.sock.sendto(rtp(seq, seq * 960, ssrc=ssrc, pt=pt, payload=b"\x00" * 176,
                                   extensions={ext: b"\x90"}), target)
            sent += 1
        t0 = time.perf_counter_ns()
        for drain in drains:  # the producer's worker, then (piped) the other
            drain()
        elapsed += time.perf_counter_ns() - t0
        await asyncio.sleep(0)
        for peer in peers:  # outside the timing: the sockets must not overflow
            peer.drain()
    await asyncio.sleep(0.05)
    received = [len([p for p in peer.drain() if not 64 <= p[1] & 0x7F <= 95])
                for peer in peers]
    print(f"layout={layout} consumers={consumers} packets={packets} "
          f"{elapsed / packets:.0f} ns/inbound packet (wall), received per consumer "
          f"min {min(received)} max {max(received)}")
    for media in medias:
        for handler in list(media.ctx.handlers.values()):
            if handler.__class__.__name__ == "Router":
                handler.close()
        for peer in media.peers:
            peer.close()
    for ring in rings:
        ring.detach()
        ring.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", choices=("single", "piped", "send", "recv"), default="piped")
    parser.add_argument("--consumers", type=int, default=10)
    parser.add_argument("--packets", type=int, default=1200)
    parser.add_argument("--mode", default="socket", help="send ring mode (valgrind: socket)")
    args = parser.parse_args()
    uvloop.run(run(args.layout, args.consumers, args.packets, args.mode))


if __name__ == "__main__":
    main()
