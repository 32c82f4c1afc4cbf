"""A simulcast producer with three encodings (by SSRC) and a simulcast consumer: it starts on
a key frame of its preferred layer, switches spatial layers up and down only on a key frame of
the target layer, and keeps one SSRC with continuous sequence numbers and forward-moving
timestamps, checked packet by packet; "layerschange" tells each switch."""

from __future__ import annotations

import struct

from media_harness import VP8_DELTA_FRAME, VP8_KEY_FRAME
from quality_peers import NACK_FB

from relay.rtp.packet import build_rtp
from relay.rtp.rtcp import Nack

LAYER_SSRCS = [2001, 2002, 2003]
MAPPED = [6001, 6002, 6003]
CONSUMER_SSRC = 9999
# layer -> frames (k) that are key frames on that layer
KEY_FRAMES = {0: {0, 8, 11}, 1: {0, 12}, 2: {2}}


def layer_packet(layer: int, k: int) -> bytes:
    body = (VP8_KEY_FRAME if k in KEY_FRAMES[layer] else VP8_DELTA_FRAME) + bytes([layer, k])
    return build_rtp(payload_type=96, sequence_number=1000 * (layer + 1) + k,
                     timestamp=100_000 * layer + 3000 * k, ssrc=LAYER_SSRCS[layer], payload=body)


def test_spatial_layer_switching_on_key_frames(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        media.request("tp", "transport.produce", {
            "producerId": "p1", "kind": "video",
            "rtpParameters": {
                "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                            "rtcpFeedback": NACK_FB}],
                "encodings": [{"ssrc": s} for s in LAYER_SSRCS]},
            "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                           "encodings": [{"ssrc": s, "mappedSsrc": m} for s, m in zip(LAYER_SSRCS, MAPPED, strict=True)]},
        })
        media.request("tc", "transport.consume", {
            "consumerId": "c1", "producerId": "p1", "kind": "video", "type": "simulcast",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                          "clockRate": 90000}],
                              "encodings": [{"ssrc": CONSUMER_SSRC}]},
            "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
            "preferredLayers": {"spatialLayer": 2},
        })
        producer = media.ctx.handlers["p1"]

        async def frame(k: int) -> None:
            before = producer.packets_received
            for layer in range(3):
                publisher.send(layer_packet(layer, k), tp["tuple"])
            await media.wait_for(lambda: producer.packets_received == before + 3)

        for k in range(0, 5):
            await frame(k)
        # down to layer 0: layer 2 goes on until layer 0's next key frame (k = 8)
        assert media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0}) == {
            "spatialLayer": 0, "temporalLayer": None}
        for k in range(5, 10):
            await frame(k)
        # up to layer 1: its next key frame is k = 12 (layer 0's key frame at 11 changes nothing)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 1})
        for k in range(10, 16):
            await frame(k)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 7})  # clamped to 2
        for k in range(16, 18):  # no layer-2 key frame: stays on layer 1
            await frame(k)
        await media.settle()

        got = [p for p in subscriber.drain() if not 64 <= p[1] & 0x7F <= 95]
        origin = [(p[-2], p[-1]) for p in got]
        # (per frame the layers arrive 0, 1, 2: at k = 12 layer 0's packet still goes out,
        # then layer 1's key frame switches)
        assert origin == ([(2, k) for k in range(2, 8)] + [(0, k) for k in range(8, 13)]
                          + [(1, k) for k in range(12, 18)])
        headers = [struct.unpack_from("!BHII", p, 1) for p in got]
        assert {h[3] for h in headers} == {CONSUMER_SSRC}
        assert {h[0] & 0x7F for h in headers} == {101}
        seqs = [h[1] for h in headers]
        assert seqs == list(range(seqs[0], seqs[0] + len(got)))  # no gap, no repeat
        stamps = [h[2] for h in headers]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # forward across the switches
        # within a layer the timestamp spacing is the sender's
        assert stamps[5] - stamps[4] == 3000 and stamps[9] - stamps[8] == 3000
        # the first packet of each new layer is a key frame of it
        for index in (0, 6, 11):
            assert got[index][12:12 + len(VP8_KEY_FRAME)] == VP8_KEY_FRAME
        changes = [d for h, e, d in media.notifications if h == "c1" and e == "layerschange"]
        assert changes == [{"spatialLayer": 2, "temporalLayer": None},
                           {"spatialLayer": 0, "temporalLayer": None},
                           {"spatialLayer": 1, "temporalLayer": None}]
        dump = media.request("c1", "consumer.dump")
        assert dump["type"] == "simulcast"
        assert dump["preferredLayers"] == {"spatialLayer": 2, "temporalLayer": None}
        assert dump["currentLayers"] == {"spatialLayer": 1, "temporalLayer": None}

    run_media(body)


