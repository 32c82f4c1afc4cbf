"""Per-inbound-packet instruction count of the whole inbound path, socket drain included
(not a test).

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \
        python3 tests/worker/count_inbound.py PACKETS --toggle [--consumers 10] [--srtp]
                                                      [--tcc] [--quality]

Like count_fanout.py, but the packets arrive as datagrams on the producer transport's socket
and go through its drain (`PlainTransport._on_rtp_readable`: receive, demux, source check,
SRTP unprotect, validation, SSRC lookup, the stream's bookkeeping, fan-out, one flush per
drain), 32 datagrams per drain. --srtp: the producer's transport and every consumer's use
SRTP (AES_CM_128_HMAC_SHA1_80); --tcc: the producer negotiates transport-cc (its packets
carry the transport-wide number, the worker records them for feedback) and consumers number
what they send (--tcc-in: the producer's side only); --quality: producer and consumers negotiate NACK (retransmission store and
NACK generator on). Run for two packet counts (200 and 1200) and take the difference / 1000.
`RELAY_FANOUT_CORE=0` runs the Python fan-out; `RELAY_RECEIVE_CORE=0` the Python receive path.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys

import uvloop
from pylibsrtp import Policy, Session

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from bench_fanout import _captured  # noqa: E402
from media_harness import Media, rtp  # noqa: E402

from relay.transport.port_allocator import PortAllocator  # noqa: E402
from relay.transport.srtp_session import generate_key  # noqa: E402
from relay.uring import SendRing  # noqa: E402

SUITE = "AES_CM_128_HMAC_SHA1_80"
TCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


async def setup(consumers: int, srtp: bool, tcc: bool, quality: bool, tcc_out: bool = True):
    loop = asyncio.get_running_loop()
    ring = SendRing(mode="copy")
    ring.attach(loop)
    media = Media(loop, ring, PortAllocator(44000, 44999))
    media.router()
    options = {"enableSrtp": True, "srtpCryptoSuite": SUITE} if srtp else {}
    tp = media.transport("tp", **options)
    sender = media.peer()
    protect = None
    if srtp:
        key = generate_key(SUITE)
        session = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                 srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
        protect = session.protect
        media.connect("tp", sender, srtpParameters={"cryptoSuite": SUITE,
                                                    "keyBase64": base64.b64encode(key).decode()})
    else:
        media.connect("tp", sender)
    handler, method, data = _captured(media, lambda: media.produce("tp"))
    codec = data["rtpParameters"]["codecs"][0]
    codec["rtcpFeedback"] = ([{"type": "nack", "parameter": ""}] if quality else []) + \
        ([{"type": "transport-cc", "parameter": ""}] if tcc else [])
    if tcc:
        data["rtpParameters"]["headerExtensions"] = [
            *data["rtpParameters"]["headerExtensions"], {"uri": TCC_URI, "id": 5}]
    media.ctx.handlers[handler].handle_request(method, data)
    for i in range(consumers):
        media.transport(f"tc{i}", **options)
        peer = media.peer()
        extra = {}
        if srtp:
            extra["srtpParameters"] = media.request(f"tc{i}", "transport.dump")["srtpParameters"]
        media.connect(f"tc{i}", peer, **extra)
        handler, method, data = _captured(
            media, lambda i=i: media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i))
        for codec in data["rtpParameters"]["codecs"]:
            codec["rtcpFeedback"] = [{"type": "nack", "parameter": ""}] if quality else []
        media.ctx.handlers[handler].handle_request(method, data)
        consumer = media.ctx.handlers[f"c{i}"]
        if tcc and tcc_out:  # number every consumer's packets as a browser's subscription would
            consumer.tcc_id = 5
            table = bytearray(consumer.extension_table)
            table[5] = 5
            consumer.extension_table = bytes(table)
            history = consumer.transport.send_estimation.history
            consumer.tcc_history = history
            consumer.core.tcc = history.core_ring().c
    media.ctx.handlers["p1"].rebuild_fanout()
    return media, sender, tp, protect


async def drive(packets: int, consumers: int, srtp: bool, tcc: bool, quality: bool,
                toggle: bool, tcc_out: bool = True) -> None:
    media, sender, tp, protect = await setup(consumers, srtp, tcc, quality, tcc_out)
    transport = media.ctx.handlers["tp"]
    ring = media.ctx.ring
    histories = [media.ctx.handlers[f"c{i}"].transport.send_estimation.history
                 for i in range(consumers)] if tcc and tcc_out else []
    remote = (tp["tuple"]["localIp"], tp["tuple"]["localPort"])
    ext = {1: b"\x90", 3: b"\x01\x02\x03"}
    if tcc:
        ext[5] = b"\x00\x00"
    datagrams = []
    for seq in range(1, packets + 1):
        if tcc:
            ext[5] = bytes([seq >> 8, seq & 0xFF])
        packet = rtp(seq, seq * 960, payload=b"\x00" * (176 - (4 if tcc else 0)), extensions=ext)
        assert len(packet) == 200, len(packet)
        datagrams.append(protect(packet) if protect else packet)
    if toggle:  # count only the packets (run under --instr-atstart=no: set-up runs fast)
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True,
                       capture_output=True)
    send = sender.sock.sendto
    for start in range(0, packets, 32):
        for datagram in datagrams[start:start + 32]:
            send(datagram, remote)
        transport._on_rtp_readable()
        ring.flush()
        for history in histories:  # what reading a feedback does first
            history.collect()
        await asyncio.sleep(0)
    if toggle:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True,
                       capture_output=True)
    sent = sum(media.ctx.handlers[f"c{i}"].packets_sent for i in range(consumers))
    assert sent == packets * consumers, (sent, packets * consumers, dict(transport.dropped))
    stats = media.request("p1", "producer.getStats")[0]
    assert stats["packetsReceived"] == packets, stats
    print(f"packets={packets} consumers={consumers} srtp={srtp} tcc={tcc} quality={quality} "
          f"sent={sent} received={stats['packetsReceived']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("packets", type=int)
    parser.add_argument("--consumers", type=int, default=10)
    parser.add_argument("--srtp", action="store_true")
    parser.add_argument("--tcc", action="store_true")
    parser.add_argument("--tcc-in", action="store_true",
                        help="--tcc for the producer only: consumers do not number")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--toggle", action="store_true",
                        help="switch callgrind's instrumentation on for the packets only")
    args = parser.parse_args()
    uvloop.run(drive(args.packets, args.consumers, args.srtp, args.tcc or args.tcc_in,
                     args.quality, args.toggle, tcc_out=not args.tcc_in))


if __name__ == "__main__":
    main()
