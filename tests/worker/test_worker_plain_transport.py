"""Plain transport (worker side, in-process, real UDP on 127.0.0.1): comedia, rtcp-mux and a
separate RTCP port, SRTP round trips with a pylibsrtp peer, drops by reason, PLI paths, ports."""

from __future__ import annotations

import base64
import struct

import pytest
from media_harness import PRODUCER_SSRC, VP8_KEY_FRAME, rtp
from pylibsrtp import Policy, Session

from relay.rtp.packet import build_pli, keyframe_request_ssrcs
from relay.transport.srtp_session import CRYPTO_SUITES, generate_key
from worker_proto.errors import ArgumentError, InvalidStateError, ResourceExhaustedError


def header(packet: bytes) -> tuple[int, int, int, int]:
    b1, seq, ts, ssrc = struct.unpack_from("!BHII", packet, 1)
    return b1 & 0x7F, seq, ts, ssrc


def test_create_describes_the_tuple(run_media):
    async def body(media):
        media.router()
        t = media.transport("t1")
        assert t["id"] == "t1"
        assert t["tuple"]["localIp"] == "127.0.0.1" and t["tuple"]["protocol"] == "udp"
        assert 42000 <= t["tuple"]["localPort"] <= 42999
        assert "remoteIp" not in t["tuple"]
        assert t["rtcpTuple"] is None and t["srtpParameters"] is None
        t2 = media.transport("t2", rtcpMux=False, enableSrtp=True,
                             srtpCryptoSuite="AEAD_AES_256_GCM")
        assert t2["rtcpTuple"]["localPort"] != t2["tuple"]["localPort"]
        assert t2["srtpParameters"]["cryptoSuite"] == "AEAD_AES_256_GCM"
        assert len(base64.b64decode(t2["srtpParameters"]["keyBase64"])) == 44
        peer = media.peer()
        result = media.connect("t2", peer, rtcpPort=peer.port + 1, srtpParameters={
            "cryptoSuite": "AEAD_AES_256_GCM",
            "keyBase64": base64.b64encode(generate_key("AEAD_AES_256_GCM")).decode()})
        assert result["tuple"]["remotePort"] == peer.port
        assert result["rtcpTuple"]["remotePort"] == peer.port + 1
        with pytest.raises(InvalidStateError):
            media.connect("t2", peer)

    run_media(body)


