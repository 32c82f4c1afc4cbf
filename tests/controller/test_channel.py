"""The controller channel on real pipes, with a hand-written "worker" end."""

from __future__ import annotations

import asyncio
import logging
import os
import select

import pytest

from relay.controller.channel import Channel
from worker_proto.errors import ArgumentError, WorkerDiedError
from worker_proto.framing import FrameDecoder, encode_frame
from worker_proto.messages import (
    decode_message,
    encode_message,
    make_error_response,
    make_log,
    make_notification,
    make_ok_response,
)


def read_with_timeout(fd: int, timeout: float = 5.0) -> bytes:
    """os.read that gives up (AssertionError) instead of blocking a test forever."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "nothing to read in time"
    return os.read(fd, 65536)


class FakeWorkerEnd:
    def __init__(self) -> None:
        self.req_r, req_w = os.pipe()
        resp_r, self.resp_w = os.pipe()
        self.channel = Channel(asyncio.get_running_loop(), req_w, resp_r)
        self.decoder = FrameDecoder()
        self.frames: list[bytes] = []

    async def next_request(self) -> dict:
        while not self.frames:
            data = await asyncio.to_thread(read_with_timeout, self.req_r)
            assert data, "request pipe closed"
            self.frames += self.decoder.feed(data)
        return decode_message(self.frames.pop(0))

    def write(self, data: bytes) -> None:
        os.write(self.resp_w, data)

    def send(self, message: dict) -> None:
        self.write(encode_frame(encode_message(message)))

    def close(self) -> None:
        self.channel.close()
        for fd in (self.req_r, self.resp_w):
            try:
                os.close(fd)
            except OSError:
                pass


async def test_responses_match_requests_by_id_in_any_order():
    end = FakeWorkerEnd()
    await end.channel.open()
    try:
        first = asyncio.ensure_future(end.channel.request("worker.dump"))
        second = asyncio.ensure_future(end.channel.request("router.dump", "r1", {"x": 1}))
        a, b = await end.next_request(), await end.next_request()
        assert (a["method"], b["method"], b["handlerId"], b["data"]) == (
            "worker.dump", "router.dump", "r1", {"x": 1})
        end.send(make_error_response(b["id"], {"type": "ArgumentError", "message": "nope"}))
        end.send(make_ok_response(a["id"], {"pid": 1}))
        assert await first == {"pid": 1}
        with pytest.raises(ArgumentError, match="nope"):
            await second
        assert end.channel.pending_count == 0
    finally:
        end.close()


async def test_garbage_from_the_worker_is_logged_and_skipped(caplog):
    caplog.set_level(logging.DEBUG)
    end = FakeWorkerEnd()
    await end.channel.open()
    events = []
    end.channel.add_listener("t1", lambda event, data: events.append((event, data)))
    end.channel.add_listener("boom", lambda event, data: 1 / 0)
    try:
        pending = asyncio.ensure_future(end.channel.request("worker.dump"))
        request = await end.next_request()
        end.write(encode_frame(b"not json"))
        end.send({"kind": "mystery"})
        end.send(make_ok_response(123456, None))  # nobody asked
        end.send(make_error_response(None, {"type": "ProtocolError", "message": "bad frame"}))
        end.send(make_notification("boom", "x", None))  # a listener that raises
        end.send(make_notification("nobody", "x", None))
        end.send(make_log("warn", "relay.uring", "ring says hi"))
        end.send(make_notification("t1", "tuple", {"tuple": {"localPort": 1}}))
        end.send(make_ok_response(request["id"], "done"))
        assert await asyncio.wait_for(pending, 5) == "done"
        assert events == [("tuple", {"tuple": {"localPort": 1}})]
        records = {(r.name, r.getMessage()) for r in caplog.records}
        assert ("relay.worker.uring", "ring says hi") in records
        assert any("bad message" in m for _, m in records)
        assert any("rejected a frame" in m for _, m in records)
    finally:
        end.close()


async def test_fail_all_fails_pending_and_later_requests():
    end = FakeWorkerEnd()
    await end.channel.open()
    try:
        pending = asyncio.ensure_future(end.channel.request("worker.dump"))
        await end.next_request()
        error = WorkerDiedError("gone", signal="SIGKILL")
        end.channel.fail_all(error)
        with pytest.raises(WorkerDiedError):
            await pending
        with pytest.raises(WorkerDiedError):
            await end.channel.request("worker.dump")
        end.channel.request_nowait("worker.close")  # never raises
    finally:
        end.close()
