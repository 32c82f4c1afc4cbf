"""Send-side bandwidth estimation toward a subscriber (issue 13), through the worker's real
sockets, packet by packet:

- every packet a consumer that negotiated transport-wide-cc is sent carries the transport's
  next transport-wide sequence number (one counter per transport, across its consumers and
  resends), and the subscriber's transport-cc feedback about them reaches the estimator;
- the transport's estimate, bounded by `setMaxOutgoingBitrate`, is divided among its
  simulcast consumers by the layers' measured bitrates: a consumer whose layer no longer
  fits steps down (on a key frame), and steps back up once the bitrate allows and the
  hysteresis after a bandwidth downgrade has passed.
"""

from __future__ import annotations

import asyncio
import struct

from quality_peers import NACK_FB
from test_simulcast_rid import rtcp_of

import relay.worker.bitrate_allocation as allocation
from relay.rtp.packet import build_rtp, parse_extensions
from relay.rtp.rtcp import Nack, Pli, Remb
from relay.rtp.transport_cc import TRANSPORT_CC_URI, TransportCcReceiver

MID_ID, RID_ID, TCC_ID = 1, 2, 5
CONSUMER_TCC_ID = 7  # the subscriber's own id for the extension
RIDS = ["r0", "r1", "r2"]
SSRCS = [3001, 3002, 3003]
MAPPED = [7001, 7002, 7003]
SIZES = [200, 600, 1100]  # bytes per frame and layer: ~48, ~144, ~264 kbit/s at 30 fps
KEY = b"\x10\x00\x9d\x01\x2a"
DELTA = b"\x10\x01"
TCC_FB = [{"type": "transport-cc", "parameter": ""}, *NACK_FB]


def produce(media) -> None:
    media.request("tp", "transport.produce", {
        "producerId": "p1", "kind": "video",
        "rtpParameters": {
            "mid": "0",
            "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
                        "rtcpFeedback": TCC_FB}],
            "headerExtensions": [
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_ID},
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": RID_ID},
                {"uri": TRANSPORT_CC_URI, "id": TCC_ID}],
            "encodings": [{"rid": r} for r in RIDS]},
        "rtpMapping": {"codecs": [{"payloadType": 96, "mappedPayloadType": 101}],
                       "encodings": [{"rid": r, "mappedSsrc": m} for r, m in zip(RIDS, MAPPED, strict=True)]},
    })


def consume(media, spatial: int = 2, rtx: bool = False) -> None:
    codecs = [{"mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000,
               "rtcpFeedback": TCC_FB}]
    encoding: dict = {"ssrc": 9999}
    if rtx:
        codecs.append({"mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000,
                       "parameters": {"apt": 101}})
        encoding["rtx"] = {"ssrc": 9998}
    media.request("tc", "transport.consume", {
        "consumerId": "c1", "producerId": "p1", "kind": "video", "type": "simulcast",
        "rtpParameters": {"codecs": codecs,
                          "headerExtensions": [{"uri": TRANSPORT_CC_URI, "id": CONSUMER_TCC_ID}],
                          "encodings": [encoding]},
        "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
        "preferredLayers": {"spatialLayer": spatial},
    })


class Sender:
    """The publisher: three layers, a key frame every 10 frames, its own transport-wide
    numbers on every packet."""

    def __init__(self, publisher, tp, subscriber=None) -> None:
        self.publisher, self.tp = publisher, tp
        self.subscriber = subscriber  # read as it goes: a full socket buffer drops (EAGAIN)
        self.wide = 0
        self.k = 0

    def frame(self) -> None:
        k = self.k
        for layer in range(3):
            body = (KEY if k % 10 == 0 else DELTA) + bytes(SIZES[layer] - 40) + bytes([layer, k & 0xFF])
            self.publisher.send(build_rtp(
                payload_type=96, sequence_number=(1000 * (layer + 1) + k) & 0xFFFF,
                timestamp=3000 * k, ssrc=SSRCS[layer], payload=body,
                extensions={MID_ID: b"0", RID_ID: RIDS[layer].encode(),
                            TCC_ID: struct.pack("!H", self.wide & 0xFFFF)}), self.tp["tuple"])
            self.wide += 1
        self.k += 1

    async def run(self, seconds: float) -> None:
        for _ in range(int(seconds / 0.033)):
            self.frame()
            await asyncio.sleep(0.033)
            if self.subscriber is not None:
                self.subscriber.drain()


def media_of(peer) -> list[bytes]:
    return [p for p in peer.drain() if not 64 <= p[1] & 0x7F <= 95]


