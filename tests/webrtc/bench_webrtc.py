"""WebRTC transport figures (not a pytest test; prints JSON lines):

1. set-up time of a transport on loopback: create → ICE connected → DTLS connected, as the
   controller sees the events, with the minimal ICE+DTLS client of raw_webrtc_client.py
   (median of 20);
2. forwarding cost, SRTP (WebRTC) vs plain RTP (plain transport), 1 → 10 consumers: a
   burst of pre-built 200-byte packets goes to the producer's port as fast as a Python loop
   sends; the worker's CPU time (getResourceUsage) over the packets it forwarded gives
   packets/s per worker core, robust to the other load on a shared 2-core machine.

    cd /work/main && .venv/bin/python tests/webrtc/bench_webrtc.py [--packets 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aioice.ice  # noqa: E402
from raw_webrtc_client import RawWebRtcClient  # noqa: E402

import relay  # noqa: E402
from relay.rtp.packet import build_rtp  # noqa: E402
from relay.transport.dtls import DtlsCertificate  # noqa: E402

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

UDP = [{"protocol": "udp", "ip": "127.0.0.1"}]
CODECS = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}]
SSRC = 0x0B0B0B0B
PARAMS = {"mid": "0",
          "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                      "channels": 2, "parameters": {}, "rtcpFeedback": []}],
          "headerExtensions": [], "encodings": [{"ssrc": SSRC}], "rtcp": {"cname": "bench"}}
CAPS = {"codecs": [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000,
                    "channels": 2, "preferredPayloadType": 100, "parameters": {},
                    "rtcpFeedback": []}], "headerExtensions": []}
PAYLOAD = b"\x11" * (200 - 12)


async def connected_client(transport, certificate) -> RawWebRtcClient:
    client = RawWebRtcClient(certificate)
    await client.open(transport.ice_candidates[0])
    await transport.connect(dtls_parameters=client.dtls_parameters)
    await client.ice_check(transport.ice_parameters)
    await client.dtls_connect(transport.dtls_parameters)
    return client


async def setup_times(router, certificate, rounds: int) -> dict:
    ice_ms, dtls_ms = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        marks: dict[str, float] = {}
        done = asyncio.Event()
        transport = await router.create_webrtc_transport(listen_infos=UDP)

        def on_ice(state: str, marks=marks) -> None:
            if state in ("connected", "completed"):
                marks.setdefault("ice", time.perf_counter())

        def on_dtls(state: str, marks=marks, done=done) -> None:
            if state == "connected":
                marks["dtls"] = time.perf_counter()
                done.set()

        transport.on("icestatechange", on_ice)
        transport.on("dtlsstatechange", on_dtls)
        client = await connected_client(transport, certificate)
        await asyncio.wait_for(done.wait(), 10)
        ice_ms.append((marks["ice"] - start) * 1000)
        dtls_ms.append((marks["dtls"] - start) * 1000)
        client.close()
        transport.close()
    return {"bench": "webrtc_setup", "rounds": rounds,
            "ice_connected_ms_median": round(statistics.median(ice_ms), 2),
            "dtls_connected_ms_median": round(statistics.median(dtls_ms), 2),
            "dtls_connected_ms_min": round(min(dtls_ms), 2),
            "dtls_connected_ms_max": round(max(dtls_ms), 2)}


async def forwarding(kind: str, consumers: int, packets: int, certificate) -> dict:
    worker = await relay.create_worker(rtc_min_port=47000, rtc_max_port=47999)
    clients: list[RawWebRtcClient] = []
    sinks: list[socket.socket] = []
    try:
        router = await worker.create_router(media_codecs=CODECS)
        if kind == "webrtc":
            pub_t = await router.create_webrtc_transport(listen_infos=UDP)
            publisher = await connected_client(pub_t, certificate)
            clients.append(publisher)
            target = (pub_t.ice_candidates[0]["address"], pub_t.ice_candidates[0]["port"])
        else:
            pub_t = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
            target = ("127.0.0.1", pub_t.tuple["localPort"])
        producer = await pub_t.produce(kind="audio", rtp_parameters=PARAMS)
        sub_consumers = []
        for _ in range(consumers):
            if kind == "webrtc":
                sub_t = await router.create_webrtc_transport(listen_infos=UDP)
                clients.append(await connected_client(sub_t, certificate))
            else:
                sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sink.bind(("127.0.0.1", 0))
                sinks.append(sink)
                sub_t = await router.create_plain_transport(listen_ip="127.0.0.1")
                await sub_t.connect(ip="127.0.0.1", port=sink.getsockname()[1])
            sub_consumers.append(await sub_t.consume(producer_id=producer.id,
                                                     rtp_capabilities=CAPS))
        # Pre-built packets (SRTP-protected in order for WebRTC), so sending costs little.
        data = []
        for seq in range(packets):
            packet = build_rtp(payload_type=111, sequence_number=seq & 0xFFFF,
                               timestamp=seq * 960, ssrc=SSRC, payload=PAYLOAD)
            if kind == "webrtc":
                protected = publisher.srtp_send.protect_rtp(packet, len(packet))
                packet = bytes(protected)
            data.append(packet)
        if kind == "webrtc":  # the ICE-validated tuple: a dup of the client's socket
            sock = socket.fromfd(publisher._udp.get_extra_info("socket").fileno(),
                                 socket.AF_INET, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        send = sock.sendto
        before = await worker.get_resource_usage()
        start = time.perf_counter()
        for i, packet in enumerate(data):
            try:
                send(packet, target)
            except BlockingIOError:
                pass
            if i % 256 == 255:
                await asyncio.sleep(0)
        last = -1
        while True:  # until the worker has drained what reached it
            await asyncio.sleep(0.2)
            received = (await producer.get_stats())[0]["packetCount"]
            if received == last:
                break
            last = received
        wall = time.perf_counter() - start
        after = await worker.get_resource_usage()
        cpu_s = ((after["ru_utime"] + after["ru_stime"]) - (before["ru_utime"] + before["ru_stime"])) / 1000
        sent = sum([(await c.get_stats())[0]["packetCount"] for c in sub_consumers])
        sock.close()
        return {"bench": "forwarding", "transport": kind, "consumers": consumers,
                "offered": packets, "received": last, "forwarded": sent,
                "worker_cpu_s": round(cpu_s, 3), "wall_s": round(wall, 3),
                "in_pps_per_core": round(last / cpu_s) if cpu_s else None,
                "out_pps_per_core": round(sent / cpu_s) if cpu_s else None}
    finally:
        for client in clients:
            client.close()
        for sink in sinks:
            sink.close()
        worker.close()
        await worker.wait_closed()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    certificate = DtlsCertificate.generate()
    worker = await relay.create_worker(rtc_min_port=47000, rtc_max_port=47999)
    try:
        router = await worker.create_router(media_codecs=CODECS)
        print(json.dumps(await setup_times(router, certificate, args.rounds)), flush=True)
    finally:
        worker.close()
        await worker.wait_closed()
    for consumers in (1, 10):
        for kind in ("plain", "webrtc"):
            print(json.dumps(await forwarding(kind, consumers, args.packets, certificate)),
                  flush=True)


if __name__ == "__main__":
    asyncio.run(main())
