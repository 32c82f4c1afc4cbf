"""Dividing a transport's estimate among its consumers (relay/worker/bitrate_allocation.py),
with stand-in consumers: which (spatial, temporal) layers each is allowed, and what they
want; then the real pieces: per-TID bitrates measured from VP8 packets, and a simulcast
consumer applying a temporal limit."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from relay.rtp.keyframe import is_vp8_keyframe
from relay.rtp.packet import build_rtp
from relay.worker.bitrate_allocation import UPGRADE_HOLD, distribute
from relay.worker.consumer import ALL_TEMPORAL_LAYERS as ALL
from relay.worker.stream_receiver import StreamReceiver

NOW = 100.0
LAYERS = [150_000, 400_000, 800_000]
# L1T3 layers: bitrate up to and including TL0, TL1, TL2 (TL0 ~40 %, TL0+TL1 ~60 %)
TEMPORAL = [[60_000, 90_000, 150_000], [160_000, 240_000, 400_000], [320_000, 480_000, 800_000]]


@dataclass
class Stream:
    started: bool = True
    last_time: float = NOW


@dataclass
class Receiver:
    layers: list[int]  # StreamReceiver.temporal_bitrates()

    @property
    def bitrate(self) -> int:
        return self.layers[-1]

    def temporal_bitrates(self) -> list[int]:
        return self.layers


@dataclass
class Producer:
    streams: list[Stream]
    receivers: list[Receiver]


@dataclass(eq=False)
class FakeConsumer:
    producer: Producer
    consumer_type: str = "simulcast"
    target_spatial: int = 2
    priority: int = 1
    bitrate: int = 0
    closed: bool = False
    active: bool = True
    preferred_tid: int = ALL
    layer_streams: list[int] = field(default_factory=lambda: [0, 1, 2])
    limits: list[int] = field(default_factory=list)
    temporals: list[int] = field(default_factory=list)

    def set_bwe_limit(self, spatial: int, now: float, temporal: int = ALL) -> None:
        self.limits.append(spatial)
        self.temporals.append(temporal)


def _simulcast(silent: tuple[int, ...] = (), temporal: bool = False, **kwargs) -> FakeConsumer:
    streams = [Stream(last_time=NOW - 5.0 if i in silent else NOW) for i in range(3)]
    layers = TEMPORAL if temporal else [[b] for b in LAYERS]
    return FakeConsumer(Producer(streams, [Receiver(list(b)) for b in layers]), **kwargs)


def test_each_consumer_gets_the_highest_layer_that_fits() -> None:
    audio = FakeConsumer(Producer([], []), consumer_type="simple", bitrate=40_000)
    video = _simulcast()
    wanted = distribute([audio, video], 40_000 + 400_000 + 10_000, NOW)
    assert video.limits == [1]
    assert wanted == 40_000 + 800_000  # what probing aims for: the preferred layers
    distribute([audio, video], 100_000, NOW)
    assert video.limits[-1] == 0  # the lowest layer flows whatever the estimate


def test_priority_steps_first() -> None:
    low, high = _simulcast(), _simulcast(priority=2)
    distribute([low, high], 150_000 + 150_000 + 650_000, NOW)
    assert (low.limits, high.limits) == ([0], [2])


def test_a_paused_layer_is_no_bandwidth_limit() -> None:
    """The sender stopped encoding the top layer (CPU): the consumer gets every layer that
    flows, and its limit stays at its preferred layer, so the way back up is not held as
    after a bandwidth downgrade."""
    video = _simulcast(silent=(2,))
    wanted = distribute([video], 10_000_000, NOW)
    assert video.limits == [2]
    assert wanted == 400_000
    capped = _simulcast(silent=(2,))
    distribute([capped], 200_000, NOW)
    assert capped.limits == [0]  # the bandwidth does limit this one


# -- temporal layers ------------------------------------------------------------------------


def test_below_the_lowest_layer_whole_its_temporal_layers_are_stepped() -> None:
    """Spatial-only allocation gave the lowest layer whole (150 kbit/s) whatever the estimate;
    now 100 kbit/s gets TL0+TL1 of it, 70 kbit/s TL0, and less still TL0 (the floor)."""
    for budget, temporal in ((100_000, 1), (70_000, 0), (10_000, 0), (150_000, ALL)):
        video = _simulcast(temporal=True)
        distribute([video], budget, NOW)
        assert (video.limits, video.temporals) == ([0], [temporal]), budget


def test_higher_spatial_layers_keep_the_frame_rate() -> None:
    """Above the lowest layer whole, the next step is the next spatial layer whole: its TL0
    (160 kbit/s) would fit 200 kbit/s, but at a quarter of the frames (see the module doc)."""
    video = _simulcast(temporal=True)
    distribute([video], 200_000, NOW)
    assert (video.limits, video.temporals) == ([0], [ALL])
    video = _simulcast(temporal=True)
    wanted = distribute([video], 450_000, NOW)
    assert (video.limits, video.temporals) == ([1], [ALL])
    assert wanted == 800_000


def test_preferred_temporal_layer_is_never_exceeded() -> None:
    """A consumer that prefers TL0 is costed at TL0 on every layer: 350 kbit/s carries the
    top layer's TL0 (320), and it is never given TL1 (what it wants is TL0 of the top)."""
    video = _simulcast(temporal=True, preferred_tid=0)
    wanted = distribute([video], 350_000, NOW)
    assert wanted == 320_000
    assert (video.limits, video.temporals) == ([2], [ALL])  # not limited: its preferred layers
    video = _simulcast(temporal=True, preferred_tid=0)
    distribute([video], 200_000, NOW)
    assert (video.limits, video.temporals) == ([1], [0])
    video = _simulcast(temporal=True, preferred_tid=1)
    assert distribute([video], 100_000, NOW) == 480_000  # TL0+TL1 of the top layer
    assert (video.limits, video.temporals) == ([0], [1])
    distribute([video], 10_000_000, NOW)
    assert (video.limits[-1], video.temporals[-1]) == (2, ALL)  # its own TL1 bounds it


