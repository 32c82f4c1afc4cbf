"""What a request may make the worker keep is bounded: id lengths, nesting depth, string
sizes; a bad id type is a plain ArgumentError, not a crash."""

from __future__ import annotations

import itertools
import json
import os
import select

import pytest
from relay_controller_support import MEDIA_CODECS

from relay.controller import ortc
from worker_proto.messages import decode_message
from worker_proto.validation import MAX_DATA_DEPTH, MAX_ID_LENGTH, MAX_STRING_LENGTH

_ids = itertools.count(1)
CODECS = ortc.generate_router_rtp_capabilities(MEDIA_CODECS)["codecs"]


def read_until_response(worker, request_id: int, timeout: float = 10.0) -> tuple[dict, list]:
    """The response to ``request_id`` and every log message that came before it."""
    logs: list[dict] = []
    while True:
        while worker.inbox:
            message = worker.inbox.pop(0)
            if message.get("kind") == "log":
                logs.append(message)
            elif message.get("kind") == "response" and message.get("id") == request_id:
                return message, logs
        ready, _, _ = select.select([worker.resp_r], [], [], timeout)
        assert ready, "no response from the worker in time"
        chunk = os.read(worker.resp_r, 1 << 20)
        assert chunk, "worker closed its response pipe"
        worker.inbox += [decode_message(p) for p in worker.decoder.feed(chunk)]


def started(worker):
    """``worker`` once it sent "running" (requests before it may go unanswered)."""
    assert worker.next_message("notification", timeout=30)["event"] == "running"
    return worker


def call(worker, method: str, handler_id: str = "", data=None) -> dict:
    request_id = next(_ids)
    # The stdlib writes any depth (orjson stops at 254): a controller in another language may.
    worker.send_payload(json.dumps({"kind": "request", "id": request_id, "method": method,
                                    "handlerId": handler_id, "data": data}).encode())
    return read_until_response(worker, request_id)[0]


def ok(worker, method: str, handler_id: str = "", data=None):
    response = call(worker, method, handler_id, data)
    assert response["ok"], response
    return response["data"]


def argument_error(worker, method: str, handler_id: str = "", data=None) -> str:
    response = call(worker, method, handler_id, data)
    assert not response["ok"] and response["error"]["type"] == "ArgumentError", response
    return response["error"]["message"]


def plain_transport(transport_id: str) -> dict:
    return {"transportId": transport_id, "listenIp": "127.0.0.1", "port": None,
            "rtcpMux": True, "comedia": False, "enableSrtp": False,
            "srtpCryptoSuite": "AES_CM_128_HMAC_SHA1_80"}


def test_every_id_the_worker_keeps_has_a_length_limit(raw_worker):
    worker = started(raw_worker())
    long_id = "x" * (MAX_ID_LENGTH + 1)
    assert len(long_id) < MAX_STRING_LENGTH  # refused by the id check, not the string bound
    router_id = "r" * MAX_ID_LENGTH  # the longest allowed
    ok(worker, "worker.createRouter", "", {"routerId": router_id, "mediaCodecs": CODECS})
    ok(worker, "router.createPlainTransport", router_id, plain_transport("t1"))
    ok(worker, "router.createAudioLevelObserver", router_id, {"rtpObserverId": "o1"})
    refused = [
        ("worker.createRouter", "", {"routerId": long_id, "mediaCodecs": CODECS}, "routerId"),
        ("worker.createWebRtcServer", "", {"webRtcServerId": long_id, "listenInfos": [
            {"protocol": "udp", "ip": "127.0.0.1"}]}, "webRtcServerId"),
        ("worker.closeWebRtcServer", "", {"webRtcServerId": long_id}, "webRtcServerId"),
        ("router.createPlainTransport", router_id, plain_transport(long_id), "transportId"),
        ("router.createWebRtcTransport", router_id, {"transportId": long_id, "listenInfos": [
            {"protocol": "udp", "ip": "127.0.0.1"}]}, "transportId"),
        ("router.createWebRtcTransport", router_id, {"transportId": "t2",
                                                     "webRtcServerId": long_id},
         "webRtcServerId"),
        ("router.createAudioLevelObserver", router_id, {"rtpObserverId": long_id},
         "rtpObserverId"),
        ("router.createActiveSpeakerObserver", router_id, {"rtpObserverId": long_id},
         "rtpObserverId"),
        ("transport.produce", "t1", {"producerId": long_id}, "producerId"),
        ("transport.consume", "t1", {"consumerId": long_id, "producerId": "p"}, "consumerId"),
        ("transport.consume", "t1", {"consumerId": "c1", "producerId": long_id}, "producerId"),
        ("rtpObserver.addProducer", "o1", {"producerId": long_id}, "producerId"),
        ("rtpObserver.removeProducer", "o1", {"producerId": long_id}, "producerId"),
    ]
    for method, handler_id, data, field in refused:
        message = argument_error(worker, method, handler_id, data)
        assert field in message and str(MAX_ID_LENGTH) in message, (method, message)
    # The case: 1.5 MB router ids. Refused, so the dump stays under MAX_FRAME_SIZE.
    for index in range(3):
        argument_error(worker, "worker.createRouter", "", {
            "routerId": str(index) * 1_500_000, "mediaCodecs": CODECS})
    dump = ok(worker, "worker.dump")
    assert dump["routerIds"] == [router_id]
    assert sorted(dump["handlerIds"]) == sorted([router_id, "t1", "o1"])
    assert worker.finish() == 0


