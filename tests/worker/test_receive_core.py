"""The C receive core (relay/uring/receive_core.c) against the Python receive path, packet for
packet: the same datagram sequence (in order, gaps, late and duplicate packets, unknown SSRC,
malformed, short, unknown payload type, a stranger's packets, a sequence jump and wrap, key
frames, RTCP) is driven through a plain transport with the core on and with it off
(`receive_core.ENABLED = False`, as `RELAY_RECEIVE_CORE=0`), each drain at the same fake
clock; what the consumers' peers receive, the NACKs sent upstream, the retransmissions a
consumer's NACK gets, the producer's and transport's stats and the RR blocks must be equal.
"""

from __future__ import annotations

import asyncio
import base64
import random
import struct
import time

import pytest
from media_harness import MID, PRODUCER_SSRC, VP8_DELTA_FRAME, VP8_KEY_FRAME, rtp
from pylibsrtp import Policy, Session

from relay.rtp.rtcp import Nack
from relay.transport.srtp_session import generate_key
from relay.uring import receive_core

SUITE = "AES_CM_128_HMAC_SHA1_80"
TCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80

pytestmark = pytest.mark.skipif(not receive_core.ENABLED,
                                reason=f"receive core off: {receive_core.REASON}")


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _payload(kind: str, seq: int, key_frames: set[int]) -> bytes:
    if kind == "audio":
        return bytes([seq & 0xFF]) * 60
    if seq in key_frames:
        return VP8_KEY_FRAME + bytes([seq & 0xFF]) * 20
    # a delta frame with a TID (X, T): the per-temporal-layer bytes count it on both paths
    return b"\x90\x20" + bytes([(seq % 3) << 6]) + VP8_DELTA_FRAME[1:] + bytes([seq & 0xFF]) * 20


def _steps(kind: str) -> tuple[list[tuple[float, list]], set[int]]:
    """(clock, datagrams) per drain; a datagram is a seq, or (what, arg)."""
    key_frames = {100, 140, 65533}
    steps = [
        (1.000, list(range(100, 110))),
        (1.020, [110, 111, 113, 114]),  # 112 lost: NACK upstream
        (1.040, [112, 115, 115, 116]),  # 112 late (recovered), 115 duplicated
        (1.060, [("ssrc", 117), ("malformed", 117), ("short", 0), ("pt", 117), 117, 118]),
        (1.080, [("stranger", 119), 119, ("rtcp", 0), 120]),
        (1.100, [*range(121, 140), 140, 141, 142]),
        (1.140, [("jitter", s) for s in range(143, 160)]),
        (1.150, [("mutated", s) for s in range(160, 260)]),  # (plain runs: see _mutate)
        (1.200, list(range(30000, 30006))),  # jumps ahead (a sender restart, as RTP sees it)
        (1.210, list(range(55000, 55006))),
        (1.220, list(range(65530, 65536)) + list(range(0, 6))),  # the wrap
        (1.240, list(range(6, 60))),  # more than one recvmmsg batch
    ]
    return steps, key_frames


