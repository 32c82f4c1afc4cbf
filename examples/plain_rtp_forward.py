"""Forward RTP from one sender to several receivers through a relay worker.

    python examples/plain_rtp_forward.py [--consumers 3] [--packets 250] [--send-mode auto]

Spawns a worker, makes a router with Opus, a comedia plain transport to receive the
sender's RTP, and one plain transport + consumer per receiver; then sends opus-like RTP
at 50 packets/s from a local UDP socket and prints what every receiver got: SSRC, payload
type, and whether the sequence numbers arrived continuous. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct

import relay

MEDIA_CODECS = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}]
SENDER_SSRC = 0x1234_5678
SENDER_PT = 111


def rtp(seq: int, ts: int) -> bytes:
    return struct.pack("!BBHII", 0x80, SENDER_PT, seq & 0xFFFF, ts & 0xFFFFFFFF, SENDER_SSRC) + bytes(160)


async def run(consumers: int, packets: int, send_mode: str) -> int:
    worker = await relay.create_worker(send_mode=send_mode, rtc_min_port=40000, rtc_max_port=49999)
    try:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        ingress = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
        producer = await ingress.produce(kind="audio", rtp_parameters={
            "codecs": [{"mimeType": "audio/opus", "payloadType": SENDER_PT, "clockRate": 48000,
                        "channels": 2}],
            "encodings": [{"ssrc": SENDER_SSRC}],
            "rtcp": {"cname": "example"},
        })
        receivers = []
        for _ in range(consumers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            egress = await router.create_plain_transport(listen_ip="127.0.0.1")
            await egress.connect(ip="127.0.0.1", port=sock.getsockname()[1])
            consumer = await egress.consume(producer_id=producer.id,
                                            rtp_capabilities=router.rtp_capabilities)
            receivers.append((sock, consumer))

        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = (ingress.tuple["localIp"], ingress.tuple["localPort"])
        for i in range(packets):
            sender.sendto(rtp(1000 + i, 960 * i), target)
            await asyncio.sleep(0.02)  # 50 packets/s, as an Opus stream
        await asyncio.sleep(0.2)

        ok = True
        print(f"send mode: {(await worker.dump())['sendRing']['mode']}")
        for n, (sock, consumer) in enumerate(receivers):
            got = []
            while True:
                try:
                    packet = sock.recv(2048)
                except BlockingIOError:
                    break
                if not 64 <= packet[1] & 0x7F <= 95:  # rtcp-mux: skip the relay's SRs (RFC 5761)
                    got.append(packet)
            seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
            ssrcs = {struct.unpack_from("!I", p, 8)[0] for p in got}
            pts = {p[1] & 0x7F for p in got}
            continuous = all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
            expected_ssrc = consumer.rtp_parameters["encodings"][0]["ssrc"]
            expected_pt = consumer.rtp_parameters["codecs"][0]["payloadType"]
            good = (len(got) == packets and ssrcs == {expected_ssrc} and pts == {expected_pt}
                    and continuous)
            ok = ok and good
            print(f"receiver {n}: {len(got)}/{packets} packets, ssrc {sorted(ssrcs)} "
                  f"(expected {expected_ssrc}), pt {sorted(pts)} (expected {expected_pt}), "
                  f"sequence continuous: {continuous}")
            sock.close()
        sender.close()
        print("all receivers got every packet, rewritten" if ok else "SOME PACKETS WERE MISSING")
        return 0 if ok else 1
    finally:
        worker.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--consumers", type=int, default=3)
    ap.add_argument("--packets", type=int, default=250)
    ap.add_argument("--send-mode", default="auto", choices=["auto", "zerocopy", "copy", "socket"])
    args = ap.parse_args()
    raise SystemExit(asyncio.run(run(args.consumers, args.packets, args.send_mode)))


if __name__ == "__main__":
    main()
