"""ICE-TCP (aioice has none), and the bad inputs a WebRTC transport must drop and count,
with a minimal ICE + DTLS + SRTP client built from relay's engines (raw_webrtc_client.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest
from aiortc_signalling import MEDIA_CODECS
from raw_webrtc_client import RawWebRtcClient, binding_request

import relay
from relay.rtp.packet import RTP_SEQ_TS_SSRC
from relay.transport.dtls import DtlsCertificate
from relay.uring import fanout_core

UDP = {"protocol": "udp", "ip": "127.0.0.1"}
TCP = {"protocol": "tcp", "ip": "127.0.0.1"}
MID_EXT_ID = 1
PUBLISHED_SSRC = 0x11223344
PCMU_PARAMS = {
    "mid": "0",
    "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                "channels": 2, "parameters": {}, "rtcpFeedback": []}],
    "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": MID_EXT_ID}],
    "encodings": [{"ssrc": PUBLISHED_SSRC}],
    "rtcp": {"cname": "raw"},
}
CAPS = {"codecs": [{"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000,
                    "channels": 2, "preferredPayloadType": 100, "parameters": {},
                    "rtcpFeedback": []}], "headerExtensions": []}


@pytest.fixture(scope="module")
def certificate() -> DtlsCertificate:
    return DtlsCertificate.generate()


@contextlib.asynccontextmanager
async def relay_router():
    worker = await relay.create_worker(rtc_min_port=45000, rtc_max_port=45999)
    try:
        yield worker, await worker.create_router(media_codecs=MEDIA_CODECS)
    finally:
        worker.close()
        await asyncio.wait_for(worker.wait_closed(), 10)


async def connected_client(transport, certificate, protocol: str) -> RawWebRtcClient:
    client = RawWebRtcClient(certificate)
    candidate = next(c for c in transport.ice_candidates if c["protocol"] == protocol)
    await client.open(candidate)
    await transport.connect(dtls_parameters=client.dtls_parameters)
    response = await client.ice_check(transport.ice_parameters)
    assert response.message_class.name == "RESPONSE"
    await client.dtls_connect(transport.dtls_parameters)
    assert client.dtls.state == "connected"
    return client


async def wait_until(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def stats_of(transport) -> dict:
    return (await transport.get_stats())[0]


async def publish_and_receive(pub, sub, publisher_t, subscriber_t, consumer, count=20):
    for seq in range(count):
        pub.send_rtp(ssrc=0x99999999, seq=seq, payload_type=111, mid=(MID_EXT_ID, "0"))
        await pub.drain()
    await sub.wait_for(lambda: len(sub.rtp) >= count // 2)
    ssrcs = {RTP_SEQ_TS_SSRC.unpack_from(p, 2)[2] for p in sub.rtp}
    assert ssrcs == {consumer.rtp_parameters["encodings"][0]["ssrc"]}


@pytest.mark.parametrize("via_server", [False, True], ids=["own-ports", "webrtc-server"])
async def test_ice_tcp_publish_and_subscribe(certificate, via_server):
    """Over ICE-TCP, frames written in 7-byte pieces (partial reads on relay's side); the
    SSRC is unknown to relay so the stream is routed by its MID header extension."""
    async with relay_router() as (worker, router):
        if via_server:
            server = await worker.create_webrtc_server(listen_infos=[UDP, TCP])
            kwargs = {"webrtc_server": server, "enable_tcp": True, "enable_udp": False}
        else:
            kwargs = {"listen_infos": [TCP], "enable_tcp": True, "enable_udp": False}
        pub_t = await router.create_webrtc_transport(**kwargs)
        sub_t = await router.create_webrtc_transport(**kwargs)
        assert pub_t.ice_candidates[0]["tcpType"] == "passive"
        params = {**PCMU_PARAMS, "encodings": [{}]}  # no SSRC signalled: MID routing
        producer = await pub_t.produce(kind="audio", rtp_parameters=params)
        consumer = await sub_t.consume(producer_id=producer.id, rtp_capabilities=CAPS)
        pub = await connected_client(pub_t, certificate, "tcp")
        pub.chunk_size = 7
        sub = await connected_client(sub_t, certificate, "tcp")
        try:
            await publish_and_receive(pub, sub, pub_t, sub_t, consumer)
            assert pub_t.ice_selected_tuple["protocol"] == "tcp"
            assert (await stats_of(sub_t))["rtpPacketsSent"] >= 10
            # framed for ICE-TCP by the C fan-out core, like a UDP consumer's sends
            assert (await consumer.dump())["fanoutCore"] is fanout_core.ENABLED
        finally:
            pub.close()
            sub.close()


async def test_udp_mid_routing_and_restart_ice(certificate):
    async with relay_router() as (_, router):
        pub_t = await router.create_webrtc_transport(listen_infos=[UDP])
        sub_t = await router.create_webrtc_transport(listen_infos=[UDP])
        producer = await pub_t.produce(kind="audio", rtp_parameters={**PCMU_PARAMS,
                                                                      "encodings": [{}]})
        consumer = await sub_t.consume(producer_id=producer.id, rtp_capabilities=CAPS)
        pub = await connected_client(pub_t, certificate, "udp")
        sub = await connected_client(sub_t, certificate, "udp")
        try:
            await publish_and_receive(pub, sub, pub_t, sub_t, consumer)
            assert (await consumer.dump())["fanoutCore"] is fanout_core.ENABLED
            old = dict(pub_t.ice_parameters)
            new = await pub_t.restart_ice()
            assert new["usernameFragment"] != old["usernameFragment"]
            # Old credentials keep working until the peer uses the new ones.
            assert (await pub.ice_check(old)).message_class.name == "RESPONSE"
            assert (await pub.ice_check(new)).message_class.name == "RESPONSE"
        finally:
            pub.close()
            sub.close()


async def test_wrong_ice_password_gets_no_answer(certificate):
    async with relay_router() as (_, router):
        transport = await router.create_webrtc_transport(listen_infos=[UDP])
        client = RawWebRtcClient(certificate)
        await client.open(transport.ice_candidates[0])
        try:
            bad_tid = os.urandom(12)
            client.send_raw(binding_request(transport.ice_parameters, password="x" * 22,
                                            transaction_id=bad_tid))
            # A good check sent after it: its answer arrives after any answer to the bad one.
            await client.ice_check(transport.ice_parameters)
            assert [r.transaction_id for r in client.stun_responses] != [] and \
                bad_tid not in [r.transaction_id for r in client.stun_responses]
            stats = await stats_of(transport)
            assert stats["ice"]["auth_failures"] == 1
        finally:
            client.close()


async def test_media_before_ice_and_before_dtls_is_dropped(certificate):
    async with relay_router() as (_, router):
        transport = await router.create_webrtc_transport(listen_infos=[UDP])
        producer = await transport.produce(kind="audio", rtp_parameters=PCMU_PARAMS)
        address = (transport.ice_candidates[0]["address"], transport.ice_candidates[0]["port"])
        rtp = bytes([0x80, 111]) + bytes(10) + b"\x00" * 50
        dtls_hello = bytes([22, 0xFE, 0xFD]) + bytes(20)
        client = RawWebRtcClient(certificate)
        await client.open(transport.ice_candidates[0])
        try:
            client.send_raw(rtp)  # before ICE: dropped
            client.send_raw(dtls_hello)  # DTLS before ICE: dropped
            await wait_until(lambda: _dropped(transport, "dtlsNotValidated"))
            await client.ice_check(transport.ice_parameters)
            client.send_raw(rtp)  # ICE done, no DTLS yet: dropped
            await wait_until(lambda: _dropped(transport, "beforeDtls"))
            stats = await stats_of(transport)
            assert stats["dropped"]["notValidated"] == 1
            assert stats["rtpPacketsReceived"] == 0
            assert (await producer.get_stats())[0]["packetCount"] == 0
        finally:
            client.close()
        # Garbage on the port, from another socket, harms nothing and is counted.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"\x07garbage", b"", b"\x00\x01\x00\x00short",
                         b"\xff" + os.urandom(300)):
                sock.sendto(junk, address)
        await wait_until(lambda: _dropped(transport, "unknown"))
        assert (await transport.dump())["iceState"] == "completed"


async def test_truncated_and_forged_srtp_is_dropped(certificate):
    async with relay_router() as (_, router):
        transport = await router.create_webrtc_transport(listen_infos=[UDP])
        await transport.produce(kind="audio", rtp_parameters=PCMU_PARAMS)
        client = await connected_client(transport, certificate, "udp")
        try:
            client.send_raw(bytes([0x80, 111, 0, 1]))  # truncated
            client.send_raw(bytes([0x80, 111]) + os.urandom(60))  # fails authentication
            await wait_until(lambda: _dropped(transport, "srtp"))
            assert (await stats_of(transport))["dropped"]["tooShort"] == 1
            client.send_rtp(ssrc=PUBLISHED_SSRC, seq=1, payload_type=111)
            await wait_until(lambda: _received(transport))
        finally:
            client.close()


async def _dropped(transport, reason: str) -> bool:
    return (await stats_of(transport))["dropped"].get(reason, 0) > 0


async def _received(transport) -> bool:
    return (await stats_of(transport))["rtpPacketsReceived"] > 0


async def test_webrtc_server_drops_strangers_and_keeps_serving(certificate):
    """Garbage, DTLS/RTP from unknown tuples and STUN for an unknown ufrag on the shared
    ports are counted by the server and reach no transport; a connection writing a bogus
    RFC 4571 length is closed; the transport on the same ports still connects."""
    async with relay_router() as (worker, router):
        server = await worker.create_webrtc_server(listen_infos=[UDP, TCP])
        transport = await router.create_webrtc_transport(webrtc_server=server, enable_tcp=True)
        udp = next(c for c in transport.ice_candidates if c["protocol"] == "udp")
        tcp = next(c for c in transport.ice_candidates if c["protocol"] == "tcp")
        stranger = {"usernameFragment": "nobodyhere", "password": "p" * 22}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"\x07" + os.urandom(200), bytes([22]) + os.urandom(40),
                         bytes([0x80, 111]) + os.urandom(40), binding_request(stranger)):
                sock.sendto(junk, (udp["address"], udp["port"]))
        _, writer = await asyncio.open_connection(tcp["address"], tcp["port"])
        writer.write(b"\xff\xff" + os.urandom(100))  # declares a 65535-byte frame
        await writer.drain()

        async def counted() -> bool:
            dropped = (await server.dump())["dropped"]
            return dropped.get("unknownTuple", 0) >= 3 and \
                dropped.get("unknownUsernameFragment", 0) >= 1
        await wait_until(counted)
        writer.close()
        client = await connected_client(transport, certificate, "udp")
        try:
            async def dtls_connected() -> bool:  # the controller hears it a bit later
                return transport.dtls_state == "connected"
            await wait_until(dtls_connected)
            assert not (await stats_of(transport))["dropped"]
        finally:
            client.close()
