from __future__ import annotations

import pytest

from worker_proto.errors import ProtocolError
from worker_proto.messages import (
    LogRecord,
    Notification,
    Request,
    Response,
    decode_message,
    encode_message,
    make_error_response,
    make_log,
    make_notification,
    make_ok_response,
    make_request,
    parse_request,
    parse_worker_message,
    request_id_of,
)


def test_request_round_trip():
    message = make_request(7, "worker.dump", "", {"a": [1, "é"]})
    decoded = decode_message(encode_message(message))
    assert parse_request(decoded) == Request(7, "worker.dump", "", {"a": [1, "é"]})
    assert parse_request(decode_message(encode_message(make_request(8, "m", "h", None)))).data == {}


def test_encoding_is_utf8_json():
    import json

    payload = encode_message(make_notification("h", "e", {"x": "ü"}))
    assert json.loads(payload.decode("utf-8")) == {"kind": "notification", "handlerId": "h",
                                                   "event": "e", "data": {"x": "ü"}}


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b"1", b"\xff", b'"s"', b"null"])
def test_decode_rejects_non_objects(payload):
    with pytest.raises(ProtocolError):
        decode_message(payload)


@pytest.mark.parametrize("message", [
    {"kind": "request", "id": -1, "method": "m", "handlerId": ""},
    {"kind": "request", "id": True, "method": "m", "handlerId": ""},
    {"kind": "request", "id": 1.5, "method": "m", "handlerId": ""},
    {"kind": "request", "id": 2**53, "method": "m", "handlerId": ""},
    {"kind": "request", "id": 1, "method": "", "handlerId": ""},
    {"kind": "request", "id": 1, "method": 3, "handlerId": ""},
    {"kind": "request", "id": 1, "method": "m", "handlerId": None},
    {"kind": "request", "id": 1, "method": "m", "handlerId": "", "data": "x"},
    {"kind": "notification", "id": 1, "method": "m", "handlerId": ""},
    {"id": 1, "method": "m", "handlerId": ""},
])
def test_parse_request_rejects(message):
    with pytest.raises(ProtocolError):
        parse_request(message)


def test_request_id_of_only_returns_usable_ids():
    assert request_id_of({"id": 5}) == 5
    assert request_id_of({"id": True}) is None
    assert request_id_of({"id": "5"}) is None
    assert request_id_of({}) is None


def test_parse_worker_messages():
    assert parse_worker_message(make_ok_response(3, {"a": 1})) == Response(3, True, {"a": 1})
    error = {"type": "ArgumentError", "message": "bad"}
    assert parse_worker_message(make_error_response(None, error)) == Response(
        None, False, error=error)
    assert parse_worker_message(make_notification("h", "running", None)) == Notification(
        "h", "running", None)
    assert parse_worker_message(make_log("warn", "relay.x", "m")) == LogRecord(
        "warn", "relay.x", "m")


@pytest.mark.parametrize("message", [
    {"kind": "response", "id": 1},
    {"kind": "response", "id": 1, "ok": False},
    {"kind": "response", "id": "1", "ok": True},
    {"kind": "notification", "handlerId": 1, "event": "e"},
    {"kind": "log", "level": "fatal", "message": "m"},
    {"kind": "log", "level": "info", "message": 5},
    {"kind": "request", "id": 1, "method": "m", "handlerId": ""},
    {"kind": "nope"},
])
def test_parse_worker_message_rejects(message):
    with pytest.raises(ProtocolError):
        parse_worker_message(message)
