"""Forwarding rate at >= 99 % delivery, 1 producer -> N consumers (not a test; a quick script).

    python3 tests/worker/bench_forwarding_rate.py [--consumers 10 40] [--mode auto] [--seconds 2]
                                                  [--compare-quality]

--compare-quality: for each consumer count, the search without then with NACK negotiated by
the producer and every consumer (shared retransmission store, NACK generator); RTCP reports
run in both (they are always on).

The worker objects run in this process (uvloop, pinned to CPU 0); a child process pinned to
CPU 1 sends 200-byte opus-like RTP at a paced rate and reads every consumer's socket. For each
offered rate the delivery is received / (sent x N); the script reports the highest forwarded
packets/s (sent x N per second) that kept >= 99 % delivery. Loopback: the kernel's receive-side
work runs in the sender's (here: the worker's) context, so this is pessimistic for the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", ".."))


def child(target_port: int, rate: int, seconds: float, fds: list[int]) -> None:
    """Send at `rate` packets/s for `seconds`, read all receivers; print 'sent received'."""
    from relay.rtp.packet import build_rtp

    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass
    tx = socket.socket(fileno=fds[0])
    receivers = [socket.socket(fileno=fd) for fd in fds[1:]]
    sel = selectors.EpollSelector()
    for r in receivers:
        r.setblocking(False)
        sel.register(r, selectors.EVENT_READ)
    received = 0
    sent = 0
    payload = b"\x00" * 176
    ext = {1: b"\x90", 3: b"\x01\x02\x03"}
    start = time.perf_counter()
    end = start + seconds
    addr = ("127.0.0.1", target_port)
    seq = 0

    def drain() -> int:
        got = 0
        for key, _ in sel.select(0):
            sock = key.fileobj
            while True:
                try:
                    sock.recv(2048)
                    got += 1
                except BlockingIOError:
                    break
        return got

    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - start) * rate)
        while sent < due:
            seq = (seq + 1) & 0xFFFF
            tx.sendto(build_rtp(payload_type=111, sequence_number=seq, timestamp=seq * 960,
                                ssrc=1111, payload=payload, extensions=ext), addr)
            sent += 1
        received += drain()
    quiet_until = time.perf_counter() + 0.3
    while time.perf_counter() < quiet_until:
        got = drain()
        received += got
        if got:
            quiet_until = time.perf_counter() + 0.1
    print(sent, received, flush=True)


async def run_rate(consumers: int, rate: int, seconds: float, mode: str | None,
                   quality: bool = False) -> float:
    from bench_fanout import _captured, _with_nack
    from media_harness import Media

    from relay.transport.port_allocator import PortAllocator
    from relay.uring import SendRing

    loop = asyncio.get_running_loop()
    ring = SendRing(mode=mode)
    ring.attach(loop)
    media = Media(loop, ring, PortAllocator(45000, 45999))
    media.router()
    tp = media.transport("tp")
    sender = media.peer()
    media.connect("tp", sender)
    if quality:
        _with_nack(media, *_captured(media, lambda: media.produce("tp")))
    else:
        media.produce("tp")
    peers = []
    for i in range(consumers):
        media.transport(f"tc{i}")
        peer = media.peer()
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        media.connect(f"tc{i}", peer)
        if quality:
            _with_nack(media, *_captured(media, lambda i=i: media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i)))
        else:
            media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i)
        peers.append(peer)
    fds = [sender.sock.fileno()] + [p.sock.fileno() for p in peers]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", str(tp["tuple"]["localPort"]), str(rate),
        str(seconds), ",".join(map(str, fds)), pass_fds=fds, stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    sent, received = map(int, out.split())
    ring_stats = ring.stats()
    for handler in list(media.ctx.handlers.values()):
        if handler.__class__.__name__ == "Router":
            handler.close()
    for peer in media.peers:
        peer.close()
    ring.detach()
    ring.close()
    delivery = received / max(1, sent * consumers)
    print(f"  consumers={consumers} quality={quality} offered={rate}/s forwarded={received / seconds:9.0f}/s "
          f"delivery={delivery * 100:6.2f}% ring={ring.mode} drops={ring_stats.get('exhaustionDrops')}",
          flush=True)
    return delivery


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, rate, seconds, fds = sys.argv[2:6]
        child(int(port), int(rate), float(seconds), [int(f) for f in fds.split(",")])
        return
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--consumers", type=int, nargs="*", default=[10, 40])
    parser.add_argument("--mode", default=None)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--compare-quality", action="store_true")
    args = parser.parse_args()
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass
    for consumers in args.consumers:
        for quality in ([False, True] if args.compare_quality else [False]):
            low, high = 1000, 60000  # inbound packets/s; bisect on >= 99 % delivery
            best = 0
            while high - low > max(500, low // 20):
                rate = (low + high) // 2
                if uvloop.run(run_rate(consumers, rate, args.seconds, args.mode, quality)) >= 0.99:
                    best = rate
                    low = rate
                else:
                    high = rate
            print(f"1 -> {consumers} quality={quality}: {best * consumers} forwarded packets/s at "
                  f">= 99 % delivery ({best} inbound/s)", flush=True)


if __name__ == "__main__":
    main()