def test_priority_orders_temporal_steps_too() -> None:
    """Both start on TL0 of the lowest layer (60 + 60); the priority-2 consumer takes two
    steps per round, so 250 kbit/s gives it the lowest layer whole and the other TL0+TL1."""
    low, high = _simulcast(temporal=True), _simulcast(temporal=True, priority=2)
    distribute([low, high], 250_000, NOW)
    assert (high.limits, high.temporals) == ([0], [ALL])
    assert (low.limits, low.temporals) == ([0], [1])
    low, high = _simulcast(temporal=True), _simulcast(temporal=True, priority=2)
    distribute([low, high], 90_000 + 400_000, NOW)
    assert (high.limits, high.temporals, low.limits, low.temporals) == ([1], [ALL], [0], [1])


# -- per temporal layer bitrates, from VP8 packets ------------------------------------------


def _vp8(seq: int, ts: int, tid: int | None, start: bool, key: bool = False, size: int = 1000,
         descriptor: bytes | None = None) -> bytes:
    if descriptor is None:  # Chrome's: X; I (15-bit PictureID), L, T
        descriptor = bytes([0x90 if start else 0x80, 0xE0, 0x81, seq & 0xFF, 7,
                            (tid or 0) << 6])
        if tid is None:  # X with PictureID only, no T
            descriptor = bytes([0x90 if start else 0x80, 0x80, 0x81, seq & 0xFF])
    payload = descriptor + bytes([0x00 if key else 0x01]) + b"\x9d\x01\x2a"
    payload += b"\x00" * (size - 12 - len(payload))
    return build_rtp(payload_type=96, sequence_number=seq, timestamp=ts, ssrc=1, payload=payload)


