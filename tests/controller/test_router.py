"""Router: creation, capabilities, dump, close, events, bad arguments, calls after close."""

from __future__ import annotations

import asyncio

import pytest
from relay_controller_support import MEDIA_CODECS, OPUS, running_worker

import relay


async def test_create_router_capabilities_and_dump():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS, app_data={"room": 1})
        assert router.app_data == {"room": 1}
        assert worker.routers == [router] and not router.closed
        codecs = router.rtp_capabilities["codecs"]
        assert [(c["mimeType"], c["preferredPayloadType"]) for c in codecs] == [
            ("audio/opus", 100), ("video/VP8", 101), ("video/rtx", 102)]
        assert codecs[2]["parameters"] == {"apt": 101}
        assert router.rtp_capabilities["headerExtensions"]
        assert (await worker.dump())["routerIds"] == [router.id]
        dump = await router.dump()
        assert isinstance(dump, dict)


@pytest.mark.parametrize("media_codecs, error", [
    ([{"kind": "audio", "mimeType": "audio/nope", "clockRate": 48000}], relay.UnsupportedError),
    ([{"kind": "audio", "mimeType": "opus", "clockRate": 48000}], relay.ArgumentError),
    ([{"kind": "audio", "mimeType": "audio/opus"}], relay.ArgumentError),
    ("opus", relay.ArgumentError),
    ([{**OPUS, "preferredPayloadType": 100}, {"mimeType": "video/VP8", "clockRate": 90000,
                                              "preferredPayloadType": 100}],
     relay.ArgumentError),
])
async def test_create_router_bad_media_codecs(media_codecs, error):
    async with running_worker() as worker:
        with pytest.raises(error):
            await worker.create_router(media_codecs=media_codecs)
        assert worker.routers == []
        assert (await worker.dump())["routerIds"] == []


async def test_router_close_is_idempotent_and_reaches_the_worker():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        router.close()
        router.close()
        assert router.closed and worker.routers == []
        assert (await worker.dump())["routerIds"] == []
        with pytest.raises(relay.InvalidStateError):
            await router.dump()
        with pytest.raises(relay.InvalidStateError):
            await router.create_plain_transport(listen_ip="127.0.0.1")


async def test_worker_close_emits_workerclose_once():
    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    events = []
    router.on("workerclose", lambda: events.append("workerclose"))
    worker.close()
    await asyncio.sleep(0)
    assert events == ["workerclose"] and router.closed
    router.close()  # harmless
    assert events == ["workerclose"]
    await worker.wait_closed()


async def test_router_ids_are_unique_and_independent():
    async with running_worker() as worker:
        a = await worker.create_router(media_codecs=[OPUS])
        b = await worker.create_router(media_codecs=MEDIA_CODECS)
        assert a.id != b.id
        a.close()
        assert (await worker.dump())["routerIds"] == [b.id]
        assert (await b.dump()) is not None


async def test_can_consume():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
        producer = await transport.produce(kind="audio", rtp_parameters={
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                        "channels": 2}],
            "encodings": [{"ssrc": 1234}]})
        assert router.can_consume(producer_id=producer.id,
                                  rtp_capabilities=router.rtp_capabilities)
        vp8_only = {"codecs": [{"kind": "video", "mimeType": "video/VP8", "clockRate": 90000,
                                "preferredPayloadType": 96}]}
        assert not router.can_consume(producer_id=producer.id, rtp_capabilities=vp8_only)
        assert not router.can_consume(producer_id="nope",
                                      rtp_capabilities=router.rtp_capabilities)
        assert not router.can_consume(producer_id=producer.id, rtp_capabilities="bad")