async def _scenario(media, kind: str, srtp: bool, quality: bool, clock: Clock,
                    tcc: bool = False) -> dict:
    media.router()
    options = {"enableSrtp": True, "srtpCryptoSuite": SUITE} if srtp else {}
    tp = media.transport("tp", **options)
    sender, stranger = media.peer(), media.peer()
    protect = unprotect_rtcp = None
    if srtp:
        key = generate_key(SUITE)
        session = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                 srtp_profile=PROFILE))
        protected: dict[bytes, bytes] = {}  # a duplicate is the same datagram again

        def protect(packet: bytes, odd: bool = False) -> bytes:
            if odd:  # a second sender's index space (it reuses a sequence number)
                return Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                      srtp_profile=PROFILE)).protect(packet)
            if packet not in protected:
                protected[packet] = session.protect(packet)
            return protected[packet]

        unprotect_rtcp = Session(Policy(key=base64.b64decode(tp["srtpParameters"]["keyBase64"]),
                                        ssrc_type=Policy.SSRC_ANY_INBOUND,
                                        srtp_profile=PROFILE)).unprotect_rtcp
        media.connect("tp", sender, srtpParameters={
            "cryptoSuite": SUITE, "keyBase64": base64.b64encode(key).decode()})
    else:
        media.connect("tp", sender)
    feedback = [{"type": "nack", "parameter": ""}] if quality else []
    if kind == "video":
        feedback.append({"type": "nack", "parameter": "pli"})
    produce = _request(media, lambda: media.produce("tp", kind=kind))
    produce[2]["rtpParameters"]["codecs"][0]["rtcpFeedback"] = feedback + (
        [{"type": "transport-cc", "parameter": ""}] if tcc else [])
    if tcc:
        produce[2]["rtpParameters"]["headerExtensions"].append({"uri": TCC_URI, "id": 5})
    media.ctx.handlers[produce[0]].handle_request(produce[1], produce[2])
    feedback_timer = media.ctx.handlers["tp"].feedback._timer
    if feedback_timer is not None:  # (built once at the end: real-time timers would vary)
        feedback_timer.cancel()
    wides: dict[tuple[str, int], int] = {}
    consumers = []
    for i in range(3):
        media.transport(f"tc{i}", **options)
        peer = media.peer()
        extra = {}
        unprotect = None
        if srtp:
            params = media.request(f"tc{i}", "transport.dump")["srtpParameters"]
            unprotect = Session(Policy(key=base64.b64decode(params["keyBase64"]),
                                       ssrc_type=Policy.SSRC_ANY_INBOUND,
                                       srtp_profile=PROFILE)).unprotect
            extra["srtpParameters"] = {"cryptoSuite": SUITE, "keyBase64":
                                       base64.b64encode(generate_key(SUITE)).decode()}
        media.connect(f"tc{i}", peer, **extra)
        consume = _request(media, lambda i=i: media.consume(f"tc{i}", f"c{i}", ssrc=7000 + i,
                                                             kind=kind))
        consume[2]["rtpParameters"]["codecs"][0]["rtcpFeedback"] = feedback
        media.ctx.handlers[consume[0]].handle_request(consume[1], consume[2])
        consumers.append((peer, unprotect))
    transport = media.ctx.handlers["tp"]
    remote = (tp["tuple"]["localIp"], tp["tuple"]["localPort"])
    steps, key_frames = _steps(kind)
    pt = 111 if kind == "audio" else 96
    for at, datagrams in steps:
        clock.now = at
        for item in datagrams:
            what, arg = ("seq", item) if isinstance(item, int) else item
            seq = arg
            ts = seq * 960
            ssrc, this_pt, source = PRODUCER_SSRC, pt, sender
            if what == "jitter":
                ts += (seq % 3) * 37
            if what == "ssrc":
                ssrc = 9999
            if what == "pt":
                this_pt = 50
            if what == "stranger":
                source = stranger
            if what == "rtcp":  # a sender report
                from relay.rtp.rtcp import SenderReport
                data = SenderReport(PRODUCER_SSRC, 1 << 32, 1234, 10, 1000, []).serialize()
                source.sock.sendto(session.protect_rtcp(data) if srtp else data, remote)
                continue
            if what == "short":
                source.sock.sendto(b"\x80\x6f\x00\x01\x00\x00\x00\x01", remote)
                continue
            extensions = {1: b"\x90"}
            if tcc:  # the sender's transport-wide number (a duplicate repeats it)
                wide_key = (what, seq) if what in ("ssrc", "malformed", "pt") else ("seq", seq)
                number = wides.setdefault(wide_key, len(wides))
                extensions[5] = bytes([number >> 8 & 0xFF, number & 0xFF])
            packet = rtp(seq, ts, ssrc=ssrc, pt=this_pt, payload=_payload(kind, seq, key_frames),
                         extensions=extensions)
            if what == "malformed":  # version 1
                packet = bytes([0x40 | (packet[0] & 0x3F)]) + packet[1:]
            if what == "mutated":
                if srtp:
                    continue
                packet = _mutate(packet, random.Random(seq))
            if protect is not None:
                packet = protect(packet, what in ("malformed", "pt"))
            source.sock.sendto(packet, remote)
        transport._on_rtp_readable()
        media.ctx.ring.flush()
        await asyncio.sleep(0.002)
        if at == 1.140 and not srtp:  # c0's peer NACKs two packets: answered from the store
            await _nack(media, consumers[0][0], [150, 155])
    handlers = [media.ctx.handlers[f"c{i}"] for i in range(3)]
    for _ in range(400):  # every send has reached its peer (the clock is fake: count)
        await asyncio.sleep(0.005)
        if all(len(peer.drain()) == c.packets_sent + c.retransmitted_packets
               for (peer, _), c in zip(consumers, handlers, strict=True)):
            break
    received = []
    for peer, unprotect in consumers:
        got = peer.drain()
        # RTP only: the consumers' SRs carry wall-clock time and come on real-time timers
        received.append([unprotect(d) if unprotect else d for d in got
                         if not 192 <= d[1] <= 223])
    upstream = [unprotect_rtcp(d) if unprotect_rtcp else d for d in sender.drain()]
    # NACK and PLI; not the RR compounds (a real-time timer, their XR carries wall-clock
    # time; their blocks are compared below)
    upstream = [d for d in upstream if d[1] != 201]
    # Not the PLIs either: the key-frame requester sends them from loop timers (its wait for
    # the sender's first SSRC, its retries: real time, not the fake clock), so whether and
    # how often one goes varies from run to run on either path. The NACKs, which the
    # receive path makes, are compared exactly.
    upstream = [d for d in upstream if not (d[1] == 206 and d[0] & 0x1F == 1)]
    producer = media.ctx.handlers["p1"]
    stats = media.request("p1", "producer.getStats")
    tstats = media.request("tp", "transport.getStats")[0]
    blocks = [(b.ssrc, b.fraction_lost, b.packets_lost, b.highest_sequence, b.jitter)
              for b in producer.report_blocks(2.0)]
    for entry in stats:
        entry.pop("timestamp")
        entry.pop("keyFrameRequestsSent", None)  # the requester's timers (see the PLIs)
    taken = tstats.pop("receiveCore", None)
    for key in ("timestamp", "tuple", "sendEstimation", "receiveFeedback", "srtpSend", "probes",
                "rtcpPacketsSent", "rtcpReportsSent"):  # (these on real-time timers)
        tstats.pop(key, None)
    consumer_stats = [media.request(f"c{i}", "consumer.getStats")[0] for i in range(3)]
    for entry in consumer_stats:
        entry.pop("timestamp", None)
    receive_feedback = transport.feedback
    built = receive_feedback.tcc.build_feedback(1) if receive_feedback.tcc is not None else None
    core = transport.receive_core
    stats.append({"tidBytes": [list(r._tid_bytes) for r in producer.receivers]})
    return {"feedback": (receive_feedback.stats(), built), "taken": taken, "received": received, "upstream": upstream, "stats": stats, "transport": tstats,
            "blocks": blocks, "consumers": consumer_stats,
            "python_packets": producer._packets_received if core is not None else None,
            "rx_fast": [c.fast for c in producer.rx] if producer.rx is not None else None}


