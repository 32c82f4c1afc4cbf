"""End to end with aiortc: an RTCPeerConnection publishes audio (Opus) and video (VP8) to a
relay WebRTC transport; another subscribes through relay and decodes frames. The tests do
the signalling a mediasoup-client app does (see aiortc_signalling.py)."""

from __future__ import annotations

import asyncio
import contextlib

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc_signalling import (
    AIORTC_RTP_CAPABILITIES,
    MEDIA_CODECS,
    answer_dtls_parameters,
    offer_dtls_parameters,
    producer_parameters,
    publish_answer,
    subscribe_offer,
)

import relay

UDP = [{"protocol": "udp", "ip": "127.0.0.1"}]


@contextlib.asynccontextmanager
async def relay_router():
    worker = await relay.create_worker(rtc_min_port=44000, rtc_max_port=44999)
    try:
        yield worker, await worker.create_router(media_codecs=MEDIA_CODECS)
    finally:
        worker.close()
        await asyncio.wait_for(worker.wait_closed(), 10)


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def publish(router, relay_role: str, **transport_kwargs):
    transport = await router.create_webrtc_transport(**transport_kwargs)
    pc = peer()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await transport.connect(dtls_parameters=offer_dtls_parameters(offer, relay_role))
    produced = producer_parameters(offer)
    producers = [await transport.produce(kind=kind, rtp_parameters=params)
                 for kind, params in produced]
    await pc.setRemoteDescription(RTCSessionDescription(
        publish_answer(transport, produced, relay_role), "answer"))
    return pc, transport, producers


async def subscribe(router, producers, **transport_kwargs):
    transport = await router.create_webrtc_transport(**transport_kwargs)
    consumers = [await transport.consume(producer_id=p.id,
                                         rtp_capabilities=AIORTC_RTP_CAPABILITIES)
                 for p in producers]
    pc = peer()
    tracks: dict[str, object] = {}
    pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
    await pc.setRemoteDescription(RTCSessionDescription(subscribe_offer(transport, consumers),
                                                        "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await transport.connect(dtls_parameters=answer_dtls_parameters(pc.localDescription.sdp))
    return pc, transport, consumers, tracks


async def decoded_frames(track, count: int) -> list:
    return [await asyncio.wait_for(track.recv(), 15) for _ in range(count)]


async def run_publish_subscribe(router, relay_role: str, **transport_kwargs):
    """Publisher → relay → subscriber; returns both transports once frames were decoded."""
    pub_pc, pub_t, producers = await publish(router, relay_role, **transport_kwargs)
    sub_pc, sub_t, consumers, tracks = await subscribe(router, producers, **transport_kwargs)
    try:
        assert set(tracks) == {"audio", "video"}
        video = await decoded_frames(tracks["video"], 5)
        audio = await decoded_frames(tracks["audio"], 5)
        assert all(f.width == 640 and f.height == 480 for f in video)
        assert all(f.sample_rate == 48000 for f in audio)
        assert pub_t.ice_state in ("connected", "completed")
        assert pub_t.dtls_state == "connected" and sub_t.dtls_state == "connected"
        assert pub_t.dtls_remote_cert.startswith("-----BEGIN CERTIFICATE-----")
        assert pub_t.ice_selected_tuple["protocol"] == "udp"
        assert pub_t.dtls_parameters["role"] == relay_role
        assert sub_t.dtls_parameters["role"] == "server"  # aiortc answers a=setup:active
        pub_stats = (await pub_t.get_stats())[0]
        assert pub_stats["rtpPacketsReceived"] > 0
        assert pub_stats["srtpRecv"]["packets"] > 0 and not pub_stats["srtpRecv"]["failures"]
        assert (await sub_t.get_stats())[0]["rtpPacketsSent"] > 0
        return pub_t, sub_t
    finally:
        await pub_pc.close()
        await sub_pc.close()


async def test_udp_relay_dtls_client_then_server():
    """Publisher side: relay is the DTLS client; subscriber side: relay is the server
    (aiortc answers setup:active)."""
    async with relay_router() as (_, router):
        await run_publish_subscribe(router, "client", listen_infos=UDP)


async def test_udp_relay_dtls_server_on_publish():
    async with relay_router() as (_, router):
        await run_publish_subscribe(router, "server", listen_infos=UDP)


async def test_through_a_webrtc_server():
    async with relay_router() as (worker, router):
        server = await worker.create_webrtc_server(listen_infos=UDP)
        pub_t, sub_t = await run_publish_subscribe(router, "client", webrtc_server=server)
        port = server.udp_sockets[0]["port"]
        assert pub_t.ice_candidates[0]["port"] == sub_t.ice_candidates[0]["port"] == port
        dump = await server.dump()
        assert sorted(dump["webRtcTransportIds"]) == sorted([pub_t.id, sub_t.id])
        server.close()
        assert pub_t.closed and sub_t.closed


async def test_events_and_wrong_fingerprint_fails_dtls():
    async with relay_router() as (_, router):
        transport = await router.create_webrtc_transport(listen_infos=UDP)
        seen: dict[str, list] = {"ice": [], "tuple": [], "dtls": []}
        transport.on("icestatechange", seen["ice"].append)
        transport.on("iceselectedtuplechange", seen["tuple"].append)
        transport.on("dtlsstatechange", seen["dtls"].append)
        pc = peer()
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        wrong = offer_dtls_parameters(offer, "client")
        wrong["fingerprints"] = [{"algorithm": "sha-256", "value": ":".join(["AB"] * 32)}]
        await transport.connect(dtls_parameters=wrong)
        produced = producer_parameters(offer)
        producers = [await transport.produce(kind=k, rtp_parameters=p) for k, p in produced]
        await pc.setRemoteDescription(RTCSessionDescription(
            publish_answer(transport, produced, "client"), "answer"))
        try:
            for _ in range(500):
                if transport.dtls_state == "failed":
                    break
                await asyncio.sleep(0.02)
            assert transport.dtls_state == "failed"
            assert "connected" in seen["ice"] or "completed" in seen["ice"]
            assert seen["tuple"] and seen["tuple"][0]["remoteIp"] == "127.0.0.1"
            assert seen["dtls"][:1] == ["connecting"] and seen["dtls"][-1] == "failed"
            stats = (await producers[1].get_stats())[0]
            assert stats["packetCount"] == 0  # no media without DTLS
        finally:
            await pc.close()