def test_consumer_packets_carry_transport_wide_numbers_and_feedback_reaches_the_estimator(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce(media)
        consume(media, spatial=0)
        sender = Sender(publisher, tp, subscriber)
        await sender.run(1.0)
        got = media_of(subscriber)
        assert len(got) >= 20
        numbers = [struct.unpack("!H", parse_extensions(p, len(p))[CONSUMER_TCC_ID])[0] for p in got]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        assert TCC_ID not in parse_extensions(got[0], len(got[0])) or TCC_ID == CONSUMER_TCC_ID
        # a NACKed packet is resent with a number of its own
        out_seq = struct.unpack_from("!H", got[5], 2)[0]
        subscriber.send(Nack(0x1234, 9999, [out_seq]).serialize(), tc["tuple"])
        await media.wait_for(lambda: len(media_of(subscriber)) > len(got))
        resent = [p for p in media_of(subscriber)[len(got):]
                  if struct.unpack_from("!H", p, 2)[0] == out_seq]
        assert resent
        (number,) = struct.unpack("!H", parse_extensions(resent[0], len(resent[0]))[CONSUMER_TCC_ID])
        assert number > numbers[-1]
        # the subscriber's feedback about them (with "bwe" trace events on)
        media.request("tc", "transport.enableTraceEvent", {"types": ["bwe"]})
        receiver = TransportCcReceiver()
        for i, p in enumerate(media_of(subscriber)):
            value = parse_extensions(p, len(p))[CONSUMER_TCC_ID]
            receiver.on_packet(struct.unpack("!H", value)[0], 10.0 + i * 0.001, 9999)
        for packet in receiver.build_feedback(0x1234):
            subscriber.send(packet, tc["tuple"])
        await media.wait_for(lambda: media.request("tc", "transport.getStats")[0]
                             ["sendEstimation"]["feedbackReceived"] >= 1)
        stats = media.request("tc", "transport.getStats")[0]
        assert stats["sendEstimation"]["transportWideSequenceNumbersSent"] == len(numbers) + len(
            [p for p in media_of(subscriber)[len(got):]])
        assert stats["availableOutgoingBitrate"] > 0
        traces = [d for h, e, d in media.notifications if h == "tc" and e == "trace"]
        assert traces and traces[-1]["type"] == "bwe" and traces[-1]["direction"] == "out"
        assert isinstance(traces[-1]["info"], dict)
        producer_stats = media.request("tp", "transport.getStats")[0]
        assert producer_stats["receiveFeedback"]["type"] == "transport-cc"

    run_media(body)


def test_layers_follow_the_available_bitrate(run_media, monkeypatch):
    monkeypatch.setattr(allocation, "UPGRADE_HOLD", 2.0)

    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce(media)
        consume(media, spatial=2)
        sender = Sender(publisher, tp, subscriber)
        await sender.run(2.5)  # the layers' bitrates are measured at the RTCP reports
        bitrates = [s["bitrate"] for s in media.request("p1", "producer.getStats")]
        assert bitrates[0] < bitrates[1] < bitrates[2], bitrates
        assert {p[-2] for p in media_of(subscriber)[-5:]} == {2}
        # the subscriber's path narrows (its REMB says so): room for the lowest layer only
        subscriber.send(Remb(0x1234, (bitrates[0] + bitrates[1]) // 2, [9999]).serialize(),
                        tc["tuple"])
        await sender.run(1.0)
        stats = media.request("tc", "transport.getStats")[0]
        assert stats["availableOutgoingBitrate"] <= (bitrates[0] + bitrates[1]) // 2
        assert {p[-2] for p in media_of(subscriber)[-5:]} == {0}
        dump = media.request("c1", "consumer.dump")
        assert dump["targetLayers"]["spatialLayer"] == 0
        assert dump["preferredLayers"]["spatialLayer"] == 2
        # it widens again: held for UPGRADE_HOLD after the downgrade, then back up
        subscriber.send(Remb(0x1234, 10_000_000, [9999]).serialize(), tc["tuple"])
        await sender.run(0.5)
        assert {p[-2] for p in media_of(subscriber)[-5:]} == {0}  # still held
        await sender.run(2.0)
        assert {p[-2] for p in media_of(subscriber)[-5:]} == {2}
        changes = [d["spatialLayer"] for h, e, d in media.notifications
                   if h == "c1" and e == "layerschange"]
        assert changes == [2, 0, 2], changes
        # the operator's cap holds below the estimate
        media.request("tc", "transport.setMaxOutgoingBitrate", {"bitrate": bitrates[1]})
        await sender.run(1.0)
        assert media.request("tc", "transport.getStats")[0]["availableOutgoingBitrate"] \
            <= bitrates[1]
        assert {p[-2] for p in media_of(subscriber)[-5:]} <= {0, 1}
        got = media_of(subscriber)
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
        gaps = [(a, b, p[-2], p[-1]) for a, b, p in zip(seqs, seqs[1:], got[1:], strict=False)
                if (b - a) & 0xFFFF != 1]
        assert not gaps, gaps

    run_media(body)


def test_probes_are_padding_with_transport_wide_numbers(run_media):
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce(media)
        consume(media, spatial=0, rtx=True)
        sender = Sender(publisher, tp, subscriber)
        receiver = TransportCcReceiver()  # the subscriber's side of transport-cc
        # its REMB says the path is narrow: what the consumers want is above the estimate
        subscriber.send(Remb(0x1234, 100_000, [9999]).serialize(), tc["tuple"])
        seen = 0
        for _ in range(8):  # 8 x 0.3 s: layers measured, the allocation wants layer 0 only
            await sender.run(0.3)
            got = [p for p in subscriber.received if not 64 <= p[1] & 0x7F <= 95]
            for i, p in enumerate(got[seen:]):
                value = parse_extensions(p, len(p)).get(CONSUMER_TCC_ID)
                if value is not None:
                    receiver.on_packet(struct.unpack("!H", value)[0], 10.0 + (seen + i) * 0.001, 9999)
            seen = len(got)
            for packet in receiver.build_feedback(0x1234):
                subscriber.send(packet, tc["tuple"])
            # the subscriber prefers more than the path is known to carry
            media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 2})
        await media.settle()
        stats = media.request("tc", "transport.getStats")[0]
        assert stats["probes"]["packetsSent"] > 0, stats["probes"]
        probes = [p for p in subscriber.drain() if p[1] & 0x7F == 102 and p[0] & 0x20]
        assert probes, "no padding-only RTX packet reached the subscriber"
        for p in probes:
            assert struct.unpack_from("!I", p, 8)[0] == 9998  # the RTX SSRC
            assert p[-1] == len(p) - 20  # all padding after the header and extension
            assert CONSUMER_TCC_ID in parse_extensions(p, len(p))
        media_numbers = [struct.unpack("!H", parse_extensions(p, len(p))[CONSUMER_TCC_ID])[0]
                         for p in subscriber.received if not 64 <= p[1] & 0x7F <= 95]
        assert len(set(media_numbers)) == len(media_numbers)  # one counter, no number twice

    run_media(body)


