"""Simulcast by RID (as mediasoup-client sends it) over a plain transport, through the
worker's real sockets: no SSRC is signalled; each encoding's SSRC is bound by the packets'
`rtp-stream-id` header extension, its RTX SSRC by `repaired-rtp-stream-id`; after that the
extensions may go and packets are matched by SSRC. A simulcast consumer switches spatial
layers only on key frames of the target layer, with continuous sequence numbers and forward
timestamps, checked packet by packet. Also: an encoding that never arrives, a sender SSRC
change for a RID, and RTX-recovered packets kept out of the jitter estimate."""

from __future__ import annotations

import asyncio
import struct

from media_harness import VP8_DELTA_FRAME, VP8_KEY_FRAME
from quality_peers import NACK_FB

import relay.worker.producer as producer_module
import relay.worker.simulcast_consumer as simulcast_consumer_module
from relay.rtp.packet import build_rtp, rtp_payload_offset
from relay.rtp.rtcp import Pli, ReceiverReport, parse_compound

MID_ID, RID_ID, RRID_ID = 1, 2, 3
EXTENSIONS = [
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_ID},
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID_ID},
    {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": RRID_ID},
]
RIDS = ["r0", "r1", "r2"]
SENDER_SSRCS = [3001, 3002, 3003]  # what the sender uses; never signalled
SENDER_RTX_SSRCS = [4001, 4002, 4003]
MAPPED = [7001, 7002, 7003]
CONSUMER_SSRC = 9999
# layer -> frames (k) that are key frames on that layer
KEY_FRAMES = {0: {0, 8, 11}, 1: {0, 12}, 2: {2}}


def produce_rid(media, transport_id: str = "tp") -> dict:
    return media.request(transport_id, "transport.produce", {
        "producerId": "p1", "kind": "video",
        "rtpParameters": {
            "mid": "0",
            "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                        "rtcpFeedback": NACK_FB},
                       {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
                        "parameters": {"apt": 96}}],
            "headerExtensions": EXTENSIONS,
            "encodings": [{"rid": r} for r in RIDS],
            "rtcp": {"cname": "browser"}},
        "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101},
                                  {"payloadType": 97, "mappedPayloadType": 102}],
                       "encodings": [{"rid": r, "mappedSsrc": m} for r, m in zip(RIDS, MAPPED, strict=True)]},
    })


def consume_simulcast(media, consumer_id: str = "c1", ssrc: int = CONSUMER_SSRC,
                      spatial: int = 2, transport_id: str = "tc") -> dict:
    return media.request(transport_id, "transport.consume", {
        "consumerId": consumer_id, "producerId": "p1", "kind": "video", "type": "simulcast",
        "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                      "clockRate": 90000, "rtcpFeedback": NACK_FB}],
                          "encodings": [{"ssrc": ssrc}]},
        "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
        "preferredLayers": {"spatialLayer": spatial},
    })


def layer_packet(layer: int, k: int, with_rid: bool, ssrc: int | None = None,
                 key: bool | None = None) -> bytes:
    if key is None:
        key = k in KEY_FRAMES[layer]
    body = (VP8_KEY_FRAME if key else VP8_DELTA_FRAME) + bytes([layer, k])
    extensions = {MID_ID: b"0", RID_ID: RIDS[layer].encode()} if with_rid else None
    return build_rtp(payload_type=96, sequence_number=1000 * (layer + 1) + k,
                     timestamp=100_000 * layer + 3000 * k,
                     ssrc=SENDER_SSRCS[layer] if ssrc is None else ssrc, payload=body,
                     extensions=extensions)


def rtx_packet(layer: int, k: int, rtx_ssrc: int, ssrc: int | None = None) -> bytes:
    """RTX (RFC 4588) of `layer_packet(layer, k)`, named by repaired-rtp-stream-id."""
    original = layer_packet(layer, k, with_rid=False, ssrc=ssrc)
    return build_rtp(payload_type=97, sequence_number=k, timestamp=100_000 * layer + 3000 * k,
                     ssrc=rtx_ssrc, payload=original[2:4] + original[12:],
                     extensions={MID_ID: b"0", RRID_ID: RIDS[layer].encode()})


