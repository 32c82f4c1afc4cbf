"""The header extensions a downstream router needs cross a pipe with their values (audio
level, RID and repaired RID, toffset, video orientation, absolute capture time) and the
sender's transport ones do not (MID, abs-send-time, transport-wide-cc): checked on the wire
of a pipe transport whose far end is a plain UDP socket, and at a subscriber of the far
router after `pipe_to_router`."""

from __future__ import annotations

import asyncio
import struct

from pipe_support import (
    OPUS_PT,
    VP8_KEY,
    VP8_PT,
    Endpoint,
    collect,
    egress,
    ingress,
    run,
    send_paced,
    two_workers,
)

from relay.rtp.packet import build_rtp, parse_extensions

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
ORIENTATION = "urn:3gpp:video-orientation"
CAPTURE = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
DROPPED = {MID, ABS_SEND, TCC}

# the sender's own ids, none equal to the router's, so every id is rewritten on the way
VIDEO_IDS = {MID: 9, RID: 8, RRID: 14, TOFFSET: 7, ORIENTATION: 6, CAPTURE: 5, ABS_SEND: 3,
             TCC: 4}
AUDIO_IDS = {MID: 9, LEVEL: 7, CAPTURE: 5, ABS_SEND: 3, TCC: 4}
SSRCS = [3001, 3002]
RIDS = ["lo", "hi"]
RTX_PT = 97
RTX_SSRCS = [3101, 3102]
FRAMES = 30  # per stream; frame GAP of each stream comes over RTX instead
GAP = 20


def _video_parameters() -> dict:
    return {"codecs": [{"mimeType": "video/VP8", "payloadType": VP8_PT, "clockRate": 90000,
                        "rtcpFeedback": [{"type": "nack", "parameter": ""},
                                         {"type": "nack", "parameter": "pli"}]},
                       {"mimeType": "video/rtx", "payloadType": RTX_PT, "clockRate": 90000,
                        "parameters": {"apt": VP8_PT}}],
            "headerExtensions": [{"uri": u, "id": i} for u, i in VIDEO_IDS.items()],
            "encodings": [{"ssrc": s, "rid": r, "rtx": {"ssrc": x}}
                          for s, r, x in zip(SSRCS, RIDS, RTX_SSRCS, strict=True)],
            "rtcp": {"cname": "sender"}}


def _audio_parameters() -> dict:
    return {"codecs": [{"mimeType": "audio/opus", "payloadType": OPUS_PT, "clockRate": 48000,
                        "channels": 2}],
            "headerExtensions": [{"uri": u, "id": i} for u, i in AUDIO_IDS.items()],
            "encodings": [{"ssrc": 4001}], "rtcp": {"cname": "sender"}}


def _video_values(stream: int, frame: int) -> dict[str, bytes]:
    return {MID: b"0", RID: RIDS[stream].encode(), TOFFSET: (frame * 7).to_bytes(3, "big"),
            ORIENTATION: bytes([frame & 3]), CAPTURE: struct.pack("!Q", 10**12 + frame),
            ABS_SEND: b"\x01\x02\x03", TCC: struct.pack("!H", frame)}


def _audio_values(n: int) -> dict[str, bytes]:
    return {MID: b"1", LEVEL: bytes([0x80 | (n % 127)]), CAPTURE: struct.pack("!Q", 7 * n),
            ABS_SEND: b"\x04\x05\x06", TCC: struct.pack("!H", n)}


def _packet(values: dict[str, bytes], ids: dict[str, int], seq: int, ts: int, ssrc: int,
            pt: int, payload: bytes) -> bytes:
    return build_rtp(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                     payload=payload, extensions={ids[u]: v for u, v in values.items()})


def _video_packets() -> list[bytes]:
    """Both streams, every frame a key frame; frame GAP of each stream comes last over RTX
    with the repaired RID (RFC 4588: the original sequence number ahead of the payload)."""
    packets = []
    for frame in range(FRAMES):
        for stream, ssrc in enumerate(SSRCS):
            if frame != GAP:
                packets.append(_packet(_video_values(stream, frame), VIDEO_IDS, 100 + frame,
                                       frame * 3000, ssrc, VP8_PT, VP8_KEY))
    for stream, rtx_ssrc in enumerate(RTX_SSRCS):
        values = _video_values(stream, GAP)
        values[RRID] = values.pop(RID)
        packets.append(_packet(values, VIDEO_IDS, 500, GAP * 3000, rtx_ssrc, RTX_PT,
                               struct.pack("!H", 100 + GAP) + VP8_KEY))
    return packets


def _by_uri(packet: bytes, ids: dict[str, int]) -> dict[str, bytes]:
    """The packet's extension values by URI (`ids`: URI → id as negotiated); an id nobody
    negotiated shows up under its number."""
    names = {i: u for u, i in ids.items()}
    return {names.get(i, str(i)): v for i, v in parse_extensions(packet, len(packet)).items()}