async def _nack(media, peer, input_seqs: list[int]) -> None:
    c0 = media.ctx.handlers["c0"]
    tc0 = media.request("tc0", "transport.dump")["tuple"]
    lost = [(c0.rewriter.seq_offset + seq) & 0xFFFF for seq in input_seqs]
    peer.sock.sendto(Nack(4321, 7000, lost).serialize(), (tc0["localIp"], tc0["localPort"]))
    for _ in range(20):
        await asyncio.sleep(0.001)
    media.ctx.handlers["tc0"]._on_rtp_readable()
    media.ctx.ring.flush()


def _mutate(packet: bytes, rng: random.Random) -> bytes:
    """Half the packets as they are, the rest broken one way (a fixed seed per packet)."""
    data = bytearray(packet)
    choice = rng.randrange(10)
    if choice == 0:  # any header byte
        data[rng.randrange(20)] = rng.randrange(256)
    elif choice == 1:  # truncated anywhere
        del data[rng.randrange(len(data)):]
    elif choice == 2:  # an extension block longer than the packet
        data[0] |= 0x10
        data[14:16] = rng.randrange(1, 0x10000).to_bytes(2, "big")
    elif choice == 3:  # padding, sometimes impossible
        data[0] |= 0x20
        data[-1] = rng.choice([0, 1, 4, 200, 255])
    elif choice == 4:  # CSRCs that may not be there
        data[0] = (data[0] & 0xF0) | rng.randrange(16)
    return bytes(data)


