"""Router / PlainTransport / Producer / Consumer requests in-process: registration in
ctx.handlers, close cascades and their notifications, bad arguments, calls after close."""

from __future__ import annotations

import copy

import pytest
from media_harness import MAPPED_SSRC, OPUS

from relay.worker.router import Router
from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    UnknownMethodError,
    UnsupportedError,
)


async def topology(media):
    media.router()
    media.transport("tp")
    media.transport("tc")
    media.produce("tp")
    media.consume("tc", "c1", ssrc=1)
    media.consume("tp", "c2", ssrc=2)  # a consumer on the producer's own transport


def test_router_registers_children_and_dumps(run_media):
    async def body(media):
        await topology(media)
        assert set(media.ctx.handlers) == {"r1", "tp", "tc", "p1", "c1", "c2"}
        dump = media.request("r1", "router.dump")
        assert dump["transportIds"] == ["tp", "tc"]
        assert dump["mapProducerIdConsumerIds"] == {"p1": ["c1", "c2"]}
        assert dump["mapConsumerIdProducerId"] == {"c1": "p1", "c2": "p1"}
        assert media.request("p1", "producer.dump")["rtpMapping"]["encodings"] == [
            {"ssrc": 1111, "mappedSsrc": MAPPED_SSRC}]
        assert media.request("c1", "consumer.dump")["producerId"] == "p1"
        assert media.request("tp", "transport.dump")["producerIds"] == ["p1"]

    run_media(body)


def test_producer_close_closes_consumers_with_notification(run_media):
    async def body(media):
        await topology(media)
        media.request("p1", "producer.close")
        assert set(media.ctx.handlers) == {"r1", "tp", "tc"}
        assert sorted(media.notifications) == [("c1", "producerclose", None),
                                               ("c2", "producerclose", None)]
        assert media.request("r1", "router.dump")["mapProducerIdConsumerIds"] == {}

    run_media(body)


def test_transport_close_cascades_and_releases_ports(run_media):
    async def body(media):
        await topology(media)
        port = media.request("tp", "transport.dump")["tuple"]["localPort"]
        media.request("tp", "transport.close")
        # c2 (on tp) closes silently; c1 (elsewhere) hears its producer closed
        assert media.notifications == [("c1", "producerclose", None)]
        assert set(media.ctx.handlers) == {"r1", "tc"}
        assert port not in media.ctx.ports.in_use

    run_media(body)


def test_router_close_closes_everything(run_media):
    async def body(media):
        await topology(media)
        router = media.ctx.handlers["r1"]
        media.request("r1", "router.close")
        assert media.ctx.handlers == {}
        assert media.ctx.ports.in_use == frozenset()
        with pytest.raises(InvalidStateError):
            router.handle_request("router.dump", {})

    run_media(body)


def test_calls_after_close_and_unknown_methods(run_media):
    async def body(media):
        await topology(media)
        handlers = dict(media.ctx.handlers)
        media.request("c1", "consumer.close")
        media.request("r1", "router.close")
        for handler_id, method in [("r1", "router.dump"), ("tp", "transport.getStats"),
                                   ("p1", "producer.pause"), ("c1", "consumer.resume"),
                                   ("c2", "consumer.dump")]:
            with pytest.raises(InvalidStateError):
                handlers[handler_id].handle_request(method, {})
        media.router("r2")
        media.transport("t9", router_id="r2")
        for handler_id, method in [("r2", "router.nope"), ("t9", "producer.pause")]:
            with pytest.raises(UnknownMethodError):
                media.request(handler_id, method)

    run_media(body)


def test_pause_resume_requests_and_states(run_media):
    async def body(media):
        await topology(media)
        assert media.consume("tc", "c3", ssrc=3, paused=True) == {"paused": True, "producerPaused": False}
        media.request("p1", "producer.pause")
        assert media.consume("tc", "c4", ssrc=4) == {"paused": False, "producerPaused": True}
        media.request("c1", "consumer.pause")
        media.request("c1", "consumer.pause")  # idempotent
        assert media.request("c1", "consumer.getStats")[0]["paused"] is True
        media.request("p1", "producer.resume")
        events = [(h, e) for h, e, _ in media.notifications]
        assert events.count(("c4", "producerresume")) == 1
        assert ("c1", "producerpause") in events and ("c3", "producerresume") in events
        assert media.request("c4", "consumer.dump")["producerPaused"] is False
        media.request("c1", "consumer.requestKeyFrame")  # audio: accepted, does nothing
        assert media.request("p1", "producer.getStats")[0]["keyFrameRequestsSent"] == 0

    run_media(body)


def _produce_data(**changes):
    data = {
        "producerId": "px",
        "kind": "audio",
        "rtpParameters": {"codecs": [dict(OPUS)], "headerExtensions": [], "encodings": [{"ssrc": 9}]},
        "rtpMapping": {"codecs": [{"payloadType": 111, "mappedPayloadType": 100}],
                       "encodings": [{"ssrc": 9, "mappedSsrc": 77}]},
        "paused": False,
    }
    for path, value in changes.items():
        target = data
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is KeyError:
            del target[keys[-1]]
        elif isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return data


