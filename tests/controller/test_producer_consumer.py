"""Producer and Consumer proxies: parameters, pause/resume, events, close cascades, forwarding."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from relay_controller_support import MEDIA_CODECS, running_worker, wait_until

import relay

OPUS_PARAMS = {
    "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                "parameters": {"useinbandfec": 1}}],
    "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1}],
    "encodings": [{"ssrc": 11111111}],
    "rtcp": {"cname": "sender"},
}


class Receiver:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(2048))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


async def _setup(worker, consumers: int = 1):
    router = await worker.create_router(media_codecs=MEDIA_CODECS)
    send_transport = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
    producer = await send_transport.produce(kind="audio", rtp_parameters=OPUS_PARAMS)
    receivers, consumer_list = [], []
    for _ in range(consumers):
        receiver = Receiver()
        transport = await router.create_plain_transport(listen_ip="127.0.0.1")
        await transport.connect(ip="127.0.0.1", port=receiver.port)
        consumer = await transport.consume(producer_id=producer.id,
                                           rtp_capabilities=router.rtp_capabilities)
        receivers.append(receiver)
        consumer_list.append(consumer)
    return router, send_transport, producer, consumer_list, receivers


def _rtp(seq: int, ts: int, ssrc: int = 11111111, pt: int = 111) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + b"\xab" * 160


async def test_produce_and_consume_parameters():
    async with running_worker() as worker:
        router, transport, producer, (consumer,), receivers = await _setup(worker)
        try:
            assert producer.kind == "audio" and producer.type == "simple"
            assert not producer.paused and transport.producers == [producer]
            assert producer.rtp_parameters["rtcp"]["cname"] == "sender"
            assert producer.rtp_parameters["encodings"][0]["dtx"] is False  # normalised
            assert consumer.producer_id == producer.id and consumer.kind == "audio"
            assert consumer.type == "simple"
            assert not consumer.paused and not consumer.producer_paused
            params = consumer.rtp_parameters
            assert params["codecs"][0]["payloadType"] == 100  # the router's opus PT
            assert params["codecs"][0]["parameters"] == {"useinbandfec": 1}
            assert len(params["encodings"]) == 1
            assert params["encodings"][0]["ssrc"] != 11111111
            assert params["rtcp"]["cname"] == "sender" and params["mid"] == "0"
            assert isinstance(await producer.dump(), dict)
            assert isinstance(await consumer.dump(), dict)
            assert (await producer.get_stats())[0]["type"] == "inbound-rtp"
            assert (await consumer.get_stats())[0]["type"] == "outbound-rtp"
            await consumer.request_key_frame()  # audio: accepted, nothing to do
        finally:
            for r in receivers:
                r.close()


@pytest.mark.parametrize("send_mode", ["zerocopy", "copy", "socket"])
async def test_forwarding_rewrites_ssrc_and_payload_type(send_mode):
    async with running_worker(send_mode=send_mode) as worker:
        assert (await worker.dump())["sendRing"]["mode"] == send_mode
        _, transport, producer, consumers, receivers = await _setup(worker, consumers=2)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in range(10):
                sender.sendto(_rtp(500 + i, 960 * i), ("127.0.0.1", transport.tuple["localPort"]))
            got = [[], []]

            def all_arrived() -> bool:
                for index, receiver in enumerate(receivers):
                    got[index] += receiver.drain()
                return all(len(g) == 10 for g in got)

            try:
                await wait_until(all_arrived)
            except AssertionError:
                raise AssertionError(
                    f"received {[len(g) for g in got]} of 10 each; "
                    f"producer {await producer.get_stats()}; "
                    f"consumers {[await c.get_stats() for c in consumers]}; "
                    f"ring {(await worker.dump())['sendRing']}") from None
            for consumer, packets in zip(consumers, got, strict=True):
                headers = [struct.unpack("!BBHII", p[:12]) for p in packets]
                assert {h[1] & 0x7F for h in headers} == {100}
                assert {h[4] for h in headers} == {consumer.rtp_parameters["encodings"][0]["ssrc"]}
                seqs = [h[2] for h in headers]
                assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(10)]
                assert [h[3] - headers[0][3] for h in headers] == [960 * i for i in range(10)]
        finally:
            sender.close()
            for r in receivers:
                r.close()


async def test_pause_resume_and_producer_events():
    async with running_worker() as worker:
        _, _, producer, (consumer,), receivers = await _setup(worker)
        events = []
        for name in ("producerpause", "producerresume", "producerclose", "transportclose"):
            consumer.on(name, lambda name=name: events.append(name))
        try:
            await producer.pause()
            assert producer.paused
            await wait_until(lambda: events == ["producerpause"])
            assert consumer.producer_paused
            await producer.resume()
            await wait_until(lambda: events == ["producerpause", "producerresume"])
            assert not consumer.producer_paused and not producer.paused
            await consumer.pause()
            assert consumer.paused
            await consumer.resume()
            assert not consumer.paused
            producer.close()
            await wait_until(lambda: "producerclose" in events)
            assert consumer.closed and producer.closed
            with pytest.raises(relay.InvalidStateError):
                await consumer.pause()
            with pytest.raises(relay.InvalidStateError):
                await producer.resume()
            assert events == ["producerpause", "producerresume", "producerclose"]
        finally:
            for r in receivers:
                r.close()


async def test_consume_paused_and_of_a_paused_producer():
    async with running_worker() as worker:
        router, _, producer, _, receivers = await _setup(worker, consumers=0)
        await producer.pause()
        transport = await router.create_plain_transport(listen_ip="127.0.0.1")
        consumer = await transport.consume(producer_id=producer.id, paused=True,
                                           rtp_capabilities=router.rtp_capabilities)
        assert consumer.paused and consumer.producer_paused


async def test_transport_close_emits_transportclose_on_children():
    async with running_worker() as worker:
        router, send_transport, producer, (consumer,), receivers = await _setup(worker)
        events = []
        producer.on("transportclose", lambda: events.append("producer"))
        consumer.on("transportclose", lambda: events.append("consumer"))
        consumer.on("producerclose", lambda: events.append("consumer-producerclose"))
        try:
            send_transport.close()
            await asyncio.sleep(0)
            assert events[0] == "producer" and producer.closed
            # the consumer sits on another transport: the worker tells it its producer closed
            await wait_until(lambda: "consumer-producerclose" in events)
            assert consumer.closed
            assert not router.can_consume(producer_id=producer.id,
                                          rtp_capabilities=router.rtp_capabilities)
            router.close()
            await asyncio.sleep(0.05)
            assert "consumer" not in events  # a consumer closes once, with one reason
        finally:
            for r in receivers:
                r.close()


async def test_router_close_cascades_to_consumers():
    async with running_worker() as worker:
        router, _, producer, (consumer,), receivers = await _setup(worker)
        events = []
        consumer.on("transportclose", lambda: events.append("consumer"))
        producer.on("transportclose", lambda: events.append("producer"))
        router.close()
        assert sorted(events) == ["consumer", "producer"]
        assert consumer.closed and producer.closed
        receivers[0].close()


@pytest.mark.parametrize("kwargs, error", [
    ({"kind": "data"}, relay.ArgumentError),
    ({"rtp_parameters": "x"}, relay.ArgumentError),
    ({"rtp_parameters": {"codecs": "x"}}, relay.ArgumentError),
    ({"rtp_parameters": {**OPUS_PARAMS, "encodings": []}}, relay.ArgumentError),
    ({"rtp_parameters": {**OPUS_PARAMS, "codecs": [
        {"mimeType": "audio/PCMU", "payloadType": 0, "clockRate": 8000}]}},
     relay.UnsupportedError),
    ({"rtp_parameters": {**OPUS_PARAMS, "codecs": [
        {**OPUS_PARAMS["codecs"][0], "payloadType": 300}]}}, relay.ArgumentError),
    ({"paused": "no"}, relay.ArgumentError),
])
async def test_produce_bad_arguments(kwargs, error):
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
        args = {"kind": "audio", "rtp_parameters": OPUS_PARAMS, **kwargs}
        with pytest.raises(error):
            await transport.produce(**args)
        assert transport.producers == []


async def test_duplicate_ssrc_is_rejected_by_the_worker():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
        await transport.produce(kind="audio", rtp_parameters=OPUS_PARAMS)
        with pytest.raises(relay.RelayError):
            await transport.produce(kind="audio", rtp_parameters=OPUS_PARAMS)
        assert len(transport.producers) == 1


async def test_consume_bad_arguments():
    async with running_worker() as worker:
        router, _, producer, _, _ = await _setup(worker, consumers=0)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1")
        with pytest.raises(relay.NotFoundError):
            await transport.consume(producer_id="missing",
                                    rtp_capabilities=router.rtp_capabilities)
        with pytest.raises(relay.ArgumentError):
            await transport.consume(producer_id=producer.id, rtp_capabilities="x")
        vp8_only = {"codecs": [{"mimeType": "video/VP8", "clockRate": 90000,
                                "preferredPayloadType": 96}]}
        with pytest.raises(relay.UnsupportedError):
            await transport.consume(producer_id=producer.id, rtp_capabilities=vp8_only)
        assert transport.consumers == []


async def test_worker_death_closes_every_proxy():
    import os
    import signal

    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    router, transport, producer, (consumer,), receivers = await _setup(worker)
    events = []
    router.on("workerclose", lambda: events.append("router"))
    transport.on("routerclose", lambda: events.append("transport"))
    producer.on("transportclose", lambda: events.append("producer"))
    consumer.on("transportclose", lambda: events.append("consumer"))
    died = []
    worker.on("died", died.append)
    os.kill(worker.pid, signal.SIGKILL)
    await wait_until(lambda: died)
    assert sorted(events) == ["consumer", "producer", "router", "transport"]
    assert all(x.closed for x in (router, transport, producer, consumer))
    with pytest.raises(relay.InvalidStateError):
        await producer.get_stats()
    receivers[0].close()
