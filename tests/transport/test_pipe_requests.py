"""Malformed pipe-transport requests get error responses naming what was wrong; the worker
keeps serving."""

from __future__ import annotations

import pytest
from pipe_support import ingress, opus_parameters, run, two_workers

import relay
from worker_proto.methods import ConsumerMethod, RouterMethod, TransportMethod

GOOD_LISTEN = {"protocol": "udp", "ip": "127.0.0.1", "announcedAddress": None, "port": None}


def test_malformed_pipe_requests_are_rejected():
    run(_malformed())


async def _expect(channel, method, handler_id, data, error, words):
    with pytest.raises(error) as info:
        await channel.request(method, handler_id, data)
    assert words in str(info.value), (method, data, str(info.value))


async def _malformed() -> None:
    async with two_workers() as (router_a, router_b):
        channel = router_a._channel
        create = RouterMethod.CREATE_PIPE_TRANSPORT
        for data, error, words in [
            ({"listenInfo": GOOD_LISTEN}, relay.ArgumentError, "transportId"),
            ({"transportId": "t"}, relay.ArgumentError, "listenInfo"),
            ({"transportId": "t", "listenInfo": "127.0.0.1"}, relay.ArgumentError, "listenInfo"),
            ({"transportId": "t", "listenInfo": {**GOOD_LISTEN, "ip": "localhost"}},
             relay.ArgumentError, "listenInfo.ip"),
            ({"transportId": "t", "listenInfo": {**GOOD_LISTEN, "ip": 7}},
             relay.ArgumentError, "listenInfo.ip"),
            ({"transportId": "t", "listenInfo": {**GOOD_LISTEN, "protocol": "tcp"}},
             relay.UnsupportedError, "protocol"),
            ({"transportId": "t", "listenInfo": {**GOOD_LISTEN, "port": 70000}},
             relay.ArgumentError, "listenInfo.port"),
            ({"transportId": "t", "listenInfo": {**GOOD_LISTEN, "announcedAddress": 5}},
             relay.ArgumentError, "announcedAddress"),
            ({"transportId": "t", "listenInfo": GOOD_LISTEN, "enableSrtp": "yes"},
             relay.ArgumentError, "enableSrtp"),
            ({"transportId": "t", "listenInfo": GOOD_LISTEN, "enableRtx": 1},
             relay.ArgumentError, "enableRtx"),
            ({"transportId": "x" * 300, "listenInfo": GOOD_LISTEN}, relay.ArgumentError,
             "transportId"),
        ]:
            await _expect(channel, create, router_a.id, data, error, words)
        await _expect(channel, create, router_a.id, None, relay.ArgumentError, "transportId")

        plain = await router_a.create_pipe_transport()
        srtp = await router_a.create_pipe_transport(enable_srtp=True)
        key = srtp.srtp_parameters["keyBase64"]
        connect = TransportMethod.CONNECT
        for transport, data, error, words in [
            (plain, {"port": 5000}, relay.ArgumentError, "ip"),
            (plain, {"ip": "127.0.0.1"}, relay.ArgumentError, "port"),
            (plain, {"ip": "127.0.0.1", "port": 0}, relay.ArgumentError, "port"),
            (plain, {"ip": "::1", "port": 5000}, relay.ArgumentError, "family"),
            (plain, {"ip": "127.0.0.1", "port": 5000,
                     "srtpParameters": {"cryptoSuite": "AEAD_AES_256_GCM", "keyBase64": key}},
             relay.ArgumentError, "not enabled"),
            (srtp, {"ip": "127.0.0.1", "port": 5000}, relay.ArgumentError, "required"),
            (srtp, {"ip": "127.0.0.1", "port": 5000, "srtpParameters": []},
             relay.ArgumentError, "srtpParameters"),
            (srtp, {"ip": "127.0.0.1", "port": 5000,
                    "srtpParameters": {"cryptoSuite": "AES_CM_128_HMAC_SHA1_80",
                                       "keyBase64": key}},
             relay.UnsupportedError, "AEAD_AES_256_GCM"),
            (srtp, {"ip": "127.0.0.1", "port": 5000,
                    "srtpParameters": {"cryptoSuite": "AEAD_AES_256_GCM", "keyBase64": "abc"}},
             relay.ArgumentError, "keyBase64"),
            (srtp, {"ip": "127.0.0.1", "port": 5000,
                    "srtpParameters": {"cryptoSuite": "AEAD_AES_256_GCM", "keyBase64": None}},
             relay.ArgumentError, "keyBase64"),
        ]:
            await _expect(channel, connect, transport.id, data, error, words)
        await plain.connect(ip="127.0.0.1", port=5000)
        await _expect(channel, connect, plain.id, {"ip": "127.0.0.1", "port": 5001},
                      relay.InvalidStateError, "already")
        with pytest.raises(relay.ArgumentError):  # the controller checks too
            await srtp.connect(ip="127.0.0.1", port=5000,
                               srtp_parameters={"cryptoSuite": "AES_CM_128_HMAC_SHA1_80",
                                                "keyBase64": key})
        with pytest.raises(relay.ArgumentError):
            await router_a.create_pipe_transport(listen_info={"ip": "127.0.0.1",
                                                              "protocol": "tcp"})

        # consumers: a pipe transport takes "pipe" consumers only, and only it takes them
        plain_transport, producer, sender, _ = await ingress(router_a, "audio", opus_parameters())
        pipe_consumer = await plain.consume(producer_id=producer.id)
        good = {"consumerId": "c", "producerId": producer.id, "kind": "audio",
                "rtpParameters": pipe_consumer.rtp_parameters, "type": "pipe",
                "consumableRtpEncodings": producer.consumable_rtp_parameters["encodings"]}
        consume = TransportMethod.CONSUME
        for transport, data, error, words in [
            (plain, {**good, "type": "simple"}, relay.ArgumentError, "pipe"),
            (plain_transport, good, relay.ArgumentError, "pipe transport"),
            (plain, {**good, "consumableRtpEncodings": []}, relay.ArgumentError,
             "consumableRtpEncodings"),
            (plain, {**good, "consumableRtpEncodings": [{"ssrc": 1}]}, relay.ArgumentError,
             "ssrc"),
            (plain, {**good, "rtpParameters": {**good["rtpParameters"], "encodings": [{}]}},
             relay.ArgumentError, "ssrc"),
            (plain, {**good, "kind": "video"}, relay.ArgumentError, "kind"),
            (plain, {**good, "producerId": "nope"}, relay.ArgumentError, "producer"),
            (plain, {**good, "consumerId": pipe_consumer.id}, relay.ArgumentError, "exists"),
        ]:
            await _expect(channel, consume, transport.id, data, error, words)
        for method, data in ((ConsumerMethod.SET_PREFERRED_LAYERS, {"spatialLayer": 0}),
                             (ConsumerMethod.SET_PRIORITY, {"priority": 2})):
            await _expect(channel, method, pipe_consumer.id, data, relay.UnsupportedError,
                          "pipe consumer")

        # the worker still serves, and the pipe consumer still works
        assert len(await pipe_consumer.get_stats()) == 1
        dump = await plain.dump()
        assert dump["consumerIds"] == [pipe_consumer.id] and dump["connected"] is True
        sender.close()
