"""Simulcast that follows what the sender actually sends (issue 11), in real time through the
worker's sockets, checked packet by packet:

- a consumer whose layer stops mid-session steps down to the best layer still flowing within
  2 s, and back up when its layer returns, with continuous sequence numbers, forward
  timestamps and a "layerschange" each time;
- a consumer that joins before the sender's first packet (the normal room case) asks for key
  frames that wait for the first SSRC, starts on a lower layer whose key frame comes, and
  moves up when the preferred layer arrives;
- a sender's RTX bandwidth probes (padding-only RTX, RTX copies of packets already received)
  are not media: nothing forwarded, not counted as received, lost or key frames; an RTX that
  repairs a real loss still is.

The sender makes every 10th frame a key frame on every layer (a 300 ms key-frame interval),
so switches need no PLI round trip to be timely.
"""

from __future__ import annotations

import asyncio
import struct
import time

from test_simulcast_rid import (
    CONSUMER_SSRC,
    MID_ID,
    RIDS,
    SENDER_SSRCS,
    consume_simulcast,
    layer_packet,
    media_packets,
    produce_rid,
    rtcp_of,
)

from relay.rtp.packet import build_rtp, rtp_payload_offset
from relay.rtp.rtcp import Pli

FRAME = 0.03  # seconds between frames


def layers_sent(media, consumer_id: str = "c1") -> list[int]:
    return [d["spatialLayer"] for h, e, d in media.notifications
            if h == consumer_id and e == "layerschange"]


def check_continuous(received: list[bytes]) -> None:
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in received]
    gaps = [(a, b, p[-2], p[-1]) for a, b, p in zip(seqs, seqs[1:], received[1:], strict=False)
            if (b - a) & 0xFFFF != 1]
    assert not gaps, gaps
    stamps = [struct.unpack_from("!I", p, 4)[0] for p in received]
    assert all(0 < (b - a) & 0xFFFFFFFF < 0x80000000 for a, b in zip(stamps, stamps[1:], strict=False))
    assert {struct.unpack_from("!I", p, 8)[0] for p in received} == {CONSUMER_SSRC}


async def send_frames(media, publisher, tp, frames, layers_of) -> dict[int, float]:
    """Send frames `frames` (every 10th a key frame) on the layers `layers_of(k)` at FRAME
    intervals; returns when each frame was sent."""
    sent_at = {}
    for k in frames:
        for layer in layers_of(k):
            publisher.send(layer_packet(layer, k, with_rid=True, key=k % 10 == 0), tp["tuple"])
        sent_at[k] = time.monotonic()
        await asyncio.sleep(FRAME)
    return sent_at


def test_consumer_steps_down_when_its_layer_stops_and_back_up_when_it_returns(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, spatial=2)
        got: list[bytes] = []
        # 0-39: every layer; 40-129: the top layer stops (the sender dropped it); 130-169: back
        sent_at = await send_frames(media, publisher, tp, range(0, 170),
                                    lambda k: (0, 1) if 40 <= k < 130 else (0, 1, 2))
        await media.wait_for(lambda: media_packets(subscriber)[-1][-1] == 169)
        got = media_packets(subscriber)
        layers = [p[-2] for p in got]
        frames = [p[-1] for p in got]
        assert layers_sent(media) == [2, 1, 2], layers_sent(media)
        # on layer 2 from frame 0 to 39, then layer 1 from one of its key frames on, then
        # layer 2 again from one of its key frames
        down = layers.index(1)
        up = down + layers[down:].index(2)
        assert set(layers[:down]) == {2} and set(layers[down:up]) == {1} and set(layers[up:]) == {2}
        assert frames[:40] == list(range(40))
        assert frames[down] % 10 == 0 and frames[up] % 10 == 0  # switches on key frames
        assert frames[down:up] == list(range(frames[down], frames[down] + up - down))
        assert frames[up:] == list(range(frames[up], 170))
        # within 2 s of the layer stopping; back within 2 s of it returning
        assert sent_at[frames[down]] - sent_at[40] <= 2.0, sent_at[frames[down]] - sent_at[40]
        assert sent_at[frames[up]] - sent_at[130] <= 2.0, sent_at[frames[up]] - sent_at[130]
        check_continuous(got)
        dump = media.request("c1", "consumer.dump")
        assert dump["currentLayers"] == {"spatialLayer": 2, "temporalLayer": None}
        assert dump["preferredLayers"] == {"spatialLayer": 2, "temporalLayer": None}

    run_media(body)


def test_consumer_joining_before_the_first_packet_starts_low_and_moves_up(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, spatial=2)  # before any packet: no SSRC known to ask
        await asyncio.sleep(0.7)
        stats = media.request("p1", "producer.getStats")[0]
        assert stats["keyFrameRequestsSent"] == 0 and stats["keyFrameRequestsDeferred"] >= 1
        # the sender starts with its two lower layers; the top one comes 1.8 s later
        await send_frames(media, publisher, tp, range(0, 60), lambda k: (0, 1))
        plis = rtcp_of(publisher, Pli)
        assert {p.media_ssrc for p in plis} >= {SENDER_SSRCS[0], SENDER_SSRCS[1]}, plis
        got = media_packets(subscriber)
        assert got, "the consumer never started"
        assert {p[-2] for p in got} == {1}  # the best layer that flows
        first = got[0][-1]
        assert first % 10 == 0 and first <= 20  # a key frame, within 0.6 s of the first packet
        await send_frames(media, publisher, tp, range(60, 120), lambda k: (0, 1, 2))
        await media.wait_for(lambda: media_packets(subscriber)[-1][-1] == 119)
        got = media_packets(subscriber)  # everything it received
        layers = [p[-2] for p in got]
        assert layers_sent(media) == [1, 2]
        up = layers.index(2)
        assert set(layers[up:]) == {2} and got[up][-1] % 10 == 0
        assert got[up][-1] <= 60 + 40  # up within 1.2 s of the top layer's first packet
        check_continuous(got)

    run_media(body)


