"""Micro-benchmark of the worker's packet path (not a test; prints ns/packet).

    python3 tests/worker/bench_fanout.py [--mode auto|copy|socket|zerocopy] [--srtp]
                                         [--quality | --compare-quality]

--quality: producer and consumers negotiate NACK (so every inbound packet is also stored once
in the shared retransmission store and run through the NACK generator); RTCP reports run as
always. --compare-quality: each consumer count without then with, in the same run.

Builds a router in-process (real WorkerContext, SendRing, UDP sockets on 127.0.0.1), then:
1. per inbound packet: Producer.receive() (fan-out: copy + ext-id rewrite per group, per
   consumer rewrite + ring.send) timed apart from ring.flush() (the kernel's share);
2. the whole inbound path: datagrams queued on the producer's socket, then one drain
   (`_on_rtp_readable`: recvfrom_into, demux, validation, SSRC lookup, fan-out, one flush).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
import time

import uvloop

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from media_harness import Media, rtp  # noqa: E402

from relay.transport.port_allocator import PortAllocator  # noqa: E402
from relay.uring import SendRing  # noqa: E402


def _with_nack(media: Media, handler_id: str, method: str, data: dict) -> None:
    """Re-issue a produce/consume request with "nack" feedback on its codecs."""
    data = copy.deepcopy(data)  # the harness's codec dicts are module constants
    for codec in data["rtpParameters"]["codecs"]:
        codec["rtcpFeedback"] = [{"type": "nack", "parameter": ""}]
    media.ctx.handlers[handler_id].handle_request(method, data)


def _captured(media: Media, call) -> tuple:
    """The (handler id, method, data) of the request `call()` makes, not sent."""
    captured: list = []
    media.request = lambda h, m, d=None: captured.append((h, m, d))  # type: ignore[method-assign]
    try:
        call()
    finally:
        del media.request  # back to the class's method
    return captured[0]


async def setup(consumers: int, mode: str | None, srtp: bool, quality: bool = False):
    loop = asyncio.get_running_loop()
    ring = SendRing(mode=mode)
    ring.attach(loop)
    media = Media(loop, ring, PortAllocator(43000, 43999))
    media.router()
    media.transport("tp")
    sender = media.peer()
    media.connect("tp", sender)
    if quality:  # the request media.produce() would send, with NACK
        _with_nack(media, *_captured(media, lambda: media.produce("tp")))
    else:
        media.produce("tp")
    for i in range(consumers):
        options = {"enableSrtp": True} if srtp else {}
        media.transport(f"tc{i}", **options)
        peer = media.peer()
        extra = {}
        if srtp:
            extra["srtpParameters"] = media.request(f"tc{i}", "transport.dump")["srtpParameters"]
        media.connect(f"tc{i}", peer, **extra)
        if quality:
            _with_nack(media, *_captured(media, lambda i=i: media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i)))
        else:
            media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i)
    return media, sender


async def bench(consumers: int, mode: str | None, srtp: bool, quality: bool = False) -> float:
    media, sender = await setup(consumers, mode, srtp, quality)
    producer_stats = media.request("p1", "producer.getStats")[0]
    assert (producer_stats["retransmissionStore"] is not None) == quality
    ring = media.ctx.ring
    producer = media.ctx.handlers["p1"]
    transport = media.ctx.handlers["tp"]
    packet = rtp(0, 0, payload=b"\x00" * 176, extensions={1: b"\x90", 3: b"\x01\x02\x03"})
    assert len(packet) == 200  # 200 bytes, like the opus-like packets
    buf = bytearray(2048)
    view = memoryview(buf)
    n = len(packet)
    batch = 32
    rounds = max(50, 20000 // consumers)
    fan_ns = flush_ns = 0
    seq = 0
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            seq = (seq + 1) & 0xFFFF
            buf[:n] = packet
            buf[2] = seq >> 8
            buf[3] = seq & 0xFF
            producer.receive(view, n, 0, 1111, seq, seq * 960, 0.0)
        t1 = time.perf_counter_ns()
        ring.flush()
        t2 = time.perf_counter_ns()
        fan_ns += t1 - t0
        flush_ns += t2 - t1
        if mode != "socket":
            await asyncio.sleep(0)  # let completions be reaped
    inbound = rounds * batch
    sends = inbound * consumers
    print(f"consumers={consumers:3d} mode={ring.mode:8s} srtp={srtp!s:5s} quality={quality!s:5s} "
          f"fan-out: {fan_ns / inbound:8.0f} ns/inbound packet = {fan_ns / sends:6.0f} ns/consumer "
          f"| flush (kernel): {flush_ns / sends:6.0f} ns/send "
          f"| total {1e9 / ((fan_ns + flush_ns) / sends):9.0f} sends/s")

    # Whole inbound path: queue datagrams on the producer's socket, then time one drain each.
    drain_ns = 0
    packets = 0
    remote = (transport.local_ip, transport.local_port)
    for _ in range(max(20, 2000 // consumers)):
        for _ in range(batch):
            seq = (seq + 1) & 0xFFFF
            sender.sock.sendto(rtp(seq, seq * 960, payload=b"\x00" * 176,
                                   extensions={1: b"\x90", 3: b"\x01\x02\x03"}), remote)
        t0 = time.perf_counter_ns()
        transport._on_rtp_readable()
        drain_ns += time.perf_counter_ns() - t0
        packets += batch
        if mode != "socket":
            await asyncio.sleep(0)
    print(f"    whole drain (recv+demux+validate+fan-out+flush): {drain_ns / packets:8.0f} ns/inbound "
          f"= {drain_ns / (packets * consumers):6.0f} ns/send → {1e9 * packets * consumers / drain_ns:9.0f} sends/s")
    for handler in list(media.ctx.handlers.values()):
        if handler.__class__.__name__ == "Router":
            handler.close()
    for peer in media.peers:
        peer.close()
    ring.detach()
    ring.close()
    return drain_ns / packets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default=None)
    parser.add_argument("--srtp", action="store_true")
    parser.add_argument("--consumers", type=int, nargs="*", default=[1, 10, 40])
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--compare-quality", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for consumers in args.consumers:
        if not args.compare_quality:
            uvloop.run(bench(consumers, args.mode, args.srtp, args.quality))
            continue
        off, on = [], []
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            off.append(uvloop.run(bench(consumers, args.mode, args.srtp, False)))
            on.append(uvloop.run(bench(consumers, args.mode, args.srtp, True)))
        best_off, best_on = min(off), min(on)
        print(f"RESULT consumers={consumers} drain ns/inbound off={best_off:.0f} on={best_on:.0f} "
              f"cost={100 * (best_on / best_off - 1):+.1f}% "
              f"forwarded/s off={1e9 * consumers / best_off:.0f} on={1e9 * consumers / best_on:.0f}",
              flush=True)


if __name__ == "__main__":
    main()
