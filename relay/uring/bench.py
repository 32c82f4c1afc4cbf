"""Send-path benchmark: ns per datagram for a sendto loop, uvloop's transport.sendto, and
SendRing in each mode with batches of 1, 8, 32 and 64 sends per flush.

    python -m relay.uring.bench [--quick] [--json FILE]

Receivers are loopback UDP sockets owned by a drain process (pinned to the other core when
there are two) that reads them with epoll, so the sender measures a live path rather than
a full receive queue. Each cell is the median of several interleaved rounds; "wall" is
elapsed time per datagram in the sender, "cpu" the sender process's CPU time per datagram
(user + system: on loopback the kernel's receive work also runs in the sender's context).
This is a benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import select
import socket
import statistics
import sys
import time
from collections.abc import Callable

from relay.uring import SendModeUnavailableError, SendRing

BATCHES = (1, 8, 32, 64)
MODES = ("zerocopy", "copy", "socket")


def _drain(conn, count: int) -> None:
    """Own `count` receiver sockets and read them until told to stop."""
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {1})
    socks = []
    ep = select.epoll()
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
        socks.append(s)
    by_fd = {s.fileno(): s for s in socks}
    conn.send([s.getsockname() for s in socks])
    received = 0
    while True:
        if conn.poll():
            msg = conn.recv()
            if msg == "stop":
                break
            conn.send(received)
            continue
        for fd, _ in ep.poll(0.05):
            s = by_fd[fd]
            try:
                while True:
                    s.recv(2048)
                    received += 1
            except BlockingIOError:
                pass
    conn.send(received)


def _time(fn: Callable[[], None], n: int) -> tuple[float, float]:
    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
    fn()
    t1, c1 = time.perf_counter_ns(), time.process_time_ns()
    return (t1 - t0) / n, (c1 - c0) / n


def bench_sendto(sock, data, addrs, n):
    k = len(addrs)
    sendto = sock.sendto

    def run():
        for i in range(n):
            sendto(data, addrs[i % k])

    return _time(run, n)


def bench_uvloop(data, addrs, n):
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           local_addr=("127.0.0.1", 0))
        k = len(addrs)
        sendto = transport.sendto

        def run():
            for i in range(n):
                sendto(data, addrs[i % k])

        res = _time(run, n)
        transport.close()
        return res

    return uvloop.run(main())


def bench_ring(ring: SendRing, fd, data, addrs, n, batch, many: bool):
    k = len(addrs)
    rounds = n // batch
    send, flush = ring.send, ring.flush
    if many:
        send_many = ring.send_many
        datas = [data] * batch
        groups = [[addrs[(r * batch + j) % k] for j in range(batch)] for r in range(k)]

        def run():
            for r in range(rounds):
                send_many(fd, datas, groups[r % k])
                flush()
    else:
        def run():
            i = 0
            for _ in range(rounds):
                for _ in range(batch):
                    send(fd, data, addrs[i % k])
                    i += 1
                flush()

    return _time(run, rounds * batch)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m relay.uring.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer packets and rounds (a demo)")
    ap.add_argument("--packets", type=int, default=None, help="datagrams per cell and round")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per cell")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = ap.parse_args(argv)
    n = args.packets or (10_000 if args.quick else 40_000)
    rounds = args.rounds or (1 if args.quick else 3)
    if n < 64 or rounds < 1:
        ap.error("--packets must be >= 64 and --rounds >= 1")
    pinned = ""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
        pinned = "sender pinned to CPU 0, receivers to CPU 1"

    rings = {}
    for m in MODES:
        try:
            rings[m] = SendRing(mode=m)
        except SendModeUnavailableError as exc:
            rings[m] = SendRing(mode="auto")
            print(f"note: {exc}; its rows measure {rings[m].mode}", file=sys.stderr)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    drain = ctx.Process(target=_drain, args=(child, 40), daemon=True)
    drain.start()
    all_addrs = parent.recv()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    fd = sock.fileno()

    cells: dict[tuple, list[tuple[float, float]]] = {}
    methods: list[tuple[str, str, int]] = [("sendto loop", "-", 1), ("uvloop sendto", "-", 1)]
    for m in MODES:
        for b in BATCHES:
            methods.append(("SendRing.send", m, b))
        for b in BATCHES[1:]:
            methods.append(("SendRing.send_many", m, b))
    scenarios = [(size, dests) for size in (200, 1200) for dests in (1, 40)]
    for _ in range(rounds):
        for size, dests in scenarios:
            data = bytes(size)
            addrs = all_addrs[:dests]
            for name, mode, batch in methods:
                if name == "sendto loop":
                    res = bench_sendto(sock, data, addrs, n)
                elif name == "uvloop sendto":
                    res = bench_uvloop(data, addrs, n)
                else:
                    res = bench_ring(rings[mode], fd, data, addrs, n, batch, name.endswith("many"))
                    rings[mode].poll()
                cells.setdefault((size, dests, name, mode, batch), []).append(res)
    parent.send("stop")
    received = parent.recv()
    drain.join(5)
    ring_stats = {m: r.stats() for m, r in rings.items()}
    for r in rings.values():
        r.close()

    rows = []
    for (size, dests, name, mode, batch), vals in cells.items():
        wall = statistics.median(v[0] for v in vals)
        cpu = statistics.median(v[1] for v in vals)
        rows.append({"size": size, "destinations": dests, "method": name, "mode": mode,
                     "batch": batch, "wall_ns": round(wall), "cpu_ns": round(cpu)})
    print(f"relay send-path benchmark: {n} datagrams per cell, median of {rounds} round(s); "
          f"{pinned or 'not pinned'}; ns per datagram (wall / cpu)")
    base = {}
    for row in rows:
        if row["method"] == "sendto loop":
            base[(row["size"], row["destinations"])] = row["wall_ns"]
    header = f"{'method':<20}{'mode':<10}{'batch':>6}" + "".join(
        f"{f'{s}B->{d}':>22}" for s, d in scenarios)
    print(header)
    print("-" * len(header))
    for name, mode, batch in methods:
        line = f"{name:<20}{mode:<10}{batch:>6}"
        for s, d in scenarios:
            row = next(r for r in rows if (r["size"], r["destinations"], r["method"], r["mode"],
                                           r["batch"]) == (s, d, name, mode, batch))
            speed = base[(s, d)] / row["wall_ns"] if row["wall_ns"] else 0.0
            line += f"{row['wall_ns']:>8}/{row['cpu_ns']:<6} x{speed:<5.2f}"
        print(line)
    print("xN: speed relative to the sendto loop in the same column (higher is faster)")
    for m, st in ring_stats.items():
        print(f"{m}: mode={st['mode']} zeroCopy={st['zeroCopyEnabled']} sqesPerSubmit="
              f"{st['sqesPerSubmit']} zcNotifications={st['zcNotifications']} zcCopied="
              f"{st['zcCopied']} cqeErrors={st['cqeErrors']} drops={st['exhaustionDrops']} "
              f"eagainDrops={st['eagainDrops']} capDrops={st['capDrops']}")
    print(f"drain process read {received} datagrams")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"packets": n, "rounds": rounds, "pinned": pinned, "rows": rows,
                       "ringStats": ring_stats, "received": received}, f, indent=2)


if __name__ == "__main__":
    main()
