"""aiortc publisher → relay (WebRTC transports) → aiortc subscriber, with 5 % loss (a seeded,
repeatable pattern) on the subscriber's leg through a UDP proxy in the ICE path: aiortc NACKs,
relay answers with RTX from its store, and the subscriber decodes every frame (consecutive
timestamps, no frame skipped)."""

from __future__ import annotations

import asyncio
import random
import re
import sys
from pathlib import Path

import aioice.ice

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "webrtc"))

from aiortc import RTCSessionDescription  # noqa: E402
from aiortc_signalling import (  # noqa: E402
    AIORTC_RTP_CAPABILITIES,
    answer_dtls_parameters,
    subscribe_offer,
)
from lossy_proxy import LossyProxy, is_rtcp  # noqa: E402
from test_webrtc_aiortc import peer, publish, relay_router  # noqa: E402

UDP = [{"protocol": "udp", "ip": "127.0.0.1"}]
LOSS = 0.05
FRAMES = 60


def media_ssrc_first(sdp: str, encoding: dict) -> str:
    """aiortc takes the first a=ssrc line as the media SSRC and the second as its RTX
    (aiortc 1.16, RTCPeerConnection.__remoteRtp); aiortc_signalling lists RTX first."""
    media = f"a=ssrc:{encoding['ssrc']} "
    rtx = f"a=ssrc:{encoding['rtx']['ssrc']} "
    lines = sdp.split("\r\n")
    i = next(n for n, line in enumerate(lines) if line.startswith(rtx))
    j = next(n for n, line in enumerate(lines) if line.startswith(media))
    if i < j:
        lines[i], lines[j] = lines[j], lines[i]
    return "\r\n".join(lines)


def test_subscriber_decodes_every_frame_with_5_percent_loss(monkeypatch):
    # aioice never offers 127.0.0.1 by itself; the test must stay on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    asyncio.run(asyncio.wait_for(_lossy_subscriber(), 40))


async def _lossy_subscriber():
    loop = asyncio.get_running_loop()
    async with relay_router() as (_worker, router):
        pub_pc, _pub_t, producers = await publish(router, "client", listen_infos=UDP)
        video_producer = next(p for p in producers if p.kind == "video")
        transport = await router.create_webrtc_transport(listen_infos=UDP)
        consumer = await transport.consume(producer_id=video_producer.id,
                                           rtp_capabilities=AIORTC_RTP_CAPABILITIES)
        media_pt = consumer.rtp_parameters["codecs"][0]["payloadType"]
        assert consumer.rtp_parameters["encodings"][0].get("rtx")  # negotiated by default
        rng = random.Random(5)

        def lose(packet: bytes) -> bool:
            is_rtp = len(packet) > 12 and packet[0] >> 6 == 2 and not is_rtcp(packet)
            return is_rtp and packet[1] & 0x7F == media_pt and rng.random() < LOSS

        relay_port = transport.ice_candidates[0]["port"]
        proxy = LossyProxy(loop, None, ("127.0.0.1", relay_port), drop_down=lose)
        # The subscriber reaches relay only through the proxy: its candidate is the proxy's.
        offer = re.sub(rf"127\.0\.0\.1 {relay_port} typ host",
                       f"127.0.0.1 {proxy.outer_address[1]} typ host",
                       subscribe_offer(transport, [consumer]))
        offer = media_ssrc_first(offer, consumer.rtp_parameters["encodings"][0])
        sub_pc = peer()
        tracks: dict = {}
        sub_pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        try:
            await sub_pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await sub_pc.setLocalDescription(await sub_pc.createAnswer())
            await transport.connect(
                dtls_parameters=answer_dtls_parameters(sub_pc.localDescription.sdp))
            track = tracks["video"]
            frames = [await asyncio.wait_for(track.recv(), 15) for _ in range(FRAMES)]
        finally:
            await sub_pc.close()
            await pub_pc.close()
            proxy.close()
        stamps = [f.pts for f in frames]
        steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        # 30 fps at 90 kHz (aiortc rounds each frame's time: 2999..3001); a skipped frame
        # would show as a step of ~6000
        assert all(2990 <= step <= 3010 for step in steps), f"frames skipped: {steps}"
        dropped = len(proxy.dropped_down)
        assert dropped >= 3  # the loss really happened
        stats = (await consumer.get_stats())[0]
        assert stats["nackCount"] >= 1
        assert stats["retransmittedPackets"] >= dropped - 2  # the last drops may be unasked yet