def media_packets(peer) -> list[bytes]:
    return [p for p in peer.drain() if not 64 <= p[1] & 0x7F <= 95]


def rtcp_of(peer, kind) -> list:
    found = []
    for data in peer.drain():
        if len(data) >= 2 and 64 <= data[1] & 0x7F <= 95:
            found += [p for p in parse_compound(data).packets if isinstance(p, kind)]
    return found


def test_rid_simulcast_binds_ssrcs_and_switches_on_key_frames(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        assert produce_rid(media) == {"type": "simulcast"}
        consume_simulcast(media)
        producer = media.ctx.handlers["p1"]
        transport = media.ctx.handlers["tp"]

        async def frame(k: int) -> None:
            before = producer.packets_received
            for layer in range(3):
                # MID and RID only in the first two frames (browsers stop sending them once
                # they know the SSRC is bound): from then on the SSRC alone routes.
                publisher.send(layer_packet(layer, k, with_rid=k < 2), tp["tuple"])
            await media.wait_for(lambda: producer.packets_received == before + 3)

        await frame(0)
        assert {s: p.id for s, (p, _) in transport.ssrc_table.items()} == {
            s: "p1" for s in SENDER_SSRCS}
        assert [transport.ssrc_table[s][1] for s in SENDER_SSRCS] == [0, 1, 2]
        for k in range(1, 5):
            await frame(k)
        assert media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0}) == {
            "spatialLayer": 0, "temporalLayer": None}
        for k in range(5, 10):
            await frame(k)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 1})
        for k in range(10, 16):
            await frame(k)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 7})  # clamped to 2
        for k in range(16, 18):  # no layer-2 key frame: stays on layer 1
            await frame(k)
        await media.settle()

        got = media_packets(subscriber)
        origin = [(p[-2], p[-1]) for p in got]
        assert origin == ([(2, k) for k in range(2, 8)] + [(0, k) for k in range(8, 13)]
                          + [(1, k) for k in range(12, 18)])
        headers = [struct.unpack_from("!BHII", p, 1) for p in got]
        assert {h[3] for h in headers} == {CONSUMER_SSRC}
        assert {h[0] & 0x7F for h in headers} == {101}
        seqs = [h[1] for h in headers]
        assert seqs == list(range(seqs[0], seqs[0] + len(got)))  # no gap, no repeat
        stamps = [h[2] for h in headers]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
        assert stamps[5] - stamps[4] == 3000 and stamps[9] - stamps[8] == 3000
        # every packet of a new layer's first frame is a key frame of that layer
        for index in (0, 6, 11):
            offset = rtp_payload_offset(got[index], len(got[index]))
            assert got[index][offset:offset + len(VP8_KEY_FRAME)] == VP8_KEY_FRAME
        changes = [d for h, e, d in media.notifications if h == "c1" and e == "layerschange"]
        assert changes == [{"spatialLayer": 2, "temporalLayer": None},
                           {"spatialLayer": 0, "temporalLayer": None},
                           {"spatialLayer": 1, "temporalLayer": None}]

        dump = media.request("p1", "producer.dump")
        assert dump["type"] == "simulcast"
        assert dump["rtpMapping"]["encodings"] == [
            {"ssrc": s, "rid": r, "mappedSsrc": m}
            for s, r, m in zip(SENDER_SSRCS, RIDS, MAPPED, strict=True)]
        stats = media.request("p1", "producer.getStats")
        assert [(s["ssrc"], s["rid"], s["packetsReceived"]) for s in stats] == [
            (s, r, 18) for s, r in zip(SENDER_SSRCS, RIDS, strict=True)]
        assert "unknownSsrc" not in media.request("tp", "transport.getStats")[0]["dropped"]

        # bad input: an unknown SSRC whose RID element overruns its extension block binds
        # nothing and is counted; the bound streams go on
        bad = bytearray(build_rtp(payload_type=96, sequence_number=1, timestamp=0, ssrc=3999,
                                  payload=VP8_KEY_FRAME, extensions={RID_ID: b"r2"}))
        assert bad[16] == (RID_ID << 4) | 1
        bad[16] = (RID_ID << 4) | 15  # claims 16 bytes in a 4-byte block
        publisher.send(bytes(bad), tp["tuple"])
        await frame(18)
        assert media.request("tp", "transport.getStats")[0]["dropped"]["unknownSsrc"] == 1
        assert 3999 not in transport.ssrc_table

    run_media(body)


