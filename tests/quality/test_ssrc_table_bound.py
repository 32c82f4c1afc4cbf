"""The SSRC tables are bounded by the signalled encodings (issue 12, item 3).

An authenticated sender (a plain transport's remote, a latched comedia sender, a WebRTC peer
after ICE and DTLS) that sends packets under random SSRCs naming its producers by MID, RID
and repaired RID binds at most one SSRC per encoding and one RTX SSRC per encoding; a new SSRC
for a stream replaces the old one (which leaves the table) only once the old one went quiet;
everything refused is counted by reason in the transport's `dropped`; a legit stream
alongside loses nothing. In-process through the media harness (where the tables can be
looked at after every batch), and through a spawned worker with a comedia plain transport
(where `transport.dump()` crosses the channel).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time

from media_harness import VP8_DELTA_FRAME, VP8_KEY_FRAME
from quality_peers import NACK_FB

import relay
import relay.worker.producer as producer_module
from relay.rtp.packet import build_rtp, rtp_payload_offset

MID_ID, RID_ID, RRID_ID = 1, 2, 3
EXTENSIONS = [
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_ID},
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID_ID},
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": RRID_ID},
]
OPUS = {"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}
VP8 = {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "rtcpFeedback": NACK_FB}
VP8_RTX = {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
           "parameters": {"apt": 96}}
AUDIO_SSRC = 0x0A0A_0001  # the legit audio stream's SSRC, signalled (mid "1")
VIDEO_R0_SSRC = 0x0B0B_0001  # the legit video stream's SSRC, bound by RID r0 (mid "0")
LEGIT_SSRCS = {AUDIO_SSRC, VIDEO_R0_SSRC}
ATTACK_PACKETS = 20_000
ROUNDS = 400  # one legit packet per stream and ATTACK_PACKETS / ROUNDS attack packets each
# What the attacker sends, with weights: each packet under a new random SSRC.
ATTACK_KINDS = {
    "mid1": 8,  # audio naming the signalled producer by MID (the unbounded path before)
    "r0": 2,  # video naming the RID of the live legit stream
    "r1": 3,  # video naming the RID nobody else sends
    "rtx0": 2,  # RTX naming r0 / r1 by repaired-rtp-stream-id
    "rtx1": 2,
    "mid0": 2,  # video naming the simulcast producer by MID without a RID
    "bare": 1,  # audio without header extensions (no producer takes unsignalled SSRCs)
}
# A table entry (int key, tuple value, dict slot) costs ~250 bytes, so the 50,000
# entries cost ~12 MB; the dump of a bounded transport is a few hundred bytes.
MAX_DUMP_BYTES = 2048


def attack_plan(seed: int, count: int) -> list[tuple[str, int]]:
    """(kind, SSRC) per attack packet: kinds drawn by weight, SSRCs random and all new."""
    rng = random.Random(seed)
    kinds = rng.choices(list(ATTACK_KINDS), weights=list(ATTACK_KINDS.values()), k=count)
    seen = set(LEGIT_SSRCS)
    plan = []
    for kind in kinds:
        ssrc = rng.getrandbits(32)
        while ssrc in seen:
            ssrc = rng.getrandbits(32)
        seen.add(ssrc)
        plan.append((kind, ssrc))
    return plan


def attack_packet(kind: str, ssrc: int, k: int) -> bytes:
    if kind in ("mid1", "bare"):
        return build_rtp(payload_type=111, sequence_number=k, timestamp=960 * k, ssrc=ssrc,
                         payload=b"\xee" * 40,
                         extensions={MID_ID: b"1"} if kind == "mid1" else None)
    if kind.startswith("rtx"):
        # RFC 4588: the original sequence number first (a packet the stream already has, or
        # never had: either way not forwarded)
        return build_rtp(payload_type=97, sequence_number=k, timestamp=3000 * k, ssrc=ssrc,
                         payload=struct.pack("!H", k) + VP8_DELTA_FRAME,
                         extensions={MID_ID: b"0", RRID_ID: b"r" + kind[-1].encode()})
    extensions = {MID_ID: b"0"} if kind == "mid0" else {MID_ID: b"0", RID_ID: kind.encode()}
    return build_rtp(payload_type=96, sequence_number=k, timestamp=3000 * k, ssrc=ssrc,
                     payload=VP8_DELTA_FRAME, extensions=extensions)


def legit_audio(k: int) -> bytes:
    return build_rtp(payload_type=111, sequence_number=1000 + k, timestamp=960 * k,
                     ssrc=AUDIO_SSRC, payload=k.to_bytes(4, "big") + b"\xaa" * 36,
                     extensions={MID_ID: b"1"} if k == 0 else None)


def legit_video(k: int) -> bytes:
    """Every packet a key frame, so the simulcast consumer forwards each one; MID and RID only
    on the first (as browsers do once the SSRC is bound)."""
    return build_rtp(payload_type=96, sequence_number=2000 + k, timestamp=3000 * k,
                     ssrc=VIDEO_R0_SSRC, payload=VP8_KEY_FRAME + k.to_bytes(4, "big"),
                     extensions={MID_ID: b"0", RID_ID: b"r0"} if k == 0 else None)


def audio_parameters() -> dict:
    return {"mid": "1", "codecs": [OPUS], "headerExtensions": EXTENSIONS[:1],
            "encodings": [{"ssrc": AUDIO_SSRC}], "rtcp": {"cname": "sender"}}


def video_parameters() -> dict:
    return {"mid": "0", "codecs": [VP8, VP8_RTX], "headerExtensions": EXTENSIONS,
            "encodings": [{"rid": "r0"}, {"rid": "r1"}], "rtcp": {"cname": "sender"}}


def build(media) -> tuple[dict, object, object]:
    """Router r1; "tp" with the sender's two producers (audio "pa" signalled, mid "1"; video
    "pv" simulcast by RID with RTX, mid "0"); "tc" with a consumer of each."""
    tp, _, publisher, subscriber = media.publish_subscribe()
    media.request("tp", "transport.produce", {
        "producerId": "pa", "kind": "audio", "rtpParameters": audio_parameters(),
        "rtpMapping": {"codecs": [{"payloadType": 111, "mappedPayloadType": 100}],
                       "encodings": [{"ssrc": AUDIO_SSRC, "mappedSsrc": 5000}]}})
    media.request("tp", "transport.produce", {
        "producerId": "pv", "kind": "video", "rtpParameters": video_parameters(),
        "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101},
                                  {"payloadType": 97, "mappedPayloadType": 102}],
                       "encodings": [{"rid": "r0", "mappedSsrc": 7001},
                                     {"rid": "r1", "mappedSsrc": 7002}]}})
    media.request("tc", "transport.consume", {
        "consumerId": "ca", "producerId": "pa", "kind": "audio", "type": "simple",
        "rtpParameters": {"codecs": [{**OPUS, "payloadType": 100}], "encodings": [{"ssrc": 9001}]},
        "consumableRtpEncodings": [{"ssrc": 5000}]})
    media.request("tc", "transport.consume", {
        "consumerId": "cv", "producerId": "pv", "kind": "video", "type": "simulcast",
        "rtpParameters": {"codecs": [{**VP8, "payloadType": 101}], "encodings": [{"ssrc": 9002}]},
        "consumableRtpEncodings": [{"ssrc": 7001}, {"ssrc": 7002}],
        "preferredLayers": {"spatialLayer": 0}})
    return tp, publisher, subscriber


def table_sizes(transport) -> dict[str, dict[str, int]]:
    """Entries per producer id in each table."""
    sizes: dict[str, dict[str, int]] = {"ssrc": {}, "rtx": {}}
    for name, table in (("ssrc", transport.ssrc_table), ("rtx", transport.rtx_ssrc_table)):
        for producer, _ in table.values():
            sizes[name][producer.id] = sizes[name].get(producer.id, 0) + 1
    return sizes


async def run_attack(media, plan: list[tuple[str, int]], with_video: bool) -> dict:
    """Send the plan in ROUNDS rounds, each after one legit audio (and video) packet; after
    each round wait until the transport has read them all and record the tables' sizes."""
    tp, publisher, subscriber = build(media)
    transport = media.ctx.handlers["tp"]
    per_round = len(plan) // ROUNDS
    largest = {"ssrc": 0, "rtx": 0}
    sent = 0
    for k in range(ROUNDS):
        packets = [legit_audio(k)] + ([legit_video(k)] if with_video else [])
        packets += [attack_packet(kind, ssrc, k) for kind, ssrc in
                    plan[k * per_round:(k + 1) * per_round]]
        for packet in packets:
            publisher.send(packet, tp["tuple"])
        sent += len(packets)
        await media.wait_for(lambda sent=sent: transport.rtp_packets_received == sent)
        subscriber.drain()
        publisher.drain()  # key-frame requests and RRs
        largest["ssrc"] = max(largest["ssrc"], len(transport.ssrc_table))
        largest["rtx"] = max(largest["rtx"], len(transport.rtx_ssrc_table))
    await media.settle()
    received = [p for p in subscriber.drain() if not 64 <= p[1] & 0x7F <= 95]
    by_ssrc: dict[int, list[bytes]] = {}
    for p in received:
        by_ssrc.setdefault(struct.unpack_from("!I", p, 8)[0], []).append(p)
    return {"transport": transport, "largest": largest, "sizes": table_sizes(transport),
            "audio": by_ssrc.get(9001, []), "video": by_ssrc.get(9002, []),
            "dump": json.dumps(media.request("tp", "transport.dump")),
            "stats": media.request("tp", "transport.getStats")[0]}


