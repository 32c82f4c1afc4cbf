"""PlainTransport proxy: creation, tuples, connect, comedia, close and events, bad args."""

from __future__ import annotations

import asyncio
import socket

import pytest
from relay_controller_support import MEDIA_CODECS, running_worker, wait_until

import relay


async def test_create_plain_transport_tuple_and_ports():
    async with running_worker(rtc_min_port=41500, rtc_max_port=41599) as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1", rtcp_mux=False,
                                                        app_data="x")
        assert transport.app_data == "x" and router.transports == [transport]
        assert transport.tuple["localIp"] == "127.0.0.1"
        assert transport.tuple["protocol"] == "udp"
        assert 41500 <= transport.tuple["localPort"] <= 41599
        assert transport.rtcp_tuple is not None
        assert transport.rtcp_tuple["localPort"] != transport.tuple["localPort"]
        assert transport.srtp_parameters is None
        assert isinstance(await transport.dump(), dict)
        stats = await transport.get_stats()
        assert stats and stats[0]["type"] == "plain-rtp-transport"


async def test_srtp_transport_exposes_its_key():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(
            listen_ip="127.0.0.1", enable_srtp=True,
            srtp_crypto_suite="AES_CM_128_HMAC_SHA1_80")
        params = transport.srtp_parameters
        assert params["cryptoSuite"] == "AES_CM_128_HMAC_SHA1_80"
        assert isinstance(params["keyBase64"], str) and params["keyBase64"]


@pytest.mark.parametrize("kwargs, error", [
    ({"listen_ip": "not-an-ip"}, relay.ArgumentError),
    ({"listen_ip": 127}, relay.ArgumentError),
    ({"port": 0}, relay.ArgumentError),
    ({"port": "4000"}, relay.ArgumentError),
    ({"rtcp_mux": 1}, relay.ArgumentError),
    ({"comedia": "yes"}, relay.ArgumentError),
    ({"enable_srtp": True, "srtp_crypto_suite": "ROT13"}, relay.ArgumentError),
])
async def test_create_plain_transport_bad_arguments(kwargs, error):
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        kwargs.setdefault("listen_ip", "127.0.0.1")
        with pytest.raises(error):
            await router.create_plain_transport(**kwargs)
        assert router.transports == []


async def test_port_range_exhaustion_is_a_clear_error():
    async with running_worker(rtc_min_port=41700, rtc_max_port=41701) as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        held = []
        with pytest.raises(relay.ResourceExhaustedError):
            for _ in range(3):
                held.append(await router.create_plain_transport(listen_ip="127.0.0.1"))
        assert len(held) <= 2
        held[0].close()
        await router.create_plain_transport(listen_ip="127.0.0.1")  # the port came back


async def test_connect_sets_the_remote_and_validates():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1")
        await transport.connect(ip="127.0.0.1", port=45678)
        assert transport.tuple["remoteIp"] == "127.0.0.1"
        assert transport.tuple["remotePort"] == 45678
        for bad in ({"ip": "x", "port": 1}, {"ip": "127.0.0.1", "port": 70000},
                    {"ip": "127.0.0.1", "port": 1, "srtp_parameters": {"cryptoSuite": "x"}}):
            with pytest.raises(relay.ArgumentError):
                await transport.connect(**bad)


async def test_comedia_learns_the_remote_and_emits_tuple():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        transport = await router.create_plain_transport(listen_ip="127.0.0.1", comedia=True)
        await transport.produce(kind="audio", rtp_parameters={
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                        "channels": 2}],
            "encodings": [{"ssrc": 777}]})
        tuples = []
        transport.on("tuple", tuples.append)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        sender_port = sender.getsockname()[1]
        try:
            rtp = bytes([0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0x03, 0x09]) + b"\x00" * 40
            sender.sendto(rtp, ("127.0.0.1", transport.tuple["localPort"]))
            await wait_until(lambda: tuples)
        finally:
            sender.close()
        assert tuples[0]["remotePort"] == sender_port
        assert transport.tuple == tuples[0] and transport.tuple["remoteIp"] == "127.0.0.1"


async def test_close_and_routerclose_events():
    async with running_worker() as worker:
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        a = await router.create_plain_transport(listen_ip="127.0.0.1")
        b = await router.create_plain_transport(listen_ip="127.0.0.1")
        events = []
        a.on("routerclose", lambda: events.append("a"))
        b.on("routerclose", lambda: events.append("b"))
        a.close()
        assert a.closed and router.transports == [b]
        with pytest.raises(relay.InvalidStateError):
            await a.get_stats()
        with pytest.raises(relay.InvalidStateError):
            await a.connect(ip="127.0.0.1", port=5000)
        router.close()
        await asyncio.sleep(0)
        assert events == ["b"] and b.closed
        assert (await worker.dump())["handlerIds"] == []
