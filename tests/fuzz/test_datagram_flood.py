"""A live worker under a datagram flood, with a legitimate stream alongside that must lose
nothing.

One worker (spawned through the controller API), one router, and:
- "legit": a comedia plain transport latched by a real RTP sender, and a consumer on another
  plain transport whose every packet is counted. Junk from other source ports is thrown at
  the legit transport's port for the whole stream;
- "latched": a comedia plain transport whose remote IS the junk sender (as after a peer
  authenticates), with a simulcast VP8+RTX producer bound by MID/RID and a consumer: here the
  junk goes past the source check into RTP validation, SSRC binding, RTX unwrapping, RTCP
  parsing and the fan-out;
- "webrtc": a WebRTC transport's UDP port, where junk from unvalidated sources reaches STUN
  parsing and the ICE-lite agent.

About 60,000 mutations of valid RTP/RTCP/STUN/DTLS records in all, paced by the kernel's
receive queue of the target so the flood never overflows a socket (that would drop legit
packets for reasons that are not the worker's). The legit consumer must get every packet,
in order, rewritten; the worker must stay up and answer; and its counters must account for
every junk datagram: exactly, per drop reason, at the legit and WebRTC ports.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

import relay
from tests.fuzz.datagram_junk import JunkMaker, udp_socket_state, valid_datagrams

LEGIT_SSRC = 0x1234_5678
LEGIT_PT = 111
LEGIT_PACKETS = 2000
LEGIT_RATE = 400.0  # packets/s: the stream lasts 5 s
JUNK = {"legit": 40_000, "latched": 10_000, "webrtc": 10_000}
JUNK_SOURCES = 8  # source ports the junk for the legit port comes from
# Bytes (kernel truesize) waiting in a target socket above which the flood waits, and the
# datagrams sent per target between two looks: at most ~32 + 16 x 2.3 KB of junk queued,
# which leaves most of the default 208 KB receive buffer to the legit stream.
MAX_QUEUED = 32 * 1024
BATCH = 16
PORT_RANGE = (47700, 47799)
MEDIA_CODECS = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
                {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}]
MID_ID, RID_ID, RRID_ID = 1, 2, 3
# What a plain transport counts before it accepts a datagram as RTP or RTCP from its remote.
PLAIN_PRE_ACCEPT_DROPS = {"tooShort", "notFromRemote", "rtcpNotFromRemote", "tooLarge",
                          "malformed"}
WEBRTC_PRE_ICE_DROPS = {"empty", "notValidated", "dtlsNotValidated", "unknown"}


def _udp(rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if rcvbuf:
        opt = getattr(socket, "SO_RCVBUFFORCE", 33) if os.geteuid() == 0 else socket.SO_RCVBUF
        sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket, into: list[bytes] | None = None) -> None:
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        if into is not None:
            into.append(data)


def _legit_rtp(k: int) -> bytes:
    return struct.pack("!BBHII", 0x80, LEGIT_PT, (5000 + k) & 0xFFFF, 960 * k, LEGIT_SSRC) \
        + k.to_bytes(4, "big") + bytes(156)


async def _build(worker: relay.Worker) -> dict:
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    # legit: comedia ingress, one consumer on its own transport
    ingress = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
    producer = await ingress.produce(kind="audio", rtp_parameters={
        "codecs": [{"mimeType": "audio/opus", "payloadType": LEGIT_PT, "clockRate": 48000,
                    "channels": 2}],
        "encodings": [{"ssrc": LEGIT_SSRC}], "rtcp": {"cname": "legit"}})
    sink = _udp(rcvbuf=8 << 20)
    egress = await router.create_plain_transport(listen_ip="127.0.0.1")
    await egress.connect(ip="127.0.0.1", port=sink.getsockname()[1])
    consumer = await egress.consume(producer_id=producer.id,
                                    rtp_capabilities=router.rtp_capabilities)
    # latched: the junk sender is the remote; simulcast by RID, with RTX
    latched = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
    video = await latched.produce(kind="video", rtp_parameters={
        "mid": "0",
        "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                    "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
                   {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                    "parameters": {"apt": 96}}],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_ID},
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID_ID},
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": RRID_ID}],
        "encodings": [{"rid": "r0"}, {"rid": "r1"}], "rtcp": {"cname": "junk"}})
    video_sink = _udp(rcvbuf=4 << 20)
    video_egress = await router.create_plain_transport(listen_ip="127.0.0.1")
    await video_egress.connect(ip="127.0.0.1", port=video_sink.getsockname()[1])
    await video_egress.consume(producer_id=video.id, rtp_capabilities=router.rtp_capabilities)
    webrtc = await router.create_webrtc_transport(
        listen_infos=[{"protocol": "udp", "ip": "127.0.0.1"}])
    webrtc_port = next(c["port"] for c in webrtc.ice_candidates if c["protocol"] == "udp")
    return {"ingress": ingress, "sink": sink, "consumer": consumer, "latched": latched,
            "video_sink": video_sink, "webrtc": webrtc,
            "ports": {"legit": ingress.tuple["localPort"],
                      "latched": latched.tuple["localPort"], "webrtc": webrtc_port}}


async def _wait(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _flood(worker: relay.Worker) -> dict:
    objects = await _build(worker)
    ports = objects["ports"]
    sink, video_sink = objects["sink"], objects["video_sink"]
    sender = _udp()
    hostile = _udp(rcvbuf=4 << 20)  # the latched remote: the worker answers it (PLI, NACK)
    sources = [_udp() for _ in range(JUNK_SOURCES)]
    corpus = valid_datagrams([LEGIT_SSRC, 0x0BAD_F00D, 0x2000_0001])
    makers = {name: JunkMaker(corpus, seed) for seed, name in enumerate(JUNK)}
    junk = {name: [makers[name].make() for _ in range(count)] for name, count in JUNK.items()}
    kernel_drops_before = {name: udp_socket_state(port)[1] for name, port in ports.items()}

    # Latch both comedia transports before any junk arrives.
    sender.sendto(_legit_rtp(0), ("127.0.0.1", ports["legit"]))
    hostile.sendto(corpus[1], ("127.0.0.1", ports["latched"]))

    async def latched() -> bool:
        tuples = [(await t.dump())["tuple"] for t in (objects["ingress"], objects["latched"])]
        return all("remotePort" in t for t in tuples)
    await _wait(latched)

    received: list[bytes] = []
    sent_junk = dict.fromkeys(JUNK, 0)
    legit_sent = 1
    waits = 0
    start = time.monotonic()
    while legit_sent < LEGIT_PACKETS or any(sent_junk[n] < len(junk[n]) for n in JUNK):
        due = min(LEGIT_PACKETS, 1 + int((time.monotonic() - start) * LEGIT_RATE))
        while legit_sent < due:
            sender.sendto(_legit_rtp(legit_sent), ("127.0.0.1", ports["legit"]))
            legit_sent += 1
        for name, batch in junk.items():
            if sent_junk[name] >= len(batch):
                continue
            if udp_socket_state(ports[name])[0] > MAX_QUEUED:
                waits += 1
                continue
            # Spread the junk over the stream's lifetime, ahead of it if the worker keeps up.
            share = min(len(batch), sent_junk[name] + BATCH)
            for i in range(sent_junk[name], share):
                source = hostile if name == "latched" else sources[i % JUNK_SOURCES]
                source.sendto(batch[i], ("127.0.0.1", ports[name]))
            sent_junk[name] = share
        _drain(sink, received)
        _drain(video_sink)
        _drain(hostile)
        await asyncio.sleep(0.001)
    flood_seconds = time.monotonic() - start

    async def all_arrived() -> bool:
        _drain(sink, received)
        return sum(1 for p in received if not 64 <= p[1] & 0x7F <= 95) >= LEGIT_PACKETS
    try:
        await _wait(all_arrived, timeout=3.0)
    except AssertionError:
        pass  # counted below, with the figures that say why
    await asyncio.sleep(0.2)  # whatever is still queued in the worker is counted
    _drain(sink, received)
    stats = {name: (await objects[name].get_stats())[0]
             for name in ("ingress", "latched", "webrtc")}
    kernel_drops = {name: udp_socket_state(port)[1] - kernel_drops_before[name]
                    for name, port in ports.items()}
    for sock in (sender, hostile, sink, video_sink, *sources):
        sock.close()
    return {"received": received, "stats": stats, "kernelDrops": kernel_drops,
            "sentJunk": sent_junk, "floodSeconds": flood_seconds, "waits": waits,
            "consumerStats": await objects["consumer"].get_stats(),
            "dump": await worker.dump()}


def test_flood_of_junk_datagrams_loses_no_legit_packet():
    async def main() -> tuple[dict, int | None, bool]:
        worker = await relay.create_worker(log_level="error", rtc_min_port=PORT_RANGE[0],
                                           rtc_max_port=PORT_RANGE[1])
        try:
            result = await _flood(worker)
            alive = not worker.died
        finally:
            worker.close()
            exit_code = await worker.wait_closed()
        return result, exit_code, alive

    started = time.monotonic()
    result, exit_code, alive = asyncio.run(main())
    elapsed = time.monotonic() - started
    # The worker stayed up, answered every request and exited cleanly.
    assert alive and exit_code == 0 and isinstance(result["dump"], dict)
    assert elapsed < 15, f"the flood test took {elapsed:.1f} s"

    # The legit stream: every packet, once, in order, rewritten for the consumer.
    media = [p for p in result["received"] if not 64 <= p[1] & 0x7F <= 95]
    ingress, latched, webrtc = (result["stats"][n] for n in ("ingress", "latched", "webrtc"))
    context = (f"kernel drops {result['kernelDrops']}, ingress {ingress}, "
               f"flood {result['floodSeconds']:.1f} s, {result['waits']} waits")
    assert len(media) == LEGIT_PACKETS, context
    assert [int.from_bytes(p[12:16], "big") for p in media] == list(range(LEGIT_PACKETS))
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in media]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    consumer_ssrc = struct.unpack_from("!I", media[0], 8)[0]
    assert {struct.unpack_from("!I", p, 8)[0] for p in media} == {consumer_ssrc} != {LEGIT_SSRC}
    assert result["consumerStats"][0]["packetCount"] == LEGIT_PACKETS
    assert ingress["rtpPacketsReceived"] == LEGIT_PACKETS and ingress["rtcpPacketsReceived"] == 0

    sent, kernel = result["sentJunk"], result["kernelDrops"]
    assert sent == JUNK, "the flood did not finish"
    # legit port: every junk datagram dropped at the source check, counted once by reason
    assert set(ingress["dropped"]) <= {"tooShort", "notFromRemote", "rtcpNotFromRemote"}, \
        ingress["dropped"]
    assert sum(ingress["dropped"].values()) + kernel["legit"] == sent["legit"], context
    # latched remote: each datagram accepted as RTP or RTCP, or dropped before that
    pre_accept = sum(v for k, v in latched["dropped"].items() if k in PLAIN_PRE_ACCEPT_DROPS)
    accepted = latched["rtpPacketsReceived"] + latched["rtcpPacketsReceived"]
    assert accepted + pre_accept + kernel["latched"] == sent["latched"] + 1, latched
    assert latched["rtpPacketsReceived"] > 1000 and latched["rtcpPacketsReceived"] > 100
    # WebRTC port: dropped by first byte and source, or handed to the ICE-lite agent
    ice = webrtc["ice"]
    assert set(webrtc["dropped"]) <= WEBRTC_PRE_ICE_DROPS, webrtc["dropped"]
    assert sum(webrtc["dropped"].values()) + ice["received"] + kernel["webrtc"] \
        == sent["webrtc"], webrtc
    assert ice["valid_requests"] == 0 and webrtc["iceState"] == "new"
    assert ice["malformed"] + ice["ignored"] + ice["bad_requests"] + ice["auth_failures"] \
        + ice["role_conflicts"] == ice["received"] > 100