def audio_index(packet: bytes) -> int:
    offset = rtp_payload_offset(packet, len(packet))
    return int.from_bytes(packet[offset:offset + 4], "big")


def assert_legit_flowed(result: dict, with_video: bool) -> None:
    audio = result["audio"]
    assert [audio_index(p) for p in audio] == list(range(ROUNDS))
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in audio]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(ROUNDS)]
    if with_video:
        video = result["video"]
        assert [int.from_bytes(p[-4:], "big") for p in video] == list(range(ROUNDS))


def test_random_ssrcs_bind_at_most_the_signalled_encodings(run_media, monkeypatch):
    """20,000 packets under random SSRCs naming the producers by MID, RID and repaired RID;
    the old SSRCs never go quiet for long enough to be replaced (so every count is exact): the
    tables keep the legit SSRCs and the first attacker SSRC of each stream nobody else had
    (r1 and both RTX streams), nothing more; every other packet is counted by reason."""
    monkeypatch.setattr(producer_module, "SSRC_SWITCH_SILENCE", 60.0)
    plan = attack_plan(seed=12, count=ATTACK_PACKETS)
    counts = {kind: sum(1 for k, _ in plan if k == kind) for kind in ATTACK_KINDS}
    first = {kind: next(s for k, s in plan if k == kind) for kind in ("r1", "rtx0", "rtx1")}

    async def body(media):
        result = await run_attack(media, plan, with_video=True)
        transport = result["transport"]
        sizes = result["sizes"]
        report = (f"largest tables {result['largest']}, now {sizes}, "
                  f"dump {len(result['dump'])} bytes")
        print(report)
        assert result["largest"] == {"ssrc": 3, "rtx": 2}, report
        assert {s: (p.id, i) for s, (p, i) in transport.ssrc_table.items()} == {
            AUDIO_SSRC: ("pa", 0), VIDEO_R0_SSRC: ("pv", 0), first["r1"]: ("pv", 1)}
        assert {s: (p.id, i) for s, (p, i) in transport.rtx_ssrc_table.items()} == {
            first["rtx0"]: ("pv", 0), first["rtx1"]: ("pv", 1)}
        assert len(result["dump"]) < MAX_DUMP_BYTES, report
        stats = result["stats"]
        assert stats["rtpPacketsReceived"] == 2 * ROUNDS + ATTACK_PACKETS
        assert stats["dropped"] == {
            "ssrcNotSignalled": counts["mid1"],
            "unknownSsrc": counts["r0"] + counts["r1"] - 1 + counts["mid0"] + counts["bare"],
            "rtxUnknownSsrc": counts["rtx0"] - 1 + counts["rtx1"] - 1,
        }
        assert_legit_flowed(result, with_video=True)
        # the three attack packets taken: r1's first (media), the two RTX (a probe, and RTX
        # before r1 had media or after: counted by the producer either way)
        pv = media.request("pv", "producer.getStats")
        assert [s["ssrc"] for s in pv] == [VIDEO_R0_SSRC, first["r1"]]
        assert [s["rtxSsrc"] for s in pv] == [first["rtx0"], first["rtx1"]]
        assert pv[0]["packetCount"] == ROUNDS + 1
        pa = media.request("pa", "producer.getStats")
        assert pa[0]["packetsReceived"] == ROUNDS and pa[0]["ssrc"] == AUDIO_SSRC

    run_media(body)