def _feed(receiver: StreamReceiver, packets: list[bytes], now: float) -> int:
    keyframes = 0
    buf = bytearray(1500)
    for packet in packets:
        buf[:len(packet)] = packet
        seq, ts = int.from_bytes(packet[2:4], "big"), int.from_bytes(packet[4:8], "big")
        keyframes += receiver.on_packet(memoryview(buf), len(packet), seq, ts, now)[0]
    return keyframes


def _l1t3_second(first_seq: int, sizes: tuple[int, int, int]) -> list[bytes]:
    """One second at 32 fps of L1T3 (TIDs 0, 2, 1, 2 ...), frames of 1-3 packets whose size
    is sizes[tid]; the first frame a key frame."""
    packets = []
    seq = first_seq
    for frame in range(32):
        tid = (0, 2, 1, 2)[frame % 4]
        count = (3, 1, 2)[tid]
        for i in range(count):
            packets.append(_vp8(seq, 3000 * (first_seq + frame), tid, i == 0,
                                key=frame == 0 and first_seq == 0, size=sizes[tid]))
            seq += 1
    return packets


def test_temporal_bitrates_measured_from_vp8_tids() -> None:
    receiver = StreamReceiver("video", "video/VP8", 90000, False)
    assert receiver.temporal_bitrates() == [0]
    assert _feed(receiver, _l1t3_second(0, (1000, 800, 500)), 0.0) == 1
    receiver.update_bitrate(0.0)
    assert _feed(receiver, _l1t3_second(100, (1000, 800, 500)), 1.0) == 0
    receiver.update_bitrate(1.0)
    # per second: TL0 8 frames x 3 packets x 1000 B, TL1 8 x 1 x 800, TL2 16 x 2 x 500
    tl0, tl1, tl2 = 8 * 3 * 1000 * 8, 8 * 800 * 8, 16 * 2 * 500 * 8
    bitrates = receiver.temporal_bitrates()
    assert bitrates[-1] == receiver.bitrate == tl0 + tl1 + tl2
    # the shares are smoothed over the intervals: both seconds were alike (but the first
    # interval, before any update, counted the first second too)
    assert abs(bitrates[0] - tl0) <= 0.01 * tl0
    assert abs(bitrates[1] - (tl0 + tl1)) <= 0.01 * (tl0 + tl1)
    assert len(bitrates) == 3


def test_a_stream_without_tids_is_one_temporal_layer() -> None:
    vp8 = StreamReceiver("video", "video/VP8", 90000, False)
    _feed(vp8, [_vp8(seq, 3000 * seq, None, True, key=seq == 0) for seq in range(30)], 0.0)
    vp8.update_bitrate(0.0)
    _feed(vp8, [_vp8(seq, 3000 * seq, None, True) for seq in range(30, 60)], 1.0)
    vp8.update_bitrate(1.0)
    assert vp8.temporal_bitrates() == [vp8.bitrate] and vp8.bitrate > 0
    h264 = StreamReceiver("video", "video/H264", 90000, False)
    nal = bytes([0x41]) + b"\x00" * 900
    for second in range(2):
        for seq in range(30 * second, 30 * second + 30):
            packet = build_rtp(payload_type=102, sequence_number=seq, timestamp=3000 * seq,
                               ssrc=2, payload=nal)
            h264.on_packet(memoryview(bytearray(packet)), len(packet), seq, 3000 * seq,
                           float(second))
        h264.update_bitrate(float(second))
    assert h264.temporal_bitrates() == [h264.bitrate] and h264.bitrate > 0


def test_vp8_key_frames_found_as_before() -> None:
    """The first packet of a frame goes through the receiver's own descriptor walk (TID and
    key frame at once): it must find exactly the key frames `is_vp8_keyframe` finds, for any
    payload, including truncated and malformed descriptors."""
    rng = random.Random(13)
    for i in range(3000):
        payload = bytes(rng.choice((0x00, 0x01, 0x10, 0x11, 0x80, 0x90, 0xE0, 0xFF,
                                    rng.randrange(256))) for _ in range(rng.randrange(1, 9)))
        receiver = StreamReceiver("video", "video/VP8", 90000, False)
        packet = build_rtp(payload_type=96, sequence_number=i, timestamp=i, ssrc=1,
                           payload=payload)
        got = _feed(receiver, [packet], 0.0)
        assert got == is_vp8_keyframe(payload), payload.hex()


