"""Simulcast by RID over a WebRTC transport, end to end through a real worker process: the
producer is created with mediasoup-client's parameters (mid, rid encodings without SSRCs,
the sdes:mid / rtp-stream-id / repaired-rtp-stream-id extensions, RTX without an SSRC); a raw
ICE + DTLS + SRTP client sends three encodings under SSRCs the worker learns from the RID
extension, and an RTX retransmission bound by repaired-rtp-stream-id. A simulcast consumer
on a second transport switches layers on key frames; checked packet by packet."""

from __future__ import annotations

import asyncio
import struct

from raw_webrtc_client import RawWebRtcClient
from test_webrtc_raw_client import UDP, certificate, connected_client, relay_router  # noqa: F401

from relay.rtp.packet import build_rtp, rtp_payload_offset
from relay.rtp.rtcp import RECEIVER_RTCP_SSRC, Pli, parse_compound

MID_ID, RID_ID, RRID_ID = 1, 10, 11
VP8_KEY = b"\x10\x00\x9d\x01\x2a" + b"\xab" * 35
VP8_DELTA = b"\x10\x01" + b"\xab" * 38
NACK_FB = [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]
SSRCS = [0x0A000001, 0x0A000002, 0x0A000003]
RTX_SSRCS = [0x0B000001, 0x0B000002, 0x0B000003]
RID_PARAMS = {  # the shape mediasoup-client's Chrome handler produces for 3 simulcast layers
    "mid": "0",
    "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                "parameters": {}, "rtcpFeedback": NACK_FB},
               {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                "parameters": {"apt": 96}, "rtcpFeedback": []}],
    "headerExtensions": [
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_ID},
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID_ID},
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": RRID_ID}],
    "encodings": [{"rid": "r0", "active": True, "scalabilityMode": "L1T3", "maxBitrate": 100000},
                  {"rid": "r1", "active": True, "scalabilityMode": "L1T3", "maxBitrate": 300000},
                  {"rid": "r2", "active": True, "scalabilityMode": "L1T3", "maxBitrate": 900000}],
    "rtcp": {"cname": "browser", "reducedSize": True},
}
VIDEO_CAPS = {
    "codecs": [{"kind": "video", "mimeType": "video/VP8", "clockRate": 90000,
                "preferredPayloadType": 101, "parameters": {}, "rtcpFeedback": NACK_FB},
               {"kind": "video", "mimeType": "video/rtx", "clockRate": 90000,
                "preferredPayloadType": 102, "parameters": {"apt": 101}, "rtcpFeedback": []}],
    "headerExtensions": []}
KEY_FRAMES = {0: {0, 6}, 1: {0, 9}, 2: {2}}


def layer_packet(layer: int, k: int) -> bytes:
    body = (VP8_KEY if k in KEY_FRAMES[layer] else VP8_DELTA) + bytes([layer, k])
    return build_rtp(payload_type=96, sequence_number=100 * (layer + 1) + k,
                     timestamp=10_000 * layer + 3000 * k, ssrc=SSRCS[layer], payload=body,
                     extensions={MID_ID: b"0", RID_ID: f"r{layer}".encode()})


def media_of(client) -> list[bytes]:
    return [p for p in client.rtp if p[1] & 0x7F != 102]