def test_rid_rtx_is_bound_by_repaired_rid_and_unwrapped(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, spatial=1)
        producer = media.ctx.handlers["p1"]
        # layer 1 only; frame 3 lost on the way
        for k in range(0, 6):
            if k != 3:
                publisher.send(layer_packet(1, k, with_rid=k == 0, key=k == 0), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 5)
        # The sender retransmits frame 3 over RTX: an SSRC nobody signalled, the RTX payload
        # type, repaired-rtp-stream-id naming r1, the original seq (OSN) first in the payload.
        original = layer_packet(1, 3, with_rid=False, key=False)
        osn = original[2:4]
        rtx = build_rtp(payload_type=97, sequence_number=50, timestamp=100_000 + 3000 * 3,
                        ssrc=SENDER_RTX_SSRCS[1], payload=osn + original[12:],
                        extensions={MID_ID: b"0", RRID_ID: b"r1"})
        publisher.send(rtx, tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 6)
        repaired = subscriber.received[-1]
        assert repaired[-2:] == bytes([1, 3])
        assert struct.unpack_from("!BHII", repaired, 1)[0] & 0x7F == 101
        assert struct.unpack_from("!I", repaired, 8)[0] == CONSUMER_SSRC
        transport = media.ctx.handlers["tp"]
        assert transport.rtx_ssrc_table[SENDER_RTX_SSRCS[1]] == (producer, 1)
        stats = media.request("p1", "producer.getStats")
        assert stats[1]["rtxSsrc"] == SENDER_RTX_SSRCS[1]
        assert stats[1]["rtxPacketsReceived"] == 1
        assert stats[1]["packetsLost"] == 0  # the hole is filled
        # an RTX packet naming a RID nobody has is dropped and counted
        stray = build_rtp(payload_type=97, sequence_number=1, timestamp=0, ssrc=4999,
                          payload=osn + original[12:], extensions={RRID_ID: b"zz"})
        publisher.send(stray, tp["tuple"])
        await media.wait_for(
            lambda: media.request("tp", "transport.getStats")[0]["dropped"].get("rtxUnknownSsrc") == 1)

    run_media(body)


def test_missing_encoding_does_not_break_the_others(run_media):
    async def body(media):
        media.router()
        tp = media.transport("tp")
        media.transport("tc")
        publisher, subscriber, other, third = media.peer(), media.peer(), media.peer(), media.peer()
        media.connect("tp", publisher)
        media.connect("tc", subscriber)
        media.transport("tc2")
        media.connect("tc2", other)
        media.transport("tc3")
        media.connect("tc3", third)
        produce_rid(media)
        consume_simulcast(media, "c1", spatial=2)
        consume_simulcast(media, "c2", ssrc=8888, spatial=0, transport_id="tc2")
        consume_simulcast(media, "c3", ssrc=7777, spatial=1, transport_id="tc3")
        producer = media.ctx.handlers["p1"]
        for k in range(0, 6):
            for layer in (0, 2):  # r1 never arrives
                publisher.send(layer_packet(layer, k, with_rid=True, key=k in (0, 2)), tp["tuple"])
        await media.wait_for(lambda: producer.packets_received == 12)
        await media.wait_for(lambda: len(media_packets(subscriber)) == 6
                             and len(media_packets(other)) == 6)
        assert [p[-2] for p in subscriber.received] == [2] * 6
        assert [p[-2] for p in other.received] == [0] * 6
        # c3 wants the missing layer 1: it starts on the best lower layer that arrives, at
        # that layer's second key frame (its first one races the other layers' first packets)
        await media.wait_for(lambda: len(media_packets(third)) == 4)
        assert [(p[-2], p[-1]) for p in third.received] == [(0, 2), (0, 3), (0, 4), (0, 5)]
        assert [d for h, e, d in media.notifications if h == "c3" and e == "layerschange"] == [
            {"spatialLayer": 0, "temporalLayer": None}]
        # aiming at the missing layer keeps the current one going
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 1})
        for k in range(6, 9):
            for layer in (0, 2):
                publisher.send(layer_packet(layer, k, with_rid=False, key=False), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 9
                             and len(media_packets(third)) == 7)
        assert [p[-2] for p in subscriber.received[6:]] == [2] * 3
        # key-frame requests and RRs only name the SSRCs seen (never 0 for the missing one)
        plis = rtcp_of(publisher, Pli)
        assert plis and {p.media_ssrc for p in plis} <= {SENDER_SSRCS[0], SENDER_SSRCS[2]}
        media.ctx.handlers["tp"].rtcp_reporter.send_reports(include_audio=True)
        await media.wait_for(lambda: bool(rtcp_of(publisher, ReceiverReport)))
        rr = rtcp_of(publisher, ReceiverReport)[0]
        assert sorted(b.ssrc for b in rr.reports) == [SENDER_SSRCS[0], SENDER_SSRCS[2]]
        # c3 goes up to layer 1 on its first key frame, should it come after all
        publisher.send(layer_packet(1, 9, with_rid=True, key=True), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(third)) == 8)
        assert third.received[-1][-2:] == bytes([1, 9])
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in third.received]
        assert seqs == list(range(seqs[0], seqs[0] + 8))
        assert [d for h, e, d in media.notifications if h == "c3" and e == "layerschange"] == [
            {"spatialLayer": 0, "temporalLayer": None}, {"spatialLayer": 1, "temporalLayer": None}]

    run_media(body)