# -- a simulcast consumer applying the temporal limit -------------------------------------

LAYER_SSRCS = [2001, 2002, 2003]
MAPPED = [6001, 6002, 6003]


def test_consumer_applies_the_temporal_limit_at_tl0_frames(run_media):
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
                              "encodings": [{"ssrc": 9999}]},
            "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
            "preferredLayers": {"spatialLayer": 0},
        })
        producer = media.ctx.handlers["p1"]
        consumer = media.ctx.handlers["c1"]

        async def frames(ks: range) -> None:
            for k in ks:
                before = producer.packets_received
                packet = bytearray(_vp8(500 + k, 3000 * k, (0, 2, 1, 2)[k % 4], True,
                                        key=k == 0, size=100))
                packet[8:12] = LAYER_SSRCS[0].to_bytes(4, "big")
                packet[-1] = k
                publisher.send(bytes(packet), tp["tuple"])
                await media.wait_for(lambda b=before: producer.packets_received == b + 1)

        def forwarded() -> list[int]:
            return [p[-1] for p in subscriber.drain() if not 64 <= p[1] & 0x7F <= 95]

        def layers(name: str) -> tuple:
            dump = media.request("c1", "consumer.dump")[name]
            return dump["spatialLayer"], dump["temporalLayer"]

        await frames(range(0, 6))
        consumer.set_bwe_limit(0, time.monotonic(), 0)  # the allocation: TL0 of layer 0
        assert layers("targetLayers") == (0, 0)
        assert layers("preferredLayers") == (0, None)
        await frames(range(6, 14))  # from frame 8 (TL0) on: TL0 only
        consumer.set_bwe_limit(2, time.monotonic(), ALL)  # not limited any more
        assert layers("targetLayers") == (0, None)  # (its preferred layers)
        await frames(range(14, 18))  # frame 15 is TL2 but no layer sync: up at 16 (TL0)
        media.request("c1", "consumer.setPreferredLayers", {"spatialLayer": 0, "temporalLayer": 0})
        consumer.set_bwe_limit(2, time.monotonic(), ALL)  # the bandwidth allows more: still TL0
        assert layers("targetLayers") == (0, 0)
        await frames(range(18, 26))
        await media.settle()
        assert forwarded() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 17, 18, 19, 20, 24]
        assert layers("currentLayers") == (0, 0)

        # Held after a bandwidth downgrade (2 -> 0, with TL0+TL1): an allocation above
        # lifts the temporal limit on the held layer at once, the spatial one after the hold.
        media.request("tc", "transport.consume", {
            "consumerId": "c2", "producerId": "p1", "kind": "video", "type": "simulcast",
            "rtpParameters": {"codecs": [{"mimeType": "video/VP8", "payloadType": 101,
                                          "clockRate": 90000}],
                              "encodings": [{"ssrc": 9998}]},
            "consumableRtpEncodings": [{"ssrc": m} for m in MAPPED],
        })
        held = media.ctx.handlers["c2"]
        now = time.monotonic()
        held.bwe_allocated, held.bwe_temporal_allocated = 0, 1
        held._apply_bwe_limit(now)
        assert held.target_layers() == {"spatialLayer": 0, "temporalLayer": 1}
        held.bwe_allocated, held.bwe_temporal_allocated = 2, ALL
        held._apply_bwe_limit(now + 1.0)
        assert held.target_layers() == {"spatialLayer": 0, "temporalLayer": None}
        held._apply_bwe_limit(now + UPGRADE_HOLD)
        assert held.target_layers() == {"spatialLayer": 2, "temporalLayer": None}

    run_media(body)
