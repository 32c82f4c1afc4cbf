"""Instructions per packet of the transport-cc receive side, under callgrind (not a test).

    valgrind --tool=callgrind --toggle-collect=builtin_eval --callgrind-out-file=/tmp/cg.out \\
        /work/main/.venv/bin/python tests/rtp/callgrind_transport_cc.py VARIANT [N] [WINDOW]
    grep ^summary /tmp/cg.out     # divide by N (the script prints N)

Only what runs inside ``eval`` is counted (``--toggle-collect=builtin_eval``; imports run in
``exec``), so set-up is
left out. Variants:

- ``route-none`` / ``route-ext`` / ``route-on``: N inbound packets through a plain
  transport's ``_rtp_fits`` + ``_route_rtp`` to one VP8 producer fanned out to 10 consumers
  (ring flushed every 32 packets, as a drain does), Chrome-like one-byte extensions
  (abs-send-time, transport-cc, then a 1-byte one). ``none``: no transport-cc element and
  the producer did not negotiate it (the loadtest's old "off"); ``ext``: packets carry it,
  the producer declares the extension but not the "transport-cc" feedback (feedback off);
  ``on``: both negotiated, feedback built every WINDOW packets (default 100).
- ``feedback``: ``build_feedback`` alone over N arrivals in windows of WINDOW packets
  (1000 pkt/s, a 5 % loss pattern), recorded outside the count.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import uvloop

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "worker"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from media_harness import ABS_SEND_TIME, VP8, Media, rtp  # noqa: E402

from relay.rtp.transport_cc import (  # noqa: E402
    TRANSPORT_CC_URI,
    TransportCcReceiver,
    read_transport_seq,
)
from relay.transport.port_allocator import PortAllocator  # noqa: E402
from relay.uring import SendRing  # noqa: E402

CONSUMERS = 10
TCC_ID = 5


async def route(variant: str, n: int, window: int) -> None:
    loop = asyncio.get_running_loop()
    ring = SendRing(mode="copy")
    ring.attach(loop)
    media = Media(loop, ring, PortAllocator(44000, 44999))
    media.router()
    media.transport("tp")
    media.connect("tp", media.peer())
    extensions = [{"uri": ABS_SEND_TIME, "id": 3}]
    if variant != "none":
        extensions.append({"uri": TRANSPORT_CC_URI, "id": TCC_ID})
    media.produce("tp", kind="video", extensions=extensions)
    if variant == "on":  # negotiate the feedback type (media.produce sends none)
        producer = media.ctx.handlers["p1"]
        media.ctx.handlers["tp"].feedback.add_producer(
            [{**VP8, "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}],
            producer.header_extensions)
    for i in range(CONSUMERS):
        media.transport(f"tc{i}")
        media.connect(f"tc{i}", media.peer())
        media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i, kind="video")
    transport = media.ctx.handlers["tp"]
    assert (transport.feedback.tcc is not None) == (variant == "on")
    packets = []
    for seq in range(n):
        exts = {3: b"\x12\x34\x56", TCC_ID: (seq & 0xFFFF).to_bytes(2, "big"), 4: b"0"}
        if variant == "none":
            del exts[TCC_ID]
        packets.append(rtp(seq & 0xFFFF, seq * 90, pt=96, payload=b"\x00" * 1000,
                           extensions=exts))
    rng = random.Random(1)
    arrivals = [1.0]
    for _ in range(n):  # 8000 pkt/s, Poisson
        arrivals.append(arrivals[-1] + rng.expovariate(8000))
    buf = bytearray(2048)
    view = memoryview(buf)
    env = {"packets": packets, "arrivals": arrivals, "buf": buf, "view": view, "transport": transport,
           "flush": ring.flush, "tcc": transport.feedback.tcc, "window": window}
    code = """
fits = transport._rtp_fits
route_rtp = transport._route_rtp
for i, p in enumerate(packets):
    now = arrivals[i]
    n = len(p)
    buf[:n] = p
    if fits(buf, n):
        route_rtp(buf, view, n, now)
    if i & 31 == 31:
        flush()
    if tcc is not None and i % window == window - 1:
        tcc.build_feedback(1)
"""
    eval(compile(code, "route", "exec"), env)
    media.ctx.handlers["r1"].close()
    for peer in media.peers:
        peer.close()
    ring.detach()
    ring.close()


def feedback(n: int, window: int) -> None:
    rng = random.Random(1)
    receivers = []
    seq = 0
    t = 1.0
    for _ in range(n // window):
        r = TransportCcReceiver()
        for _ in range(window):
            t += rng.expovariate(1000)
            if rng.random() >= 0.05:
                r.on_packet(seq & 0xFFFF, t)
            seq += 1
        receivers.append(r)
    eval(compile("for r in receivers:\n    r.build_feedback(1)", "fb", "exec"),
         {"receivers": receivers})


def parts(variant: str, n: int, window: int) -> None:
    """``read``: read_transport_seq alone; ``record``: on_packet alone (in order, feedback
    every WINDOW packets outside nothing: the loop is the same for both)."""
    packets = [bytearray(rtp(seq & 0xFFFF, 0, pt=96, payload=b"\x00" * 100, extensions={
        3: b"\x12\x34\x56", TCC_ID: (seq & 0xFFFF).to_bytes(2, "big"), 4: b"0"}))
        for seq in range(n)]
    env = {"packets": packets, "read": read_transport_seq, "r": TransportCcReceiver(),
           "window": window, "TCC_ID": TCC_ID}
    code = {
        "read": "for p in packets:\n    read(p, len(p), TCC_ID)",
        "record": "t = 1.0\nfor i in range(len(packets)):\n    r.on_packet(i & 0xFFFF, t, 1)\n"
                  "    t += 0.000125\n    if i % window == window - 1:\n"
                  "        r._report_from = r._end",
        "loop": "t = 1.0\nfor i in range(len(packets)):\n    i & 0xFFFF\n"
                "    t += 0.000125\n    if i % window == window - 1:\n"
                "        r._report_from = r._end",
    }[variant]
    eval(compile(code, variant, "exec"), env)


def main() -> None:
    variant = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    if variant == "feedback":
        feedback(n, window)
    elif variant in ("read", "record", "loop"):
        parts(variant, n, window)
    else:
        uvloop.run(route(variant.removeprefix("route-"), n, window))
    print(f"N={n} window={window}")


if __name__ == "__main__":
    main()