def test_fallback_goes_up_to_a_layer_that_starts_later(run_media):
    """Chrome brings its simulcast layers up one by one as its bandwidth estimate grows: a
    consumer that started on r0 because r2 (its target) is missing moves to r1 at r1's first
    key frame, with no gap in its sequence numbers, and keeps waiting for r2."""
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, "c1", spatial=2)
        producer = media.ctx.handlers["p1"]
        for k in range(0, 4):  # only r0: the consumer starts on it at its second key frame
            publisher.send(layer_packet(0, k, with_rid=True, key=k in (0, 1)), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 3)
        for k in range(4, 8):  # r1 starts: delta frames first, then a key frame at k = 6
            for layer in (0, 1):
                publisher.send(layer_packet(layer, k, with_rid=True, key=layer == 1 and k == 6),
                               tp["tuple"])
            await media.wait_for(lambda k=k: producer.packets_received == 4 + 2 * (k - 3))
        await media.wait_for(lambda: len(media_packets(subscriber)) == 8)
        got = media_packets(subscriber)
        # per frame r0's packet arrives before r1's, so r0's k = 6 still goes out
        assert [(p[-2], p[-1]) for p in got] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5),
                                                 (0, 6), (1, 6), (1, 7)]
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
        assert seqs == list(range(seqs[0], seqs[0] + 8))
        assert [d["spatialLayer"] for h, e, d in media.notifications
                if h == "c1" and e == "layerschange"] == [0, 1]
        consumer = media.ctx.handlers["c1"]
        assert consumer.switch_target == 2  # still heading for r2, should it come

    run_media(body)


def test_a_consumer_waiting_for_a_missing_layer_asks_again_for_a_lower_ones_key_frame(
        run_media, monkeypatch):
    """r2 (the consumer's target) never comes; r0 and r1 each sent their one key frame in the
    layers' start race (which starts no consumer) and then only delta frames. The waiting
    consumer asks for a key frame again once the race is over, and starts on r1 with the
    answer. (Chrome, its estimate low, sent r0 and r1 only: a consumer waited 17 s for r2.)"""
    monkeypatch.setattr(simulcast_consumer_module, "LAYER_START_GRACE", 0.3)

    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, "c1", spatial=2)
        producer = media.ctx.handlers["p1"]
        consumer = media.ctx.handlers["c1"]
        for k in range(0, 3):
            for layer in (0, 1):
                publisher.send(layer_packet(layer, k, with_rid=True, key=k == 0), tp["tuple"])
        await media.wait_for(lambda: producer.packets_received == 6)
        asked_in_the_race = len(rtcp_of(publisher, Pli))
        for k in range(3, 23):  # a second of delta frames: both layers keep flowing
            for layer in (0, 1):
                publisher.send(layer_packet(layer, k, with_rid=False, key=False), tp["tuple"])
            await asyncio.sleep(0.05)
        assert consumer.key_frame_pending and not media_packets(subscriber)
        assert len(rtcp_of(publisher, Pli)) > asked_in_the_race  # asked again after the race
        for layer in (0, 1):  # the sender answers on every layer
            publisher.send(layer_packet(layer, 23, with_rid=False, key=True), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 1)
        assert media_packets(subscriber)[0][-2:] == bytes([1, 23])  # the best lower layer
        assert consumer.switch_target == 2  # and r2, should it come

    run_media(body)