async def test_rid_simulcast_over_webrtc(certificate):  # noqa: F811
    async with relay_router() as (worker, router):
        pub_t = await router.create_webrtc_transport(listen_infos=[UDP])
        sub_t = await router.create_webrtc_transport(listen_infos=[UDP])
        producer = await pub_t.produce(kind="video", rtp_parameters=RID_PARAMS)
        assert producer.type == "simulcast"
        consumer = await sub_t.consume(producer_id=producer.id, rtp_capabilities=VIDEO_CAPS,
                                       enable_rtx=True, preferred_layers={"spatialLayer": 2})
        assert consumer.type == "simulcast"
        assert consumer.rtp_parameters["encodings"][0]["scalabilityMode"] == "L3T3"
        layers: list[dict | None] = []
        consumer.on("layerschange", layers.append)
        pub = await connected_client(pub_t, certificate, "udp")
        sub: RawWebRtcClient = await connected_client(sub_t, certificate, "udp")
        try:
            async def frame(k: int) -> None:
                for layer in range(3):
                    if (layer, k) != (1, 10):  # lost on the way: repaired over RTX below
                        pub.send_packet(layer_packet(layer, k))
                # one frame at a time: the relay sees the layers in order
                await asyncio.sleep(0.02)

            for k in range(0, 5):
                await frame(k)
            await consumer.set_preferred_layers(spatial_layer=0)
            for k in range(5, 8):
                await frame(k)
            await consumer.set_preferred_layers(spatial_layer=1)
            for k in range(8, 11):
                await frame(k)
            await sub.wait_for(lambda: len(media_of(sub)) >= 9)
            await asyncio.sleep(0.1)
            got = media_of(sub)
            origin = [(p[-2], p[-1]) for p in got]
            # start on layer 2's key frame (k=2), down at layer 0's (k=6), up at layer 1's
            # (k=9; layer 0's packet of that frame arrives, and goes out, before it)
            assert origin == [(2, 2), (2, 3), (2, 4), (2, 5), (0, 6), (0, 7), (0, 8), (0, 9),
                              (1, 9)]
            headers = [struct.unpack_from("!BHII", p, 1) for p in got]
            assert {h[3] for h in headers} == {consumer.rtp_parameters["encodings"][0]["ssrc"]}
            seqs = [h[1] for h in headers]
            assert seqs == list(range(seqs[0], seqs[0] + len(got)))
            stamps = [h[2] for h in headers]
            assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
            for index in (0, 4, 8):
                offset = rtp_payload_offset(got[index], len(got[index]))
                assert got[index][offset:offset + len(VP8_KEY)] == VP8_KEY
            await asyncio.sleep(0.05)
            assert layers == [{"spatialLayer": 2, "temporalLayer": None},
                              {"spatialLayer": 0, "temporalLayer": None},
                              {"spatialLayer": 1, "temporalLayer": None}]

            # RTX for layer 1's frame 10 under a new SSRC named by repaired-rtp-stream-id
            original = layer_packet(1, 10)
            offset = rtp_payload_offset(original, len(original))
            pub.send_packet(build_rtp(
                payload_type=97, sequence_number=1, timestamp=10_000 + 30_000,
                ssrc=RTX_SSRCS[1], payload=original[2:4] + original[offset:],
                extensions={MID_ID: b"0", RRID_ID: b"r1"}))
            await sub.wait_for(lambda: len(media_of(sub)) == len(got) + 1)
            repaired = media_of(sub)[-1]
            assert repaired[-2:] == bytes([1, 10])
            assert struct.unpack_from("!H", repaired, 2)[0] == seqs[-1] + 1  # fills the gap
            stats = await producer.get_stats()
            assert [(s["ssrc"], s["rid"]) for s in stats] == [
                (s, f"r{i}") for i, s in enumerate(SSRCS)]
            assert stats[1]["rtxSsrc"] == RTX_SSRCS[1] and stats[1]["rtxPacketsReceived"] == 1
            dropped = (await pub_t.get_stats())[0]["dropped"]
            assert "unknownSsrc" not in dropped and "rtxUnknownSsrc" not in dropped
            # the key-frame requests the relay sent the browser: from our receiver SSRC,
            # about SSRCs bound from the RIDs (the consumer's start and its layer switches)
            plis = [p for data in pub.rtcp for p in parse_compound(data).packets
                    if isinstance(p, Pli)]
            assert plis
            assert {p.sender_ssrc for p in plis} == {RECEIVER_RTCP_SSRC}
            assert {p.media_ssrc for p in plis} <= set(SSRCS)
        finally:
            pub.close()
            sub.close()
