"""A controller that stops reading cannot make the worker's output buffer grow without bound:
logs, then notifications are dropped and counted; responses never are, but past a hard
limit the worker closes its channel, says why on stderr and exits."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import subprocess

from relay_controller_support import wait_until
from test_request_bounds import call, router_request, started

from relay.worker.channel import MAX_BUFFERED_BYTES, WorkerChannel
from worker_proto.framing import FrameDecoder, encode_frame
from worker_proto.messages import decode_message, encode_message, make_request

KIB = 1024


class Padded:
    """Answers every request with ``size`` bytes of padding."""

    def __init__(self, size: int) -> None:
        self.size = size

    def handle_request(self, method: str, data: dict) -> dict:
        return {"pad": "r" * self.size}


def read_all(fd: int, until, timeout: float = 10.0) -> list[dict]:
    """Messages read from ``fd`` until ``until(messages)`` or end of file."""
    decoder = FrameDecoder()
    messages: list[dict] = []
    while not until(messages):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "nothing to read in time"
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        messages += [decode_message(p) for p in decoder.feed(chunk)]
    return messages


async def open_channel(response_size: int, **limits) -> tuple[WorkerChannel, int, int,
                                                              asyncio.Event]:
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    eof = asyncio.Event()
    channel = WorkerChannel(asyncio.get_running_loop(), req_r, resp_w,
                            {"h": Padded(response_size)}, on_eof=eof.set, **limits)
    await channel.open()
    return channel, req_w, resp_r, eof


def send_requests(req_w: int, count: int) -> None:
    for request_id in range(1, count + 1):
        os.write(req_w, encode_frame(encode_message(
            make_request(request_id, "producer.dump", "h", None))))


async def test_notifications_past_their_limit_are_dropped_and_responses_are_not():
    limit = 64 * KIB
    channel, req_w, resp_r, _ = await open_channel(
        1000, max_buffered_log_bytes=limit // 2, max_buffered_notification_bytes=limit,
        max_buffered_bytes=4096 * KIB)
    try:
        sent = 500
        for index in range(sent):  # nobody reads: the pipe (64 KiB) fills, then the buffer
            channel.notify("h", "score", {"index": index, "pad": "n" * 1000})
        dropped = channel.stats["droppedNotifications"]
        assert 0 < dropped < sent
        buffered = channel._writer.get_write_buffer_size()
        assert limit < buffered <= limit + 2 * KIB, buffered
        channel.log("warn", "relay.test", "nobody reads this")
        assert channel.stats["droppedLogs"] == 1
        send_requests(req_w, 50)  # past the notification limit: still answered, every one
        await wait_until(lambda: channel.stats["requests"] == 50)
        assert channel._writer.get_write_buffer_size() > buffered + 50 * 1000
        messages = await asyncio.to_thread(
            read_all, resp_r, lambda m: sum(x["kind"] == "response" for x in m) == 50)
        notifications = [m["data"]["index"] for m in messages if m["kind"] == "notification"]
        assert notifications == list(range(sent - dropped))  # the first ones, in order
        assert [m["id"] for m in messages if m["kind"] == "response"] == list(range(1, 51))
        assert channel.is_open and not channel.overflowed
        assert channel.stats["droppedNotifications"] == dropped
    finally:
        channel.close()
        os.close(req_w)
        os.close(resp_r)


async def test_responses_past_the_hard_limit_close_the_channel(caplog):
    caplog.set_level(logging.ERROR, logger="relay.worker.channel")
    limit = 256 * KIB
    channel, req_w, resp_r, eof = await open_channel(
        4000, max_buffered_notification_bytes=64 * KIB, max_buffered_bytes=limit)
    try:
        send_requests(req_w, 200)  # 800 KB of responses: more than the pipe and the limit
        await asyncio.wait_for(eof.wait(), 10)
        assert channel.overflowed and not channel.is_open
        assert any("has not read" in r.getMessage() and str(limit) in r.getMessage()
                   for r in caplog.records)
        # Every response written before the end is there, in order: none was dropped.
        messages = await asyncio.to_thread(read_all, resp_r, lambda m: False)
        ids = [m["id"] for m in messages if m["kind"] == "response"]
        assert ids == list(range(1, len(ids) + 1)) and 0 < len(ids) < 200
    finally:
        channel.close()
        os.close(req_w)
        os.close(resp_r)


def test_a_worker_whose_controller_stops_reading_exits(raw_worker):
    worker = started(raw_worker())
    # One router whose dump is ~3.3 MB; dumps nobody reads pile up past MAX_BUFFERED_BYTES.
    parameters = {f"k{index}": "v" * 4000 for index in range(800)}
    response = call(worker, "worker.createRouter", "", router_request("big", parameters))
    assert response["ok"], response
    dumps = MAX_BUFFERED_BYTES // (3300 * KIB) + 5
    for request_id in range(1000, 1000 + dumps):
        worker.request(request_id, "router.dump", "big")
    try:
        code = worker.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker did not exit") from None
    stderr = worker.proc.stderr.read().decode()
    assert code == 0, stderr
    assert "has not read" in stderr and "closing the channel" in stderr, stderr