def test_rtx_probes_are_not_media(run_media):
    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, spatial=0)
        producer = media.ctx.handlers["p1"]
        for k in range(0, 12):
            if k != 9:  # frame 9 is lost on the way
                publisher.send(layer_packet(0, k, with_rid=True, key=k == 0), tp["tuple"])
        await media.wait_for(lambda: producer.packets_received == 11)
        await media.wait_for(lambda: len(media_packets(subscriber)) == 11)
        before = media.request("p1", "producer.getStats")[0]
        received_before = list(media_packets(subscriber))
        # Chrome probes: RTX copies of packets we have (the key frame among them) and
        # padding-only RTX packets, on r0's RTX SSRC (bound by repaired-rtp-stream-id)
        rtx_ssrc = 4001
        probes = 0
        for k in (0, 1, 2, 3, 4, 5, 6, 7, 8, 10):
            original = layer_packet(0, k, with_rid=False, key=k == 0)
            publisher.send(build_rtp(payload_type=97, sequence_number=500 + probes, timestamp=0,
                                     ssrc=rtx_ssrc, payload=original[2:4] + original[12:],
                                     extensions={MID_ID: b"0", 3: RIDS[0].encode()}),
                           tp["tuple"])
            probes += 1
        for i in range(5):
            header = bytearray(build_rtp(payload_type=97, sequence_number=600 + i,
                                         timestamp=0, ssrc=rtx_ssrc, payload=b""))
            header[0] |= 0x20  # P: 255 bytes of padding, the count in the last one
            publisher.send(bytes(header) + bytes(254) + bytes([255]), tp["tuple"])
            probes += 1
        await media.wait_for(
            lambda: media.request("p1", "producer.getStats")[0]["probePackets"] == probes)
        await media.settle()
        after = media.request("p1", "producer.getStats")[0]
        for field in ("packetsReceived", "packetsLost", "keyFrames", "rtxPacketsReceived"):
            assert after[field] == before[field], field
        assert after["packetCount"] == before["packetCount"]
        assert media_packets(subscriber) == received_before  # nothing forwarded
        # a real repair: frame 9, which never came, is forwarded (late) and fills the hole
        original = layer_packet(0, 9, with_rid=False)
        publisher.send(build_rtp(payload_type=97, sequence_number=700, timestamp=0,
                                 ssrc=rtx_ssrc, payload=original[2:4] + original[12:]),
                       tp["tuple"])
        await media.wait_for(lambda: len(media_packets(subscriber)) == len(received_before) + 1)
        repaired = media.request("p1", "producer.getStats")[0]
        assert repaired["rtxPacketsReceived"] == before["rtxPacketsReceived"] + 1
        assert repaired["packetsLost"] == 0 and repaired["probePackets"] == probes
        assert media_packets(subscriber)[-1][-2:] == bytes([0, 9])

    run_media(body)


def test_picture_ids_continue_across_a_layer_switch(run_media):
    """Each layer numbers its VP8 pictures on its own; the consumer's output continues from
    the last PictureID and TL0PICIDX it sent (a receiver that sees them jump stops
    assembling frames until a key frame)."""
    def packet(layer: int, k: int) -> bytes:
        pid = (7000 * layer + k) & 0x7FFF
        key = k % 10 == 0
        descriptor = bytes([0x90, 0xC0, 0x80 | (pid >> 8), pid & 0xFF, (50 * layer + k) & 0xFF])
        payload = (b"\x00\x9d\x01\x2a" if key else b"\x01") + bytes(30) + bytes([layer, k])
        return build_rtp(payload_type=96, sequence_number=1000 * (layer + 1) + k,
                         timestamp=3000 * k, ssrc=SENDER_SSRCS[layer],
                         payload=descriptor + payload,
                         extensions={MID_ID: b"0", 2: RIDS[layer].encode()})

    async def body(media):
        tp, _, publisher, subscriber = media.publish_subscribe()
        produce_rid(media)
        consume_simulcast(media, spatial=2)
        for k in range(0, 25):
            for layer in range(3):
                publisher.send(packet(layer, k), tp["tuple"])
            await asyncio.sleep(0.01)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0})
        for k in range(25, 50):
            for layer in range(3):
                publisher.send(packet(layer, k), tp["tuple"])
            await asyncio.sleep(0.01)
        await media.wait_for(lambda: media_packets(subscriber)[-1][-2:] == bytes([0, 49]))
        got = media_packets(subscriber)
        assert {p[-2] for p in got[:20]} == {2} and got[-1][-2] == 0
        offsets = [rtp_payload_offset(p, len(p)) for p in got]
        pids = [((p[o + 2] & 0x7F) << 8) | p[o + 3] for p, o in zip(got, offsets, strict=True)]
        tl0s = [p[o + 4] for p, o in zip(got, offsets, strict=True)]
        assert pids == list(range(pids[0], pids[0] + len(pids))), pids
        assert tl0s == [(tl0s[0] + i) & 0xFF for i in range(len(tl0s))], tl0s

    run_media(body)