def test_comedia_learns_the_remote_from_the_first_valid_rtp_packet(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp", comedia=True)
        media.produce("tp")
        media.transport("tc")
        receiver = media.peer()
        media.connect("tc", receiver)
        media.consume("tc", "c0", ssrc=4242)
        sender = media.peer()
        sender.send(b"\x00" * 20, tp["tuple"])  # not RTP: ignored, remote not learned
        sender.send(rtp(1, 1), tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 1)
        tuples = [d for h, e, d in media.notifications if (h, e) == ("tp", "tuple")]
        assert tuples == [{"tuple": {"localIp": "127.0.0.1", "localPort": tp["tuple"]["localPort"],
                                     "protocol": "udp", "remoteIp": "127.0.0.1",
                                     "remotePort": sender.port}}]
        # Another source is not the remote any more: dropped and counted.
        intruder = media.peer()
        intruder.send(rtp(2, 2), tp["tuple"])
        sender.send(rtp(3, 3), tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 2)
        stats = media.request("tp", "transport.getStats")[0]
        assert stats["dropped"] == {"malformed": 1, "notFromRemote": 1}  # garbage, intruder
        assert [header(p)[1] for p in receiver.received] == [1, 3]
        assert media.request("tp", "transport.dump")["tuple"]["remotePort"] == sender.port

    run_media(body)


def test_comedia_consumer_transport_learns_from_rtcp(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp")
        sender = media.peer()
        media.connect("tp", sender)
        media.produce("tp")
        tc = media.transport("tc", comedia=True)
        media.consume("tc", "c0", ssrc=4242)
        receiver = media.peer()
        sender.send(rtp(1, 1), tp["tuple"])
        await media.settle()
        assert receiver.drain() == []  # no remote yet: nothing sent
        receiver.send(struct.pack("!BBHI", 0x80, 201, 1, 99), tc["tuple"])  # an empty RR
        await media.wait_for(lambda: media.request("tc", "transport.dump")["tuple"].get("remotePort") == receiver.port)
        sender.send(rtp(2, 2), tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 1)
        assert header(receiver.received[0])[3] == 4242

    run_media(body)


def test_separate_rtcp_port_carries_pli_both_ways(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp", rtcpMux=False)
        sender, sender_rtcp = media.peer(), media.peer()
        media.connect("tp", sender, rtcpPort=sender_rtcp.port)
        media.produce("tp", kind="video")
        tc = media.transport("tc", rtcpMux=False)
        receiver, receiver_rtcp = media.peer(), media.peer()
        media.connect("tc", receiver, rtcpPort=receiver_rtcp.port)
        media.consume("tc", "c0", ssrc=4242, kind="video")
        # a new active video consumer asks for a key frame (to the producer's RTCP port)
        await media.wait_for(lambda: len(sender_rtcp.drain()) == 1)
        # (a video consumer starts with a key frame, and that answers the pending request)
        sender.send(rtp(1, 1, pt=96, payload=VP8_KEY_FRAME), tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 1)
        # The receiver asks for a key frame on the consumer transport's RTCP port ...
        receiver_rtcp.send(build_pli(1, 4242), tc["rtcpTuple"])
        # ... and the sender gets a PLI for its own SSRC on its RTCP port, not the RTP one.
        await media.wait_for(lambda: len(sender_rtcp.drain()) == 2)
        for pli in sender_rtcp.received:
            assert keyframe_request_ssrcs(pli, 12) == [PRODUCER_SSRC]
        assert sender.drain() == []
        # RTCP from elsewhere, or to the RTP port of a non-mux transport, is not RTCP we take.
        media.peer().send(build_pli(1, 4242), tc["rtcpTuple"])
        await media.settle()
        assert len(sender_rtcp.drain()) == 2
        assert media.request("tc", "transport.getStats")[0]["dropped"]["rtcpNotFromRemote"] == 1

    run_media(body)


def test_rtcp_mux_pli_and_resume_and_request_key_frame(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp")
        sender = media.peer()
        media.connect("tp", sender)
        media.produce("tp", kind="video")
        tc = media.transport("tc")
        receiver = media.peer()
        media.connect("tc", receiver)
        media.consume("tc", "c0", ssrc=4242, kind="video", paused=True)
        sender.send(rtp(1, 1, pt=96), tp["tuple"])
        await media.settle()
        assert receiver.drain() == [] and sender.drain() == []
        media.request("c0", "consumer.resume")  # video resume → PLI to the producer's remote
        await media.wait_for(lambda: len(sender.drain()) == 1)
        media.request("c0", "consumer.requestKeyFrame")  # one is in flight: coalesced
        sender.send(rtp(2, 2, pt=96, payload=VP8_KEY_FRAME), tp["tuple"])  # ... answered
        await media.wait_for(lambda: len(receiver.drain()) == 1)
        media.request("c0", "consumer.requestKeyFrame")
        await media.wait_for(lambda: len(sender.drain()) == 2)
        sender.send(rtp(3, 3, pt=96, payload=VP8_KEY_FRAME), tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 2)
        # PLI and FIR from the consumer's remote (same port as RTP: rtcp-mux): one request
        fir = struct.pack("!BBHIIIBBH", 0x84, 206, 4, 1, 0, 4242, 1, 0, 0)
        receiver.send(build_pli(1, 4242) + fir, tc["tuple"])
        await media.wait_for(lambda: len(sender.drain()) == 3)
        for pli in sender.received:
            assert pli[:2] == bytes((0x81, 206)) and keyframe_request_ssrcs(pli, len(pli)) == [PRODUCER_SSRC]
        # garbage RTCP: counted, nothing breaks, forwarding goes on
        for junk in (b"\x80\xc8", b"\x80\xc9\xff\xff" + b"\x00" * 8, b"\x81\xce\x00\x01" + b"\x00" * 4,
                     b"\x81\xce\x00\x00"):
            receiver.send(junk, tc["tuple"])
        sender.send(rtp(4, 4, pt=96), tp["tuple"])  # a delta frame, the consumer is running
        await media.wait_for(lambda: len(receiver.drain()) == 3)
        stats = media.request("tc", "transport.getStats")[0]
        assert stats["keyFrameRequestsReceived"] == 2
        assert stats["rtcpPacketsReceived"] >= 2
        # audio consumers don't ask for key frames
        producer_stats = media.request("p1", "producer.getStats")[0]
        assert producer_stats["keyFrameRequestsSent"] == 3
        assert producer_stats["keyFrameRequestsCoalesced"] == 2

    run_media(body)


def test_malformed_and_unknown_packets_are_dropped_and_counted(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp")
        sender = media.peer()
        media.connect("tp", sender)
        media.produce("tp")
        media.transport("tc")
        receiver = media.peer()
        media.connect("tc", receiver)
        media.consume("tc", "c0", ssrc=4242)
        good = rtp(1, 1)
        bad = [
            b"\x80",  # too short
            b"\x40" + good[1:],  # version 1
            bytes([0x8F]) + good[1:],  # 15 CSRCs announced, none there
            bytes([0x90]) + good[1:12] + b"\xbe\xde\x00\x10",  # extension longer than packet
            bytes([0xA0]) + good[1:-1] + b"\xff",  # padding longer than packet
            bytes([0xA0]) + good[1:-1] + b"\x00",  # padding count 0
            rtp(2, 2, ssrc=0xDEAD),  # unknown SSRC
            rtp(3, 3, pt=120),  # payload type the producer didn't announce
            rtp(4, 4, extensions={1: b"\x01"})[:-41][:16] + b"\x1f" + bytes(3),  # element overruns
        ]
        for packet in bad:
            sender.send(packet, tp["tuple"])
        media.peer().send(good, tp["tuple"])  # right packet, wrong source
        sender.send(good, tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 1)
        assert header(receiver.received[0])[1] == 1
        dropped = media.request("tp", "transport.getStats")[0]["dropped"]
        assert dropped["tooShort"] == 1
        assert dropped["malformed"] == 5
        assert dropped["unknownSsrc"] == 1
        assert dropped["notFromRemote"] == 1
        producer_dropped = media.request("p1", "producer.getStats")[0]["dropped"]
        assert producer_dropped["unknownPayloadType"] == 1
        assert producer_dropped["malformedExtensions"] == 1

    run_media(body)


@pytest.mark.parametrize("suite", list(CRYPTO_SUITES))
def test_srtp_round_trip(run_media, suite):
    async def body(media):
        media.router()
        tp = media.transport("tp", enableSrtp=True, srtpCryptoSuite=suite)
        tc = media.transport("tc", enableSrtp=True, srtpCryptoSuite=suite)
        profile = CRYPTO_SUITES[suite][0]
        # The sending peer: encrypts with its own key, given to the transport in connect().
        sender_key = generate_key(suite)
        sender_tx = Session(Policy(key=sender_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        sender_rx = Session(Policy(key=base64.b64decode(tp["srtpParameters"]["keyBase64"]),
                                   ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
        receiver_rx = Session(Policy(key=base64.b64decode(tc["srtpParameters"]["keyBase64"]),
                                     ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
        sender, receiver = media.peer(), media.peer()
        media.connect("tp", sender, srtpParameters={
            "cryptoSuite": suite, "keyBase64": base64.b64encode(sender_key).decode()})
        media.connect("tc", receiver, srtpParameters={
            "cryptoSuite": suite, "keyBase64": base64.b64encode(generate_key(suite)).decode()})
        media.produce("tp", kind="video")
        media.consume("tc", "c0", ssrc=4242, kind="video")
        sender.send(rtp(1, 1, pt=96), tp["tuple"])  # plain RTP on an SRTP transport: dropped
        # the first is a VP8 key frame: a video consumer starts with one
        plain = [rtp(seq, seq * 3000, pt=96, payload=(VP8_KEY_FRAME if seq == 10 else b"") + bytes([seq]) * 100)
                 for seq in range(10, 20)]
        for packet in plain:
            sender.send(sender_tx.protect(packet), tp["tuple"])
        await media.wait_for(lambda: len(receiver.drain()) == 10)
        for original, got in zip(plain, receiver.received, strict=True):
            assert got != original
            clear = receiver_rx.unprotect(got)
            assert header(clear) == (101, header(original)[1], header(original)[2], 4242)
            assert clear[12:] == original[12:]
        dropped = media.request("tp", "transport.getStats")[0]["dropped"]
        assert dropped["srtp"] == 1
        # PLIs (on consumer creation, on requestKeyFrame) reach the sender as SRTCP it decrypts.
        media.request("c0", "consumer.requestKeyFrame")
        await media.wait_for(lambda: len(sender.drain()) == 2)
        for srtcp in sender.received:
            pli = sender_rx.unprotect_rtcp(srtcp)
            assert keyframe_request_ssrcs(pli, len(pli)) == [PRODUCER_SSRC]

    run_media(body)


def test_srtp_suite_follows_the_remote_on_connect(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp", enableSrtp=True, srtpCryptoSuite="AES_CM_128_HMAC_SHA1_80")
        peer = media.peer()
        result = media.connect("tp", peer, srtpParameters={
            "cryptoSuite": "AEAD_AES_128_GCM",
            "keyBase64": base64.b64encode(generate_key("AEAD_AES_128_GCM")).decode()})
        assert result["srtpParameters"]["cryptoSuite"] == "AEAD_AES_128_GCM"
        assert len(base64.b64decode(result["srtpParameters"]["keyBase64"])) == 28
        assert tp["srtpParameters"]["keyBase64"] != result["srtpParameters"]["keyBase64"]

    run_media(body)


def test_port_range_exhaustion_is_a_clear_error(run_media):
    async def body(media):
        media.router()
        made = []
        with pytest.raises(ResourceExhaustedError, match="no free UDP port"):
            for i in range(10):
                made.append(media.transport(f"t{i}"))
        assert 1 <= len(made) <= 3
        assert {t["tuple"]["localPort"] for t in made} <= {42990, 42991, 42992}
        with pytest.raises(ResourceExhaustedError):  # rtcpMux off needs two ports
            media.transport("tx", rtcpMux=False)
        assert "tx" not in media.ctx.handlers
        media.request(made[0]["id"], "transport.close")
        again = media.transport("t-again")  # the released port is usable again
        assert again["tuple"]["localPort"] == made[0]["tuple"]["localPort"]

    run_media(body, min_port=42990, max_port=42992)


def test_bad_connect_arguments(run_media):
    async def body(media):
        media.router()
        media.transport("t1", rtcpMux=False)
        media.transport("t2", enableSrtp=True)
        media.transport("t3")
        for transport_id, data in [
            ("t1", {"ip": "127.0.0.1", "port": 5000}),  # rtcpPort missing
            ("t1", {"ip": "not an ip", "port": 5000, "rtcpPort": 5001}),
            ("t1", {"ip": "127.0.0.1", "port": 0, "rtcpPort": 5001}),
            ("t1", {"ip": "127.0.0.1", "port": "5000", "rtcpPort": 5001}),
            ("t1", {"ip": "::1", "port": 5000, "rtcpPort": 5001}),  # family mismatch
            ("t2", {"ip": "127.0.0.1", "port": 5000}),  # srtpParameters missing
            ("t2", {"ip": "127.0.0.1", "port": 5000,
                    "srtpParameters": {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": "AAAA"}}),
            ("t2", {"ip": "127.0.0.1", "port": 5000,
                    "srtpParameters": {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": "%%%"}}),
            ("t3", {"ip": "127.0.0.1", "port": 5000,
                    "srtpParameters": {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80", "keyBase64": "AAAA"}}),
            ("t3", {"port": 5000}),
        ]:
            with pytest.raises(ArgumentError):
                media.request(transport_id, "transport.connect", data)
        # still unconnected after the failures
        assert media.request("t1", "transport.dump")["connected"] is False

    run_media(body)