def test_a_replaced_ssrc_leaves_the_tables(run_media, monkeypatch):
    """Streams that go quiet at once (no silence asked): every new SSRC naming r1 or an RTX
    stream replaces the one before, which leaves the table; the signalled audio stream takes
    none of the SSRCs naming it, and its legit stream flows."""
    monkeypatch.setattr(producer_module, "SSRC_SWITCH_SILENCE", 0.0)
    plan = [(kind, ssrc) for kind, ssrc in attack_plan(seed=7, count=ATTACK_PACKETS // 2)
            if kind in ("mid1", "r1", "rtx0", "rtx1")]
    plan = plan[:len(plan) - len(plan) % ROUNDS]
    last = {kind: [s for k, s in plan if k == kind][-1] for kind in ("r1", "rtx0", "rtx1")}

    async def body(media):
        result = await run_attack(media, plan, with_video=False)
        transport = result["transport"]
        report = f"largest tables {result['largest']}, now {result['sizes']}"
        print(report)
        assert result["largest"]["ssrc"] <= 3 and result["largest"]["rtx"] <= 2, report
        assert {s: (p.id, i) for s, (p, i) in transport.ssrc_table.items()} == {
            AUDIO_SSRC: ("pa", 0), last["r1"]: ("pv", 1)}
        assert {s: (p.id, i) for s, (p, i) in transport.rtx_ssrc_table.items()} == {
            last["rtx0"]: ("pv", 0), last["rtx1"]: ("pv", 1)}
        assert result["stats"]["dropped"] == {
            "ssrcNotSignalled": sum(1 for k, _ in plan if k == "mid1")}
        assert_legit_flowed(result, with_video=False)
        pv = media.request("pv", "producer.getStats")
        assert pv[1]["ssrc"] == last["r1"]
        # every r1 and RTX packet was taken, by the stream's SSRC of the moment: media
        # received, RTX unwrapped (and received), RTX probes or RTX before media
        rtx = sum(1 for k, _ in plan if k.startswith("rtx"))
        recovered = sum(s["rtxPacketsReceived"] for s in pv)
        assert pv[0]["packetCount"] == sum(1 for k, _ in plan if k == "r1") + recovered
        assert recovered + pv[0]["probePackets"] + pv[0]["dropped"]["rtxBeforeMedia"] == rtx

    run_media(body)


# -- through a spawned worker, a comedia plain transport latched by the sender ------------------

PORT_RANGE = (47600, 47699)
MEDIA_CODECS = [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2},
                {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}]


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
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


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def _comedia_attack(worker: relay.Worker, plan: list[tuple[str, int]]) -> dict:
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    ingress = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
    audio = await ingress.produce(kind="audio", rtp_parameters=audio_parameters())
    video = await ingress.produce(kind="video", rtp_parameters=video_parameters())
    sink = _udp()
    egress = await router.create_plain_transport(listen_ip="127.0.0.1")
    await egress.connect(ip="127.0.0.1", port=sink.getsockname()[1])
    consumer = await egress.consume(producer_id=audio.id, rtp_capabilities=router.rtp_capabilities)
    sender = _udp()
    target = ("127.0.0.1", ingress.tuple["localPort"])
    received: list[bytes] = []
    per_round = len(plan) // ROUNDS
    rss_start = _rss_kb(worker.pid)
    largest = 0
    sent = 0
    started = time.monotonic()
    for k in range(ROUNDS):
        packets = [legit_audio(k)] + [attack_packet(kind, ssrc, k) for kind, ssrc in
                                      plan[k * per_round:(k + 1) * per_round]]
        for packet in packets:
            sender.sendto(packet, target)
        sent += len(packets)
        while (await ingress.get_stats())[0]["rtpPacketsReceived"] < sent:
            assert time.monotonic() - started < 30, "the worker does not keep up"
            await asyncio.sleep(0.001)
        _drain(sink, received)
        _drain(sender)
        if k % 50 == 49:
            largest = max(largest, len((await ingress.dump())["mapSsrcProducerId"]))
    await asyncio.sleep(0.1)
    _drain(sink, received)
    dump = await ingress.dump()
    result = {"dump": dump, "dumpBytes": len(json.dumps(dump)), "largest": largest,
              "stats": (await ingress.get_stats())[0], "video": await video.get_stats(),
              "consumer": await consumer.get_stats(), "rssKb": (rss_start, _rss_kb(worker.pid)),
              "received": [p for p in received if not 64 <= p[1] & 0x7F <= 95],
              "seconds": time.monotonic() - started}
    sink.close()
    sender.close()
    return result


