"""Bad frames and bad requests get error responses; the worker lives on."""

from __future__ import annotations

import signal
import struct

from worker_proto.framing import MAX_FRAME_SIZE
from worker_proto.methods import WorkerEvent


def _running(worker) -> dict:
    message = worker.next_message("notification")
    assert message["event"] == WorkerEvent.RUNNING and message["handlerId"] == ""
    return message


def _alive(worker, request_id: int = 999) -> None:
    worker.request(request_id, "worker.dump")
    response = worker.next_message("response")
    assert response == {**response, "id": request_id, "ok": True}
    assert response["data"]["pid"] == worker.proc.pid


def _error(worker) -> tuple[object, str, str]:
    response = worker.next_message("response")
    assert response["ok"] is False
    return response["id"], response["error"]["type"], response["error"]["message"]


def test_running_notification_first(raw_worker):
    worker = raw_worker()
    data = _running(worker)["data"]
    assert data["pid"] == worker.proc.pid and data["protocolVersion"] == 1
    assert worker.finish() == 0  # EOF on the request pipe: a clean exit


def test_undecodable_payloads_are_answered_with_id_null(raw_worker):
    worker = raw_worker()
    _running(worker)
    for payload in (b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]", b"42", b""):
        worker.send_payload(payload)
        request_id, error_type, _ = _error(worker)
        assert (request_id, error_type) == (None, "ProtocolError"), payload
    _alive(worker)
    assert worker.finish() == 0


def test_malformed_requests_are_answered_by_id(raw_worker):
    worker = raw_worker()
    _running(worker)
    cases = [
        ({"kind": "request", "id": 1, "handlerId": ""}, "ProtocolError"),  # no method
        ({"kind": "request", "id": 2, "method": "worker.dump"}, "ProtocolError"),  # no handlerId
        ({"kind": "request", "id": 3, "method": "worker.dump", "handlerId": "",
          "data": [1]}, "ProtocolError"),
        ({"kind": "response", "id": 4, "ok": True}, "ProtocolError"),  # wrong direction
        ({"kind": "request", "id": 5, "method": "worker.fly", "handlerId": ""},
         "UnknownMethodError"),
        ({"kind": "request", "id": 6, "method": "router.dump", "handlerId": "nope"},
         "NotFoundError"),
        ({"kind": "request", "id": 7, "method": "router.dump", "handlerId": ""},
         "UnknownMethodError"),  # a real method, but not the worker's
        ({"kind": "request", "id": 8, "method": "worker.createRouter", "handlerId": "",
          "data": {"routerId": 5, "mediaCodecs": []}}, "ArgumentError"),
        ({"kind": "request", "id": 9, "method": "worker.createRouter", "handlerId": "",
          "data": {"routerId": "r", "mediaCodecs": "opus"}}, "ArgumentError"),
        ({"kind": "request", "id": 10, "method": "worker.createRouter", "handlerId": "",
          "data": {"routerId": "r", "mediaCodecs": [5]}}, "ArgumentError"),
        ({"kind": "request", "id": 11, "method": "worker.createRouter", "handlerId": "",
          "data": {"routerId": "r", "mediaCodecs": [{"mimeType": "audio/opus",
                                                     "clockRate": 48000}]}}, "ArgumentError"),
    ]
    for message, expected in cases:
        worker.send(message)
        request_id, error_type, text = _error(worker)
        assert (request_id, error_type) == (message["id"], expected), (message, text)
    # ids that cannot be used to answer: the response says id null
    for bad_id in (True, -1, "7", 2**53, None):
        worker.send({"kind": "request", "id": bad_id, "method": "worker.dump", "handlerId": ""})
        assert _error(worker)[:2] == (None, "ProtocolError")
    _alive(worker)
    assert worker.finish() == 0


def test_oversized_frame_is_skipped_and_the_stream_stays_in_sync(raw_worker):
    worker = raw_worker()
    _running(worker)
    size = MAX_FRAME_SIZE + 1
    worker.send_raw(struct.pack(">I", size))
    chunk = b"x" * 65536
    for offset in range(0, size, len(chunk)):
        worker.send_raw(chunk[: min(len(chunk), size - offset)])
    assert _error(worker)[:2] == (None, "FrameTooLargeError")
    _alive(worker, 1000)
    assert worker.finish() == 0


def test_garbage_length_prefix_then_eof_exits_cleanly(raw_worker):
    worker = raw_worker()
    _running(worker)
    worker.send_raw(b"\x00\x00\x01")  # a partial header, then the controller goes away
    assert worker.finish() == 0


def test_sigterm_exits_cleanly(raw_worker):
    worker = raw_worker()
    _running(worker)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 0
    assert worker.finish() == 0


def test_worker_close_request_is_answered_then_the_worker_exits(raw_worker):
    worker = raw_worker()
    _running(worker)
    worker.request(1, "worker.close")
    response = worker.next_message("response")
    assert response["id"] == 1 and response["ok"] is True
    assert worker.proc.wait(10) == 0
    assert worker.finish() == 0


def test_protocol_version_mismatch_exits_with_code_3(raw_worker):
    worker = raw_worker(protocol_version=0)
    assert worker.proc.wait(10) == 3
    assert b"protocol version mismatch" in worker.proc.stderr.read()
    worker.finish()


def test_stray_signals_are_ignored(raw_worker):
    worker = raw_worker()
    _running(worker)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGALRM, signal.SIGUSR1,
                signal.SIGUSR2):
        worker.proc.send_signal(sig)
        _alive(worker, 2000 + sig)
    assert worker.finish() == 0
