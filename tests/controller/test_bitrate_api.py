"""The bitrate controls of the controller API (mediasoup's names), end to end through a worker:
the outgoing estimate's options and cap, the incoming cap, bwe trace events, consumer
priority, and bad arguments refused before anything is sent."""

from __future__ import annotations

import pytest
from relay_controller_support import MEDIA_CODECS, running_worker

import relay

LISTEN = [{"protocol": "udp", "ip": "127.0.0.1"}]


async def test_outgoing_bitrate_options_and_cap():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_webrtc_transport(
            listen_infos=LISTEN, initial_available_outgoing_bitrate=300_000,
            min_outgoing_bitrate=50_000, max_outgoing_bitrate=2_000_000)
        stats = (await transport.get_stats())[0]
        assert stats["availableOutgoingBitrate"] == 300_000
        await transport.set_max_outgoing_bitrate(200_000)
        assert (await transport.get_stats())[0]["availableOutgoingBitrate"] == 200_000
        await transport.set_max_outgoing_bitrate(None)
        await transport.enable_trace_event(["bwe"])
        await transport.enable_trace_event([])
        await transport.set_max_incoming_bitrate(1_000_000)
        feedback = (await transport.get_stats())[0]["receiveFeedback"]
        assert feedback["maxIncomingBitrate"] == 1_000_000
        default = await router.create_webrtc_transport(listen_infos=LISTEN)
        assert (await default.get_stats())[0]["availableOutgoingBitrate"] == 600_000


async def test_bad_bitrate_arguments_are_refused():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        with pytest.raises(relay.ArgumentError):
            await router.create_webrtc_transport(listen_infos=LISTEN, max_outgoing_bitrate=-1)
        with pytest.raises(relay.ArgumentError):
            await router.create_webrtc_transport(listen_infos=LISTEN,
                                                 min_outgoing_bitrate=2_000_000,
                                                 max_outgoing_bitrate=1_000_000)
        transport = await router.create_webrtc_transport(listen_infos=LISTEN)
        with pytest.raises(relay.ArgumentError):
            await transport.set_max_outgoing_bitrate("fast")  # type: ignore[arg-type]
        with pytest.raises(relay.ArgumentError):
            await transport.enable_trace_event(["rtp"])


async def test_consumer_priority():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        send = await router.create_plain_transport(listen_ip="127.0.0.1")
        recv = await router.create_plain_transport(listen_ip="127.0.0.1")
        producer = await send.produce(kind="audio", rtp_parameters={
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                        "channels": 2}],
            "encodings": [{"ssrc": 1234}]})
        consumer = await recv.consume(producer_id=producer.id,
                                      rtp_capabilities=router.rtp_capabilities)
        assert consumer.priority == 1
        await consumer.set_priority(5)
        assert consumer.priority == 5
        assert (await consumer.dump())["priority"] == 5
        with pytest.raises(relay.ArgumentError):
            await consumer.set_priority(0)