def test_latched_comedia_sender_cannot_grow_the_tables():
    """The issue's probe: a comedia sender, once latched, sends 20,000 packets under random
    SSRCs with the MIDs of its producers (default SSRC_SWITCH_SILENCE in the worker): the
    transport's SSRC map in `dump()` (through the channel) holds at most one SSRC per encoding,
    every attack packet is either refused and counted by reason or taken by a stream (counted
    by its producer), and the legit audio stream reaches its consumer whole."""
    plan = attack_plan(seed=3, count=ATTACK_PACKETS)
    counts = {kind: sum(1 for k, _ in plan if k == kind) for kind in ATTACK_KINDS}

    async def main() -> dict:
        worker = await relay.create_worker(log_level="error", rtc_min_port=PORT_RANGE[0],
                                           rtc_max_port=PORT_RANGE[1])
        try:
            return await _comedia_attack(worker, plan)
        finally:
            worker.close()
            await worker.wait_closed()

    result = asyncio.run(main())
    dump, stats = result["dump"], result["stats"]
    report = (f"largest SSRC map {result['largest']}, now {len(dump['mapSsrcProducerId'])}, "
              f"dump {result['dumpBytes']} bytes, worker RSS {result['rssKb']} kB, "
              f"{result['seconds']:.1f} s")
    print(report)
    assert len(dump["mapSsrcProducerId"]) <= 3 and result["largest"] <= 3, report
    assert result["dumpBytes"] < MAX_DUMP_BYTES, report
    assert stats["rtpPacketsReceived"] == ROUNDS + ATTACK_PACKETS
    dropped = stats["dropped"]
    assert set(dropped) <= {"ssrcNotSignalled", "unknownSsrc", "rtxUnknownSsrc"}, dropped
    assert dropped["ssrcNotSignalled"] == counts["mid1"]
    # every attack packet is refused (counted above) or taken by a video stream (counted by
    # the producer: media received, RTX probes, RTX before media); r0, r1 and their RTX
    # streams each rebind at most once per SSRC_SWITCH_SILENCE: almost all are refused
    video = result["video"]
    taken = video[0]["packetCount"] + video[0]["probePackets"] \
        + sum(video[0]["dropped"].values())
    assert sum(dropped.values()) + taken == ATTACK_PACKETS, (dropped, video[0])
    assert taken <= 4 * (result["seconds"] / producer_module.SSRC_SWITCH_SILENCE + 1), taken
    assert dropped["unknownSsrc"] >= counts["mid0"] + counts["bare"]
    media = result["received"]
    assert [audio_index(p) for p in media] == list(range(ROUNDS))
    assert result["consumer"][0]["packetCount"] == ROUNDS
