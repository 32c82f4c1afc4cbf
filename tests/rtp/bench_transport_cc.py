"""Micro-benchmark of the transport-cc receive side (prints figures; not a test).

    /work/main/.venv/bin/python tests/rtp/bench_transport_cc.py

Per packet: read_transport_seq and TransportCcReceiver.on_packet on a Chrome-like header
(one-byte extensions: abs-send-time, then transport-cc, then a 1-byte one), in order, with
feedback built every 500 packets outside the timing; the loop's own cost subtracted; rtp_payload_offset (already run per packet) for
scale. Per call: build_feedback over 100 ms of arrivals at several packet rates, with and
without loss, and parse_feedback of what it built.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay.rtp.packet import build_rtp, rtp_payload_offset  # noqa: E402
from relay.rtp.transport_cc import (  # noqa: E402
    TransportCcReceiver,
    parse_feedback,
    read_transport_seq,
)

TCC_ID = 3


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_per_packet(n: int = 200_000) -> None:
    # One packet per transport-wide number (short payloads: only the header is read), so
    # the receiver sees an in-order stream that wraps at 65536.
    packets = []
    for seq in range(65536):
        exts = {2: b"\x12\x34\x56", TCC_ID: seq.to_bytes(2, "big"), 4: b"0"}
        packets.append(bytearray(build_rtp(payload_type=96, sequence_number=seq, timestamp=0,
                                           ssrc=0x1234, payload=bytes(16), extensions=exts)))
    lengths = [len(p) for p in packets]

    def loop_only() -> None:
        for i in range(n):
            packets[i & 0xFFFF]

    def payload_offset() -> None:  # an existing per-packet function, for scale
        for i in range(n):
            rtp_payload_offset(packets[i & 0xFFFF], lengths[i & 0xFFFF])

    def read_only() -> None:
        for i in range(n):
            read_transport_seq(packets[i & 0xFFFF], lengths[i & 0xFFFF], TCC_ID)

    def record_batches(with_read: bool) -> float:
        """on_packet (and read) time only; feedback every 500 packets (100 ms at 5000/s)
        is built between the timed batches."""
        r = TransportCcReceiver()
        t = 1.0
        spent = 0.0
        for batch in range(n // 500):
            start = time.perf_counter()
            first = batch * 500
            if with_read:
                for i in range(first, first + 500):
                    seq = read_transport_seq(packets[i & 0xFFFF], lengths[i & 0xFFFF], TCC_ID)
                    r.on_packet(seq, t, 0x1234)
                    t += 0.0002
            else:
                for i in range(first, first + 500):
                    r.on_packet(i & 0xFFFF, t, 0x1234)
                    t += 0.0002
            spent += time.perf_counter() - start
            r.build_feedback(1)
        return spent

    base = best_of(3, loop_only) / n
    rows = [
        ("(the loop itself, subtracted)", base),
        ("rtp_payload_offset (for scale)", best_of(3, payload_offset) / n - base),
        ("read_transport_seq", best_of(3, read_only) / n - base),
        ("on_packet", min(record_batches(False) for _ in range(3)) / n - base),
        ("read_transport_seq + on_packet", min(record_batches(True) for _ in range(3)) / n - base),
    ]
    for name, seconds in rows:
        print(f"{name:32s} {seconds * 1e9:6.0f} ns/packet")


def receivers(rounds: int, count: int, pps: int, loss: float) -> list[TransportCcReceiver]:
    """`rounds` receivers, each with `count` arrivals at `pps` (Poisson), `loss` lost."""
    rng = random.Random(1)
    out = []
    for _ in range(rounds):
        r = TransportCcReceiver()
        t = 1.0
        for s in range(count):
            t += rng.expovariate(pps)
            if rng.random() >= loss:
                r.on_packet(s, t)
        out.append(r)
    return out


def bench_feedback(repeats: int = 5) -> None:
    for pps, loss in ((100, 0.0), (1000, 0.0), (1000, 0.05), (5000, 0.0), (5000, 0.05)):
        count = pps // 10  # 100 ms worth
        rounds = 100

        build = parse = float("inf")
        for _ in range(repeats):
            rs = receivers(rounds, count, pps, loss)
            start = time.perf_counter()
            outs = [r.build_feedback(1) for r in rs]
            build = min(build, (time.perf_counter() - start) / rounds)
            start = time.perf_counter()
            for out in outs:
                for p in out:
                    parse_feedback(p)
            parse = min(parse, (time.perf_counter() - start) / rounds)
        size = sum(len(p) for out in outs for p in out) / rounds
        print(f"build_feedback {count:4d} arrivals, loss {loss:4.0%}: {build * 1e6:7.1f} µs/call"
              f"  ({size:5.0f} bytes)   parse_feedback {parse * 1e6:7.1f} µs")


if __name__ == "__main__":
    print(sys.version.split()[0])
    bench_per_packet()
    bench_feedback()