def header(packet: bytes) -> tuple[int, int, int, int]:
    """(seq, ts, ssrc, payload's first byte) of an RTP packet."""
    seq, ts, ssrc = struct.unpack_from("!HII", packet, 2)
    return seq, ts, ssrc, packet[-1]


def _request(media, call):
    captured = []
    media.request = lambda h, m, d=None: captured.append((h, m, d))
    try:
        call()
    finally:
        del media.request
    return captured[0]


def _run(run_media, monkeypatch, kind: str, srtp: bool, quality: bool, core: bool,
         tcc: bool = False) -> dict:
    clock = Clock()
    monkeypatch.setattr(receive_core, "ENABLED", core)
    monkeypatch.setattr(time, "monotonic", clock)
    try:
        return run_media(lambda media: _scenario(media, kind, srtp, quality, clock, tcc))
    finally:
        monkeypatch.undo()


def _differences(mine: object, reference: object, path: str = "") -> list[str]:
    """Where two nested results differ (the assertion message: pytest truncates)."""
    if isinstance(mine, dict) and isinstance(reference, dict):
        return [d for k in sorted(set(mine) | set(reference), key=str)
                for d in _differences(mine.get(k), reference.get(k), f"{path}.{k}")]
    if isinstance(mine, list | tuple) and isinstance(reference, list | tuple) \
            and len(mine) == len(reference):
        return [d for i, (a, b) in enumerate(zip(mine, reference, strict=True))
                for d in _differences(a, b, f"{path}[{i}]")]
    return [] if mine == reference else [f"{path}: {mine!r} != {reference!r}"]


@pytest.mark.parametrize("kind,srtp,quality,tcc", [
    ("audio", False, True, False), ("audio", True, True, False), ("video", False, True, False),
    ("audio", False, False, False), ("audio", False, True, True), ("video", True, True, True),
])
def test_core_matches_python_path(run_media, monkeypatch, kind, srtp, quality, tcc):
    python = _run(run_media, monkeypatch, kind, srtp, quality, core=False, tcc=tcc)
    c = _run(run_media, monkeypatch, kind, srtp, quality, core=True, tcc=tcc)
    assert python["python_packets"] is None and python["rx_fast"] is None
    # the core really took the common case: most packets never reached Producer.receive
    total = c["stats"][0]["packetCount"]
    assert total > 100 and c["python_packets"] < total // 3, (c["python_packets"], total)
    assert python["taken"] is None
    assert c["taken"]["packetsTaken"] == total - c["python_packets"]
    assert c["taken"]["handedToPython"] > c["python_packets"]  # (RTCP, strangers, ...)
    for mine, reference in zip(c["received"], python["received"], strict=True):
        # (sorted: io_uring may complete two sends of one submit out of order, either path)
        assert sorted(map(header, mine)) == sorted(map(header, reference))
        assert sorted(mine) == sorted(reference)
    for key in ("upstream", "stats", "transport", "blocks", "consumers", "feedback"):
        assert c[key] == python[key], (key, _differences(c[key], python[key]))
    # what the scenario is made to show, on both paths
    if kind == "video":  # every temporal layer's bytes counted (equal on both: above)
        assert all(c["stats"][-1]["tidBytes"][0][:3]), c["stats"][-1]
    stats = c["stats"][0]
    assert all(len(r) > 100 for r in c["received"])
    dropped = c["transport"]["dropped"]
    assert dropped["notFromRemote"] == 1 and dropped["tooShort"] >= 1
    if not srtp:  # (with SRTP the receiver's replay check takes them: a reused index)
        assert dropped["malformed"] > 1  # the version-1 packet and broken ones
        assert c["stats"][0]["dropped"]["unknownPayloadType"] >= 1
    assert c["transport"]["rtcpPacketsReceived"] == 1
    if quality:
        assert stats["nackCount"] >= 1 and stats["packetsRecovered"] >= 1
        assert c["upstream"], "a NACK went upstream"
        if not srtp:
            assert stats["retransmissionStore"]["hits"] == 2
            assert c["consumers"][0]["retransmittedPackets"] == 2
    if kind == "video":
        assert stats["keyFrames"] == 3
    if tcc:  # every packet's arrival recorded (the late, duplicate and stranger's aside)
        assert c["feedback"][0]["transportCc"]["packets"] > 100 and c["feedback"][1]
        # most of them by the core itself, into the receiver's table
        assert c["taken"]["transportCcRecorded"] > c["feedback"][0]["transportCc"]["packets"] // 2


