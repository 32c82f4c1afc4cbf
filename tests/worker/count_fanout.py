"""Per-inbound-packet instruction count of the worker's packet path (not a test).

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        python3 tests/worker/count_fanout.py PACKETS --toggle [--consumers 10] [--srtp] [--tcc] \
        [--tcp] [--vp8]

Builds the same in-process router as bench_fanout.py (real WorkerContext, SendRing in copy
mode, UDP sockets on 127.0.0.1), then drives PACKETS 200-byte packets through
Producer.receive() with a ring flush every 32 (instrumented only then, with --toggle). Run it
for two packet counts (e.g. 200 and 1200) and take (instructions(1200) - instructions(200)) /
1000: what is not per packet cancels out.
`RELAY_FANOUT_CORE=0` runs the Python fan-out instead of the C core. `--tcp` sends every
consumer's packets over an ICE-TCP connection (a real `TcpConnection` on a loopback TCP
socket pair, set as its transport's selected tuple), as a WebRTC transport would. `--vp8`
gives every consumer the VP8 PictureID/TL0PICIDX rewriting of a simulcast consumer (and the
packets a VP8 payload descriptor that has both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import uvloop

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from bench_fanout import setup  # noqa: E402
from media_harness import rtp  # noqa: E402

TCC_EXT = {1: b"\x90", 3: b"\x01\x02\x03", 5: b"\x00\x00"}


def use_ice_tcp(media, consumers: int) -> list[socket.socket]:
    """Move each consumer onto a loopback ICE-TCP connection; the peers' sockets (drained)."""
    from relay.transport.webrtc_sockets import TcpConnection

    loop = media.ctx.loop
    listener = SimpleNamespace(ip="127.0.0.1", port=0, announced=None, on_frame=None,
                               forget=lambda conn: None, on_claimed=lambda conn: None)
    server = socket.create_server(("127.0.0.1", 0))
    peers = []
    for i in range(consumers):
        peer = socket.create_connection(server.getsockname())
        sock, addr = server.accept()
        sock.setblocking(False)
        peer.setblocking(False)
        loop.add_reader(peer.fileno(), lambda peer=peer: peer.recv(1 << 20))
        peers.append(peer)
        conn = TcpConnection(media.ctx, sock, addr, listener)
        consumer = media.ctx.handlers[f"c{i}"]
        transport = consumer.transport
        transport.media_stream = conn  # what WebRtcTransport sets for an ICE-TCP tuple
        transport.media_send = conn.media_send
        transport.route = lambda conn=conn, srtp=consumer.srtp: (conn.fd, conn.addr, srtp)
        consumer.update_route()
    server.close()
    return peers


def use_vp8_rewriting(media, consumers: int) -> None:
    try:
        from relay.uring.vp8_rewriter import Vp8PictureRewriter
    except ImportError:  # (the tree before it moved into the C core)
        from relay.rtp.vp8_rewriter import Vp8PictureRewriter
    for i in range(consumers):
        consumer = media.ctx.handlers[f"c{i}"]
        consumer.vp8 = Vp8PictureRewriter(consumer.rewriter)
        consumer.update_route()  # recomputes whether the core takes it
    media.ctx.handlers["p1"].rebuild_fanout()


async def drive(packets: int, consumers: int, srtp: bool, tcc: bool, toggle: bool,
                tcp: bool, vp8: bool) -> None:
    media, _sender = await setup(consumers, "copy", srtp)
    producer = media.ctx.handlers["p1"]
    peers = use_ice_tcp(media, consumers) if tcp else []
    if vp8:
        use_vp8_rewriting(media, consumers)
    if tcc:  # number every consumer's packets as a browser's subscription would
        for i in range(consumers):
            consumer = media.ctx.handlers[f"c{i}"]
            consumer.tcc_id = 5
            table = bytearray(consumer.extension_table)
            table[5] = 5  # the producer's transport-cc id 5 goes out as 5
            consumer.extension_table = bytes(table)
            history = consumer.transport.send_estimation.history
            consumer.tcc_history = history
            if hasattr(history, "core_ring"):  # (the tree before the C core has none)
                consumer.core.tcc = history.core_ring().c
        producer.rebuild_fanout()
    ring = media.ctx.ring
    histories = [media.ctx.handlers[f"c{i}"].transport.send_estimation.history
                 for i in range(consumers)] if tcc else []
    histories = [h for h in histories if hasattr(h, "collect")]  # (the core's only)
    ext = TCC_EXT if tcc else {1: b"\x90", 3: b"\x01\x02\x03"}
    # (--vp8: a descriptor with a 15-bit PictureID and a TL0PICIDX, RFC 7741)
    head = b"\x90\xc0\x80\x01\x05" if vp8 else b""
    packet = rtp(0, 0, payload=head + b"\x00" * (176 - (4 if tcc else 0) - len(head)),
                 extensions=ext)
    assert len(packet) == 200, len(packet)
    buf = bytearray(2048)
    view = memoryview(buf)
    n = len(packet)
    if toggle:  # count only the packets (run under --instr-atstart=no: set-up runs fast)
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True,
                       capture_output=True)
    for seq in range(1, packets + 1):
        buf[:n] = packet
        buf[2] = seq >> 8
        buf[3] = seq & 0xFF
        producer.receive(view, n, 0, 1111, seq, seq * 960, 0.0)
        if seq % 32 == 0:
            ring.flush()
            for history in histories:  # what reading a feedback does first
                history.collect()
            await asyncio.sleep(0)
    ring.flush()
    await asyncio.sleep(0)  # (ICE-TCP: the connections' writes at the end of the turn)
    if toggle:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True,
                       capture_output=True)
    sent = sum(media.ctx.handlers[f"c{i}"].packets_sent for i in range(consumers))
    assert sent == packets * consumers, (sent, packets * consumers, [(c.dropped, c.ring_drops, c.in_core, c.core.packets_sent, c.py_packets_sent) for c in (media.ctx.handlers[f"c{i}"] for i in range(consumers))])
    numbered = sum(media.ctx.handlers[f"c{i}"].transport.send_estimation.history.sent
                   for i in range(consumers)) if tcc else 0
    assert numbered == (sent if tcc else 0), (numbered, sent)
    in_core = sum(media.ctx.handlers[f"c{i}"].in_core for i in range(consumers))
    print(f"consumers in the C core: {in_core}")
    if tcp:
        for peer in peers:
            peer.close()
    print(f"packets={packets} consumers={consumers} srtp={srtp} tcc={tcc} tcp={tcp} vp8={vp8} "
          f"sent={sent} numbered={numbered}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("packets", type=int)
    parser.add_argument("--consumers", type=int, default=10)
    parser.add_argument("--srtp", action="store_true")
    parser.add_argument("--tcc", action="store_true")
    parser.add_argument("--tcp", action="store_true", help="consumers on ICE-TCP")
    parser.add_argument("--vp8", action="store_true", help="VP8 PictureID rewriting")
    parser.add_argument("--toggle", action="store_true",
                        help="switch callgrind's instrumentation on for the packets only")
    args = parser.parse_args()
    uvloop.run(drive(args.packets, args.consumers, args.srtp, args.tcc, args.toggle, args.tcp,
                     args.vp8))


if __name__ == "__main__":
    main()