def test_never_arriving_encoding_reports_nothing(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, "c1", spatial=2)
        producer = media.ctx.handlers["p1"]
        for k in range(0, 4):
            for layer in (0, 2):  # r1 never arrives
                publisher.send(layer_packet(layer, k, with_rid=k == 0, key=k == 0), tp["tuple"])
        await media.wait_for(lambda: producer.packets_received == 8)
        stats = media.request("p1", "producer.getStats")
        assert [s["ssrc"] for s in stats] == [SENDER_SSRCS[0], None, SENDER_SSRCS[2]]
        encodings = media.request("p1", "producer.dump")["rtpMapping"]["encodings"]
        assert encodings[1] == {"ssrc": None, "rid": "r1", "mappedSsrc": MAPPED[1]}
        assert [s["encodingIdx"] for s in producer.scores()] == [0, 2]

    run_media(body)


def test_new_ssrc_for_a_rid_rebinds(run_media, monkeypatch):
    """The browser restarted the encoder: the same RID comes with a new SSRC once the old one
    went quiet; the consumer's output continues (seq + 1, timestamps forward)."""
    monkeypatch.setattr(producer_module, "SSRC_SWITCH_SILENCE", 0.05)

    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, spatial=0)
        producer = media.ctx.handlers["p1"]
        transport = media.ctx.handlers["tp"]
        for k in range(0, 4):
            publisher.send(layer_packet(0, k, with_rid=k == 0, key=k == 0), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 4)
        # an RTX copy of frame 1, which arrived: it binds r0's RTX SSRC, and is a bandwidth
        # probe (a copy of a packet we have), not media: not forwarded, counted
        publisher.send(rtx_packet(0, 1, SENDER_RTX_SSRCS[0]), tp["tuple"])
        await media.wait_for(
            lambda: media.request("p1", "producer.getStats")[0]["probePackets"] == 1)
        assert transport.rtx_ssrc_table[SENDER_RTX_SSRCS[0]] == (producer, 0)
        assert len(media_packets(subscriber)) == 4
        # too soon: the new SSRC is not taken while the old one is live
        publisher.send(layer_packet(0, 50, with_rid=True, ssrc=3501, key=True), tp["tuple"])
        await media.wait_for(lambda: producer.packets_received == 4
                             and transport.dropped["unknownSsrc"] == 1)
        await asyncio.sleep(0.1)  # the old SSRC goes quiet
        for k in range(50, 54):
            publisher.send(layer_packet(0, k, with_rid=k == 50, ssrc=3501, key=k == 50), tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == 8)
        assert 3501 in transport.ssrc_table and SENDER_SSRCS[0] not in transport.ssrc_table
        # the restarted encoder's RTX comes under a new SSRC too: it replaces the old one
        publisher.send(rtx_packet(0, 51, 4501, ssrc=3501), tp["tuple"])
        await media.wait_for(lambda: 4501 in transport.rtx_ssrc_table)
        assert SENDER_RTX_SSRCS[0] not in transport.rtx_ssrc_table
        assert media.request("p1", "producer.getStats")[0]["rtxSsrc"] == 4501
        assert [p[-1] for p in subscriber.received] == [0, 1, 2, 3, 50, 51, 52, 53]
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in subscriber.received]
        assert seqs == list(range(seqs[0], seqs[0] + 8))
        stamps = [struct.unpack_from("!I", p, 4)[0] for p in subscriber.received]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
        assert media.request("p1", "producer.getStats")[0]["ssrc"] == 3501

    run_media(body)