def vp8_temporal_packet(k: int, tid: int, key: bool = False) -> bytes:
    """VP8 with a descriptor carrying TID (X=1, T=1), one packet per frame, seq 500 + k."""
    descriptor = bytes([0x90, 0x20, tid << 6])  # S=1 PID=0 | T | TID
    vp8 = bytes([0x00 if key else 0x01]) + b"\x9d\x01\x2a" * 4  # P bit: 0 = key frame
    return build_rtp(payload_type=96, sequence_number=500 + k, timestamp=3000 * k,
                     ssrc=LAYER_SSRCS[0], payload=descriptor + vp8 + bytes([tid, k]))


TIDS = [0, 2, 1, 2]  # L1T3: TL0, TL2, TL1, TL2, ...


def test_vp8_temporal_layers_from_tid(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        media.request("tp", "transport.produce", {
            "producerId": "p1", "kind": "video",
            "rtpParameters": {
                "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}],
                "encodings": [{"ssrc": s} for s in LAYER_SSRCS]},
            "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                           "encodings": [{"ssrc": s, "mappedSsrc": m}
                                         for s, m in zip(LAYER_SSRCS, MAPPED, strict=True)]},
        })
        media.request("tc", "transport.consume", {
            "consumerId": "c1", "producerId": "p1", "kind": "video", "type": "simulcast",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                          "clockRate": 90000, "rtcpFeedback": NACK_FB}],
                              "encodings": [{"ssrc": CONSUMER_SSRC}]},
            "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
            "preferredLayers": {"spatialLayer": 0, "temporalLayer": 0},
        })
        producer = media.ctx.handlers["p1"]

        async def frames(ks: range) -> None:
            for k in ks:
                before = producer.packets_received
                publisher.send(vp8_temporal_packet(k, TIDS[k % 4], key=k == 0), tp["tuple"])
                await media.wait_for(lambda b=before: producer.packets_received == b + 1)

        def forwarded() -> list[bytes]:
            return [p for p in subscriber.drain() if not 64 <= p[1] & 0x7F <= 95]

        await frames(range(0, 12))  # temporal layer 0 only: frames 0, 4, 8
        await media.wait_for(lambda: len(forwarded()) == 3)
        # A NACK maps output seqs back across the drops (each run of drops moved the offset):
        # frames 4 and 8 are resent byte for byte; a number not sent yet is counted.
        first_seq = struct.unpack_from("!H", subscriber.received[0], 2)[0]
        lost = [first_seq + 1, first_seq + 2, first_seq + 3]
        subscriber.send(Nack(1, CONSUMER_SSRC, lost).serialize(), tc["tuple"])
        await media.wait_for(lambda: len(forwarded()) == 5)
        resent = [subscriber.received.pop(), subscriber.received.pop()][::-1]
        assert resent == subscriber.received[1:3]
        assert media.request("c1", "consumer.getStats")[0]["nackMisses"] == 1

        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0, "temporalLayer": 1})
        await frames(range(12, 20))  # from frame 12 (TL0): layers 0 and 1
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0})  # all layers
        await frames(range(20, 25))
        await media.settle()
        got = forwarded()
        assert [p[-1] for p in got] == [0, 4, 8, 12, 14, 16, 18, 20, 21, 22, 23, 24]
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
        assert seqs == list(range(first_seq, first_seq + len(got)))  # no gaps for the receiver
        changes = [d for h, e, d in media.notifications if h == "c1" and e == "layerschange"]
        assert changes == [{"spatialLayer": 0, "temporalLayer": 0},
                           {"spatialLayer": 0, "temporalLayer": 1},
                           {"spatialLayer": 0, "temporalLayer": None}]
        assert media.request("c1", "consumer.getStats")[0]["temporalLayerDrops"] == 9 + 4

    run_media(body)


