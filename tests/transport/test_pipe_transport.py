"""Pipe transports between two workers on 127.0.0.1: a plain-transport producer on router A
piped to router B, counted at a consumer on B: audio and 3-encoding simulcast video, with
and without SRTP; packets from strangers are dropped."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pipe_support import (
    OPUS_PT,
    VP8_DELTA,
    VP8_KEY,
    VP8_PT,
    Endpoint,
    collect_all,
    egress,
    ingress,
    opus_parameters,
    rtp,
    run,
    send_paced,
    two_workers,
    vp8_parameters,
)

AUDIO_PACKETS = 300
SIMULCAST_SSRCS = [2001, 2002, 2003]
FRAMES = 150  # per simulcast stream


def _seqs(packets: list[bytes]) -> list[int]:
    return [struct.unpack_from("!H", p, 2)[0] for p in packets]


@pytest.mark.parametrize("srtp", [False, True], ids=["plain", "srtp"])
def test_pipe_forwards_audio_and_every_simulcast_stream(srtp):
    run(_audio_and_simulcast(srtp))


async def _audio_and_simulcast(srtp: bool) -> None:
    async with two_workers() as (router_a, router_b):
        # audio: one stream, every packet crosses, payloads unchanged
        _, audio, audio_sender, audio_address = await ingress(router_a, "audio", opus_parameters())
        piped = await router_a.pipe_to_router(producer_id=audio.id, router=router_b,
                                              enable_srtp=srtp)
        pipe_a = next(t for t in router_a.transports if type(t).__name__ == "PipeTransport")
        pipe_b = next(t for t in router_b.transports if type(t).__name__ == "PipeTransport")
        assert (pipe_a.srtp_parameters is not None) is srtp
        if srtp:
            assert pipe_a.srtp_parameters["cryptoSuite"] == "AEAD_AES_256_GCM"
            assert pipe_a.srtp_parameters["keyBase64"] != pipe_b.srtp_parameters["keyBase64"]
        assert pipe_a.tuple["remotePort"] == pipe_b.tuple["localPort"]
        assert piped.pipe_producer.id == audio.id and piped.pipe_consumer.type == "pipe"
        uris = {e["uri"] for e in piped.pipe_consumer.rtp_parameters["headerExtensions"]}
        assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" in uris
        assert not uris & {"urn:ietf:params:rtp-hdrext:sdes:mid",
                           "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                           "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc"
                           "-extensions-01"}
        _, audio_consumer, audio_receiver = await egress(router_b, audio.id)
        packets = [rtp(1000 + i, i * 960, 11111111, OPUS_PT, bytes([i & 0xFF]) * 160)
                   for i in range(AUDIO_PACKETS)]
        await send_paced(audio_sender, audio_address, packets, (audio_receiver,))
        await collect_all(audio_receiver, AUDIO_PACKETS)
        assert len(audio_receiver.rtp) == AUDIO_PACKETS
        assert [p[12:] for p in audio_receiver.rtp] == [p[12:] for p in packets]
        seqs = _seqs(audio_receiver.rtp)
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(AUDIO_PACKETS)]
        assert set(audio_receiver.ssrc_counts()) == {audio_consumer.rtp_parameters["encodings"][0]["ssrc"]}

        # simulcast: 3 encodings, each its own SSRC across the pipe, all of them counted
        _, video, video_sender, video_address = await ingress(
            router_a, "video", vp8_parameters(SIMULCAST_SSRCS))
        piped_video = await router_a.pipe_to_router(producer_id=video.id, router=router_b,
                                                    enable_srtp=srtp)
        assert len([t for t in router_a.transports if type(t).__name__ == "PipeTransport"]) == 1
        pipe_ssrcs = [e["ssrc"] for e in piped_video.pipe_consumer.rtp_parameters["encodings"]]
        assert len(set(pipe_ssrcs)) == 3 and not set(pipe_ssrcs) & set(SIMULCAST_SSRCS)
        _, video_consumer, video_receiver = await egress(router_b, video.id)
        assert video_consumer.type == "simulcast"
        video_packets = [
            rtp(500 + frame, frame * 3000, ssrc, VP8_PT, VP8_KEY if frame == 0 else VP8_DELTA)
            for frame in range(FRAMES) for ssrc in SIMULCAST_SSRCS]
        await send_paced(video_sender, video_address, video_packets, (video_receiver,),
                         interval=0.0005)
        await collect_all(video_receiver, FRAMES)
        stats_b = await piped_video.pipe_producer.get_stats()
        assert [s["ssrc"] for s in stats_b] == pipe_ssrcs
        assert [s["packetsReceived"] for s in stats_b] == [FRAMES] * 3
        stats_a = await piped_video.pipe_consumer.get_stats()
        assert [s["packetCount"] for s in stats_a] == [FRAMES] * 3
        # the subscriber on B gets the top layer, every packet of it
        assert len(video_receiver.rtp) == FRAMES
        assert video_consumer.current_layers == {"spatialLayer": 2, "temporalLayer": None}

        transport_stats = (await pipe_a.get_stats())[0]
        assert transport_stats["type"] == "pipe-transport"
        assert transport_stats["rtpPacketsSent"] == AUDIO_PACKETS + 3 * FRAMES
        received = (await pipe_b.get_stats())[0]
        assert received["rtpPacketsReceived"] == AUDIO_PACKETS + 3 * FRAMES
        assert ("srtpRecv" in received) is srtp
        # nothing dropped (SDES chunks of the SR compounds are "rtcpIgnored")
        assert set(received["dropped"]) <= {"rtcpIgnored"}
        for endpoint in (audio_sender, audio_receiver, video_sender, video_receiver):
            endpoint.close()


def test_pipe_transport_takes_packets_only_from_its_remote():
    run(_stranger())


async def _stranger() -> None:
    async with two_workers() as (router_a, router_b):
        _, audio, sender, address = await ingress(router_a, "audio", opus_parameters())
        await router_a.pipe_to_router(producer_id=audio.id, router=router_b)
        pipe_b = next(t for t in router_b.transports if type(t).__name__ == "PipeTransport")
        _, consumer, receiver = await egress(router_b, audio.id)
        pipe_ssrc = (await router_b.transports[0].dump())["mapSsrcProducerId"]
        stranger = Endpoint()
        for i in range(20):  # a packet of the right SSRC, from the wrong address
            stranger.send(rtp(i, i * 960, int(next(iter(pipe_ssrc))), OPUS_PT),
                          ("127.0.0.1", pipe_b.tuple["localPort"]))
        await asyncio.sleep(0.2)
        receiver.drain()
        assert receiver.rtp == []
        stats = (await pipe_b.get_stats())[0]
        assert stats["dropped"] == {"notFromRemote": 20}
        assert stats["rtpPacketsReceived"] == 0
        for endpoint in (stranger, sender, receiver):
            endpoint.close()