def test_a_full_path_gets_a_key_frame_instead_of_resends(run_media):
    """Issue 16: while the transport sends more than its estimate allows, a NACKed video
    packet is not resent (that would feed the congestion); a key frame is asked for, at
    most once a second; with room again, NACKs are answered."""
    async def body(media):
        tp, tc, publisher, subscriber = media.publish_subscribe()
        produce(media)
        consume(media, spatial=0)
        sender = Sender(publisher, tp, subscriber)
        await sender.run(2.0)  # the consumer's bitrate is measured at its SRs
        consumer = media.ctx.handlers["c1"]
        assert consumer.bitrate > 30_000
        publisher.drain()
        publisher.received.clear()
        subscriber.send(Remb(0x1234, 20_000, [9999]).serialize(), tc["tuple"])  # full path
        got = media_of(subscriber)
        wanted = [struct.unpack_from("!H", p, 2)[0] for p in got[-6:-3]]
        subscriber.send(Nack(0x1234, 9999, wanted).serialize(), tc["tuple"])
        await sender.run(0.3)
        stats = media.request("c1", "consumer.getStats")[0]
        assert stats["retransmittedPackets"] == 0
        assert stats["nackSuppressed"] == 3 and stats["congestionKeyFrameRequests"] == 1
        assert rtcp_of(publisher, Pli), "no key frame asked of the publisher"
        subscriber.send(Nack(0x1234, 9999, wanted).serialize(), tc["tuple"])  # within 1 s
        await sender.run(0.2)
        assert media.request("c1", "consumer.getStats")[0]["congestionKeyFrameRequests"] == 1
        subscriber.send(Remb(0x1234, 10_000_000, [9999]).serialize(), tc["tuple"])  # room again
        await asyncio.sleep(0.05)
        subscriber.send(Nack(0x1234, 9999, wanted).serialize(), tc["tuple"])
        await media.wait_for(
            lambda: media.request("c1", "consumer.getStats")[0]["retransmittedPackets"] == 3)

    run_media(body)