def vp8_sync_packet(k: int, tid: int, y: bool = False, key: bool = False) -> bytes:
    """As vp8_temporal_packet, with the Y (layer sync) bit: the frame depends only on TL0."""
    descriptor = bytes([0x90, 0x20, (tid << 6) | (0x20 if y else 0)])
    vp8 = bytes([0x00 if key else 0x01]) + b"\x9d\x01\x2a" * 4
    return build_rtp(payload_type=96, sequence_number=700 + k, timestamp=3000 * k,
                     ssrc=LAYER_SSRCS[0], payload=descriptor + vp8 + bytes([tid, k]))


# k -> (TID, Y): L1T3 (0, 2, 1, 2, ...) with layer-sync bits on some upper-layer frames
SYNC_FRAMES = {0: (0, False), 1: (2, False), 2: (1, False), 3: (2, False),
               4: (0, False), 5: (2, False), 6: (1, True), 7: (2, False),
               8: (0, False), 9: (2, False), 10: (1, False), 11: (2, False),
               12: (0, False), 13: (2, True), 14: (1, False), 15: (2, False)}


def test_vp8_temporal_switch_up_at_layer_sync_frames(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        media.request("tp", "transport.produce", {
            "producerId": "p1", "kind": "video",
            "rtpParameters": {
                "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}],
                "encodings": [{"ssrc": s} for s in LAYER_SSRCS]},
            "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                           "encodings": [{"ssrc": s, "mappedSsrc": m}
                                         for s, m in zip(LAYER_SSRCS, MAPPED, strict=True)]},
        })
        media.request("tc", "transport.consume", {
            "consumerId": "c1", "producerId": "p1", "kind": "video", "type": "simulcast",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                          "clockRate": 90000}],
                              "encodings": [{"ssrc": CONSUMER_SSRC}]},
            "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
            "preferredLayers": {"spatialLayer": 0, "temporalLayer": 0},
        })
        producer = media.ctx.handlers["p1"]

        async def frames(ks: range) -> None:
            for k in ks:
                tid, y = SYNC_FRAMES[k]
                before = producer.packets_received
                publisher.send(vp8_sync_packet(k, tid, y, key=k == 0), tp["tuple"])
                await media.wait_for(lambda b=before: producer.packets_received == b + 1)

        await frames(range(0, 5))  # TL0 only: 0, 4
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0, "temporalLayer": 2})
        # 5: TID 2 without Y: not yet; 6: TID 1 with Y: up to 1 (not 2: it syncs TL1 only);
        # 7: TID 2 without Y: still dropped; 8: TL0: the target (2) is reached
        await frames(range(5, 12))
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0, "temporalLayer": 0})
        await frames(range(12, 13))  # down at the TL0 frame 12
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0, "temporalLayer": 2})
        await frames(range(13, 16))  # 13: TID 2 with Y: straight up to 2
        await media.settle()
        got = [p for p in subscriber.drain() if not 64 <= p[1] & 0x7F <= 95]
        assert [p[-1] for p in got] == [0, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15]
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(got)))  # drops leave no gaps
        changes = [d for h, e, d in media.notifications if h == "c1" and e == "layerschange"]
        assert changes == [{"spatialLayer": 0, "temporalLayer": 0},
                           {"spatialLayer": 0, "temporalLayer": 1},
                           {"spatialLayer": 0, "temporalLayer": 2},
                           {"spatialLayer": 0, "temporalLayer": 0},
                           {"spatialLayer": 0, "temporalLayer": 2}]

    run_media(body)
