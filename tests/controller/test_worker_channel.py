"""The worker's channel (relay/worker/channel.py) in-process, with handlers that misbehave."""

from __future__ import annotations

import asyncio
import os
import select

from relay.worker.channel import WorkerChannel
from worker_proto.framing import FrameDecoder, encode_frame
from worker_proto.messages import decode_message, encode_message, make_request


def read_with_timeout(fd: int, timeout: float = 5.0) -> bytes:
    """os.read that gives up (AssertionError) instead of blocking a test forever."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "nothing to read in time"
    return os.read(fd, 65536)


class Misbehaving:
    def handle_request(self, method: str, data: dict):
        if method == "producer.pause":
            raise ZeroDivisionError("division by zero")
        if method == "producer.resume":
            return object()  # not JSON
        if method == "producer.dump":
            return self._later(data)
        return {"echo": data}

    async def _later(self, data: dict):
        await asyncio.sleep(0)
        if data.get("fail"):
            raise KeyError("missing")
        return {"async": True}


async def test_handler_crashes_become_error_responses():
    loop = asyncio.get_running_loop()
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    eof = asyncio.Event()
    channel = WorkerChannel(loop, req_r, resp_w, {"p": Misbehaving()}, on_eof=eof.set)
    await channel.open()
    requests = [
        (1, "producer.pause", {}),
        (2, "producer.resume", {}),
        (3, "producer.dump", {}),
        (4, "producer.dump", {"fail": True}),
        (5, "producer.getStats", {"x": 1}),
    ]
    for request_id, method, data in requests:
        os.write(req_w, encode_frame(encode_message(make_request(request_id, method, "p", data))))
    decoder = FrameDecoder()
    responses: dict[int, dict] = {}
    while len(responses) < len(requests):
        chunk = await asyncio.to_thread(read_with_timeout, resp_r)
        for payload in decoder.feed(chunk):
            message = decode_message(payload)
            if message["kind"] == "response":
                responses[message["id"]] = message
    assert responses[1]["error"] == {"type": "Error",
                                     "message": "ZeroDivisionError: division by zero"}
    assert responses[2]["ok"] is False and responses[2]["error"]["type"] == "ArgumentError"
    assert responses[3] == {"kind": "response", "id": 3, "ok": True, "data": {"async": True}}
    assert responses[4]["error"] == {"type": "Error", "message": "KeyError: 'missing'"}
    assert responses[5]["data"] == {"echo": {"x": 1}}
    assert channel.stats["requests"] == 5 and channel.stats["errors"] == 3
    os.close(req_w)
    await asyncio.wait_for(eof.wait(), 5)
    channel.close()
    os.close(resp_r)