def test_srtp_failures_and_unknown_ssrc_counted_in_core(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp", enableSrtp=True, srtpCryptoSuite=SUITE)
        sender = media.peer()
        key = generate_key(SUITE)
        protect = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                 srtp_profile=PROFILE)).protect
        media.connect("tp", sender, srtpParameters={
            "cryptoSuite": SUITE, "keyBase64": base64.b64encode(key).decode()})
        media.produce("tp", extensions=[{"uri": MID, "id": 4}])
        transport = media.ctx.handlers["tp"]
        assert transport.receive_core is not None
        remote = (tp["tuple"]["localIp"], tp["tuple"]["localPort"])
        for seq in range(1, 41):
            packet = protect(rtp(seq, seq * 960))
            if seq % 10 == 0:  # a flipped bit in the auth tag
                packet = packet[:-1] + bytes([packet[-1] ^ 1])
            sender.sock.sendto(packet, remote)
        sender.sock.sendto(protect(rtp(1, 1, ssrc=31337)), remote)
        transport._on_rtp_readable()
        stats = media.request("tp", "transport.getStats")[0]
        assert stats["dropped"]["srtp"] == 4
        assert sum(stats["srtpRecv"]["failures"].values()) == 4
        assert stats["srtpRecv"]["packets"] == 37
        assert stats["rtpPacketsReceived"] == 37
        assert media.request("p1", "producer.getStats")[0]["packetCount"] == 36

    run_media(body)


def test_comedia_and_learned_ssrc_then_core(run_media):
    """The remote learned from the first packet (comedia) and an unsignalled SSRC bound by
    Python; the packets after them go through the core (its tables followed both)."""
    async def body(media):
        media.router()
        tp = media.transport("tp", comedia=True)
        media.request("tp", "transport.connect", {})
        media.produce("tp", ssrc=None)
        media.transport("tc")
        receiver = media.peer()
        media.connect("tc", receiver)
        media.consume("tc", "c0", ssrc=4242)
        sender = media.peer()
        remote = (tp["tuple"]["localIp"], tp["tuple"]["localPort"])
        for seq in range(1, 61):
            sender.sock.sendto(rtp(seq, seq * 960, ssrc=777), remote)
        transport = media.ctx.handlers["tp"]
        transport._on_rtp_readable()
        media.ctx.ring.flush()
        await media.wait_for(lambda: len(receiver.drain()) == 60)
        producer = media.ctx.handlers["p1"]
        assert producer._packets_received <= 2  # the first (learning, binding), then the core
        assert producer.packets_received == 60
        stats = media.request("p1", "producer.getStats")[0]
        assert stats["ssrc"] == 777 and stats["packetsReceived"] == 60
        assert stats["highestSequenceNumber"] == 60
        assert media.request("tp", "transport.getStats")[0]["rtpPacketsReceived"] == 60

    run_media(body)