BAD_PRODUCE = [
    {"producerId": ""},
    {"producerId": "p1"},  # exists
    {"kind": "data"},
    {"kind": "video"},  # opus codec in a video producer
    {"rtpParameters": KeyError},
    {"rtpParameters.codecs": []},
    {"rtpParameters.codecs.0.payloadType": 200},
    {"rtpParameters.codecs.0.payloadType": 72},  # RTCP range
    {"rtpParameters.codecs.0.clockRate": "48000"},
    {"rtpParameters.codecs.0.mimeType": "opus"},
    {"rtpParameters.encodings": []},
    {"rtpParameters.encodings.0.ssrc": -1},
    {"rtpParameters.encodings.0.ssrc": 1111},  # already used on this transport
    {"rtpParameters.headerExtensions": [{"uri": "x", "id": 0}]},
    {"rtpParameters.headerExtensions": [{"uri": "x", "id": 1}, {"uri": "y", "id": 1}]},
    {"rtpMapping": KeyError},
    {"rtpMapping.codecs": [{"payloadType": 0, "mappedPayloadType": 100}]},  # 111 not mapped
    {"rtpMapping.encodings": []},
    {"rtpMapping.encodings.0.mappedSsrc": None},
    {"paused": "no"},
]


def test_bad_produce_arguments(run_media):
    async def body(media):
        await topology(media)
        for changes in BAD_PRODUCE:
            with pytest.raises(ArgumentError):
                media.request("tp", "transport.produce", _produce_data(**changes))
            assert "px" not in media.ctx.handlers
        assert media.request("tp", "transport.produce", _produce_data()) == {"type": "simple"}
        # Several encodings need an ssrc or a rid each, and rids are unique.
        for encodings in ([{}, {}], [{"rid": "a"}, {}], [{"rid": "a"}, {"rid": "a"}]):
            two = _produce_data(producerId="py")
            two["rtpParameters"]["encodings"] = encodings
            two["rtpMapping"]["encodings"] = [{"mappedSsrc": 1}, {"mappedSsrc": 2}]
            with pytest.raises(ArgumentError):
                media.request("tp", "transport.produce", two)
            assert "py" not in media.ctx.handlers
        two = _produce_data(producerId="py")
        two["rtpParameters"]["encodings"] = [{"rid": "a"}, {"rid": "b"}]
        two["rtpMapping"]["encodings"] = [{"mappedSsrc": 1}, {"mappedSsrc": 2}]
        assert media.request("tp", "transport.produce", two) == {"type": "simulcast"}
        with pytest.raises(ArgumentError):
            media.request("tp", "transport.produce", "not a dict")

    run_media(body)


def test_bad_consume_arguments(run_media):
    async def body(media):
        await topology(media)
        good = {
            "consumerId": "cx", "producerId": "p1", "kind": "audio",
            "rtpParameters": {"codecs": [{**OPUS, "payloadType": 100}], "encodings": [{"ssrc": 55}]},
            "type": "simple", "consumableRtpEncodings": [{"ssrc": MAPPED_SSRC}], "paused": False,
        }
        bad = []
        for key, value in [("consumerId", None), ("consumerId", "c1"), ("producerId", "nope"),
                           ("kind", "video"), ("rtpParameters", None), ("paused", 1),
                           ("consumableRtpEncodings", [{"ssrc": 1234}]),
                           ("consumableRtpEncodings", [])]:
            data = copy.deepcopy(good)
            data[key] = value
            bad.append(data)
        data = copy.deepcopy(good)
        data["rtpParameters"]["encodings"] = [{}]
        bad.append(data)
        data = copy.deepcopy(good)
        data["rtpParameters"]["codecs"] = [{"mimeType": "audio/PCMU", "payloadType": 0, "clockRate": 8000}]
        bad.append(data)  # no codec of the producer
        data = copy.deepcopy(good)
        data["rtpParameters"]["encodings"] = [{"ssrc": 1}]  # c1 has it on tc
        bad.append(data)
        for data in bad:
            with pytest.raises(ArgumentError):
                media.request("tc", "transport.consume", data)
            assert "cx" not in media.ctx.handlers
        with pytest.raises(UnsupportedError):
            media.request("tc", "transport.consume", {**good, "type": "svc"})
        with pytest.raises(ArgumentError):  # simulcast needs a producer with several encodings
            media.request("tc", "transport.consume", {**good, "type": "simulcast"})
        assert media.request("tc", "transport.consume", good) == {"paused": False, "producerPaused": False}
        assert media.request("r1", "router.dump")["mapProducerIdConsumerIds"]["p1"] == ["c1", "c2", "cx"]

    run_media(body)


def test_bad_router_and_create_transport_arguments(run_media):
    async def body(media):
        with pytest.raises(ArgumentError):
            Router("", {}, media.ctx)
        with pytest.raises(ArgumentError):
            Router("rx", {"mediaCodecs": "x"}, media.ctx)
        media.router()
        for data in [{}, {"transportId": "t", "listenIp": "nope"}, {"transportId": "t"},
                     {"transportId": "t", "listenIp": "127.0.0.1", "port": 70000},
                     {"transportId": "t", "listenIp": "127.0.0.1", "rtcpMux": "yes"},
                     {"transportId": "t", "listenIp": "127.0.0.1", "comedia": 1},
                     {"transportId": "r1", "listenIp": "127.0.0.1"}]:
            with pytest.raises(ArgumentError):
                media.request("r1", "router.createPlainTransport", data)
        with pytest.raises(UnsupportedError):
            media.request("r1", "router.createPlainTransport", {
                "transportId": "t", "listenIp": "127.0.0.1", "enableSrtp": True,
                "srtpCryptoSuite": "NULL_CIPHER"})
        assert set(media.ctx.handlers) == {"r1"}
        assert media.ctx.ports.in_use == frozenset()
        # a fixed port, as mediasoup's "port" option
        t = media.transport("t", port=42500)
        assert t["tuple"]["localPort"] == 42500
        with pytest.raises(Exception, match="42500"):
            media.transport("t2", port=42500)

    run_media(body)
