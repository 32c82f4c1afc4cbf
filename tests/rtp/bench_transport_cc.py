"""Micro-benchmark of the transport-cc receive side (prints figures; not a test).

    /work/main/.venv/bin/python tests/rtp/bench_transport_cc.py

Per packet: read_transport_seq + TransportCcReceiver.on_packet on a Chrome-like video packet
(one-byte extensions: abs-send-time, transport-cc, mid? no: audio level off; ~1200 bytes).
Per call: build_feedback over 100 ms of arrivals at several packet rates, with and without
loss. And parse_feedback of what it built.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relay.rtp.packet import build_rtp  # noqa: E402
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
    packets = []
    for seq in range(256):
        exts = {2: b"\x12\x34\x56", TCC_ID: seq.to_bytes(2, "big"), 4: b"0"}
        packets.append(bytearray(build_rtp(payload_type=96, sequence_number=seq, timestamp=0,
                                           ssrc=0x1234, payload=bytes(1150), extensions=exts)))
    lengths = [len(p) for p in packets]

    def read_only() -> None:
        for i in range(n):
            p = packets[i & 255]
            read_transport_seq(p, lengths[i & 255], TCC_ID)

    def read_and_record() -> None:
        r = TransportCcReceiver()
        t = 1.0
        for i in range(n):
            p = packets[i & 255]
            seq = read_transport_seq(p, lengths[i & 255], TCC_ID)
            if seq is not None:
                r.on_packet(seq + (i & ~255), t, 0x1234)
            t += 0.0002
            if i % 500 == 499:  # feedback every 100 ms at 5000 packets/s
                r.build_feedback(1)

    def record_only() -> None:
        r = TransportCcReceiver()
        t = 1.0
        for i in range(n):
            r.on_packet(i & 0xFFFF, t, 0x1234)
            t += 0.0002
            if i % 500 == 499:
                r.build_feedback(1)

    read = best_of(3, read_only) / n
    both = best_of(3, read_and_record) / n
    rec = best_of(3, record_only) / n
    print(f"read_transport_seq                      {read * 1e9:7.0f} ns/packet")
    print(f"on_packet (feedback every 500 packets)  {rec * 1e9:7.0f} ns/packet "
          "(feedback cost included)")
    print(f"read_transport_seq + on_packet          {both * 1e9:7.0f} ns/packet")


def bench_feedback() -> None:
    rng = random.Random(1)
    for pps, loss in ((100, 0.0), (1000, 0.0), (1000, 0.05), (5000, 0.0), (5000, 0.05)):
        count = pps // 10  # 100 ms worth
        rounds = 200
        receivers = []
        for _ in range(rounds):
            r = TransportCcReceiver()
            t = 1.0
            for s in range(count):
                t += rng.expovariate(pps)
                if rng.random() >= loss:
                    r.on_packet(s, t)
            receivers.append(r)
        start = time.perf_counter()
        outs = [r.build_feedback(1) for r in receivers]
        per_call = (time.perf_counter() - start) / rounds
        size = sum(len(p) for out in outs for p in out) / rounds
        start = time.perf_counter()
        for out in outs:
            for p in out:
                parse_feedback(p)
        per_parse = (time.perf_counter() - start) / rounds
        print(f"build_feedback {count:4d} arrivals, loss {loss:4.0%}: {per_call * 1e6:7.1f} µs/call"
              f"  ({size:5.0f} bytes)   parse_feedback {per_parse * 1e6:7.1f} µs")


if __name__ == "__main__":
    print(sys.version.split()[0])
    bench_per_packet()
    bench_feedback()