def nested(depth: int) -> dict:
    """A dict ``depth`` levels deep (counting itself)."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def router_request(router_id: str, parameters: dict) -> dict:
    codecs = [dict(CODECS[0], parameters=parameters), *CODECS[1:]]
    return {"routerId": router_id, "mediaCodecs": codecs}


def test_over_deep_request_data_is_refused_before_anything_keeps_it(raw_worker):
    worker = started(raw_worker())
    # data (1) → mediaCodecs (2) → codec (3) → parameters (4): parameters may nest 61 more.
    deepest = MAX_DATA_DEPTH - 3
    ok(worker, "worker.createRouter", "", router_request("deep", nested(deepest)))
    assert ok(worker, "router.dump", "deep")["mediaCodecs"][0]["parameters"] == nested(deepest)
    message = argument_error(worker, "worker.createRouter", "",
                             router_request("deeper", nested(deepest + 1)))
    assert f"nested deeper than {MAX_DATA_DEPTH} levels" in message
    assert message.startswith("data.mediaCodecs[0].parameters.a.a"), message
    # Deeper than the encoder can write (orjson: 254) yet within what it reads (1024): a
    # router keeping it could never be dumped again.
    argument_error(worker, "worker.createRouter", "", router_request("r300", nested(300)))
    argument_error(worker, "router.createPlainTransport", "deep",
                   {**plain_transport("t1"), "extra": [[[[[[[[[[nested(60)]]]]]]]]]]})
    dump = ok(worker, "worker.dump")
    assert dump["routerIds"] == ["deep"] and dump["channel"]["errors"] == 3
    assert worker.finish() == 0


@pytest.mark.parametrize("where", ["value", "key"])
def test_over_long_strings_in_request_data_are_refused(raw_worker, where):
    worker = started(raw_worker())
    for length, accepted in ((MAX_STRING_LENGTH, True), (MAX_STRING_LENGTH + 1, False)):
        text = "s" * length
        parameters = {"x": text} if where == "value" else {text: 1}
        response = call(worker, "worker.createRouter", "",
                        router_request(f"r{length}", parameters))
        assert response["ok"] is accepted, response
        if not accepted:
            assert response["error"]["type"] == "ArgumentError"
            assert f"at most {MAX_STRING_LENGTH}" in response["error"]["message"]
    assert ok(worker, "worker.dump")["routerIds"] == [f"r{MAX_STRING_LENGTH}"]
    assert worker.finish() == 0


def test_non_string_webrtc_server_id_is_an_argument_error_without_a_crash_log(raw_worker):
    worker = started(raw_worker("--log-level", "debug"))
    for bad in ([1], {"a": 1}, 5, None, ""):
        request_id = next(_ids)
        worker.request(request_id, "worker.closeWebRtcServer", "", {"webRtcServerId": bad})
        response, logs = read_until_response(worker, request_id)
        loud = [log for log in logs if log["level"] in ("warn", "error")
                or "Traceback" in log["message"] or "crashed" in log["message"]]
        assert not loud, loud
        assert response["error"]["type"] == "ArgumentError", response
        assert "webRtcServerId" in response["error"]["message"]
    assert worker.finish() == 0