def _ids(rtp_parameters: dict) -> dict[str, int]:
    return {e["uri"]: e["id"] for e in rtp_parameters["headerExtensions"]}


def _seq(packet: bytes) -> int:
    return struct.unpack_from("!H", packet, 2)[0]


def test_extensions_cross_the_pipe():
    run(_cross())


async def _cross() -> None:
    async with two_workers() as (router_a, router_b):
        _, video, video_sender, video_address = await ingress(router_a, "video",
                                                              _video_parameters())
        _, audio, audio_sender, audio_address = await ingress(router_a, "audio",
                                                              _audio_parameters())
        # the pipe's wire: a pipe transport whose other end is a socket of this test
        wire = Endpoint()
        raw = await router_a.create_pipe_transport()
        await raw.connect(ip="127.0.0.1", port=wire.port)
        raw_video = await raw.consume(producer_id=video.id)
        raw_audio = await raw.consume(producer_id=audio.id)
        video_ids, audio_ids = _ids(raw_video.rtp_parameters), _ids(raw_audio.rtp_parameters)
        assert set(video_ids) == {RID, RRID, TOFFSET, ORIENTATION, CAPTURE}
        assert set(audio_ids) == {LEVEL, CAPTURE}
        # and a far router's subscribers
        await router_a.pipe_to_router(producer_id=video.id, router=router_b)
        await router_a.pipe_to_router(producer_id=audio.id, router=router_b)
        _, video_consumer, video_receiver = await egress(router_b, video.id)
        _, audio_consumer, audio_receiver = await egress(router_b, audio.id)
        receivers = (wire, video_receiver, audio_receiver)

        await send_paced(video_sender, video_address, _video_packets(), receivers)
        audio_packets = [_packet(_audio_values(n), AUDIO_IDS, 7000 + n, n * 960, 4001,
                                 OPUS_PT, bytes([n]) * 100) for n in range(FRAMES)]
        await send_paced(audio_sender, audio_address, audio_packets, receivers)
        video_total = len(SSRCS) * FRAMES
        await collect(wire, lambda: len(wire.rtp) >= video_total + FRAMES)
        await collect(video_receiver, lambda: len(video_receiver.rtp) >= FRAMES)
        await collect(audio_receiver, lambda: len(audio_receiver.rtp) >= FRAMES)
        await asyncio.sleep(0.1)
        for receiver in receivers:
            receiver.drain()

        # on the pipe's wire: every packet, each value as sent, RID on the media and the
        # repaired RID on the packet repaired by RTX, none of the dropped ones
        lanes = {e["ssrc"]: i for i, e in enumerate(raw_video.rtp_parameters["encodings"])}
        audio_ssrc = raw_audio.rtp_parameters["encodings"][0]["ssrc"]
        assert len(wire.rtp) == video_total + FRAMES
        seen = {(lanes[s], f) for s in lanes for f in range(FRAMES)}
        for packet in wire.rtp:
            ssrc = struct.unpack_from("!I", packet, 8)[0]
            if ssrc == audio_ssrc:
                n = _seq(packet) - 7000
                expected = _audio_values(n)
                assert _by_uri(packet, audio_ids) == {u: expected[u] for u in (LEVEL, CAPTURE)}
                continue
            stream, frame = lanes[ssrc], _seq(packet) - 100
            seen.discard((stream, frame))
            expected = _video_values(stream, frame)
            if frame == GAP:
                expected[RRID] = expected.pop(RID)
            assert _by_uri(packet, video_ids) == {
                u: v for u, v in expected.items() if u not in DROPPED}, (stream, frame)
        assert not seen

        # at the far router's subscribers: the top layer's values, audio level and capture time
        video_far = _ids(video_consumer.rtp_parameters)
        assert len(video_receiver.rtp) == FRAMES
        frames = []
        for packet in video_receiver.rtp:
            values = _by_uri(packet, video_far)
            frame = int.from_bytes(values[TOFFSET], "big") // 7
            frames.append(frame)
            expected = _video_values(1, frame)
            assert {u: values.get(u) for u in (TOFFSET, ORIENTATION, CAPTURE)} == {
                u: expected[u] for u in (TOFFSET, ORIENTATION, CAPTURE)}
            assert not set(values) & {MID, RID, RRID, ABS_SEND, TCC}
        assert sorted(frames) == list(range(FRAMES))
        audio_far = _ids(audio_consumer.rtp_parameters)
        assert len(audio_receiver.rtp) == FRAMES
        for n, packet in enumerate(audio_receiver.rtp):
            values = _by_uri(packet, audio_far)
            expected = _audio_values(n)
            assert {u: values.get(u) for u in (LEVEL, CAPTURE)} == {
                u: expected[u] for u in (LEVEL, CAPTURE)}
            assert not set(values) & {MID, ABS_SEND, TCC}
        for endpoint in (video_sender, audio_sender, *receivers):
            endpoint.close()
