"""Helpers for the controller tests: real workers, raw frames, process checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
from pathlib import Path

import relay
from worker_proto.framing import FrameDecoder, encode_frame
from worker_proto.messages import decode_message, encode_message
from worker_proto.version import PROTOCOL_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]

OPUS = {"kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2}
VP8 = {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000}
MEDIA_CODECS = [OPUS, VP8]


@contextlib.asynccontextmanager
async def running_worker(**kwargs):
    """A worker that is closed, and whose process has exited, when the block ends."""
    kwargs.setdefault("rtc_min_port", 41000)
    kwargs.setdefault("rtc_max_port", 41999)
    worker = await relay.create_worker(**kwargs)
    try:
        yield worker
    finally:
        worker.close()
        await asyncio.wait_for(worker.wait_closed(), 10)


def process_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped between open and read
        return True
    return state in ("Z", "X")


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


class RawWorker:
    """A worker process driven with hand-made frames (no relay controller code involved)."""

    def __init__(self, *extra_args: str, protocol_version: int = PROTOCOL_VERSION) -> None:
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay.worker", "--request-fd", str(req_r),
             "--response-fd", str(resp_w), "--protocol-version", str(protocol_version),
             "--log-level", "error", "--rtc-min-port", "42000", "--rtc-max-port", "42999",
             *extra_args],
            pass_fds=(req_r, resp_w), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(req_r)
        os.close(resp_w)
        self.decoder = FrameDecoder()
        self.inbox: list = []

    def send_raw(self, data: bytes) -> None:
        os.write(self.req_w, data)

    def send_payload(self, payload: bytes) -> None:
        self.send_raw(encode_frame(payload))

    def send(self, message: dict) -> None:
        self.send_payload(encode_message(message))

    def request(self, request_id: int, method: str, handler_id: str = "", data=None) -> None:
        self.send({"kind": "request", "id": request_id, "method": method,
                   "handlerId": handler_id, "data": data})

    def next_message(self, kind: str | None = None, timeout: float = 10.0) -> dict:
        """The next message (of ``kind``, skipping logs) from the worker."""
        while True:
            while self.inbox:
                message = self.inbox.pop(0)
                if message.get("kind") == "log" and kind != "log":
                    continue
                if kind is None or message.get("kind") == kind:
                    return message
            ready, _, _ = select.select([self.resp_r], [], [], timeout)
            if not ready:
                raise AssertionError("no message from the worker in time")
            chunk = os.read(self.resp_r, 65536)
            if not chunk:
                raise AssertionError("worker closed its response pipe")
            for payload in self.decoder.feed(chunk):
                self.inbox.append(decode_message(payload))

    def close_requests(self) -> None:
        if self.req_w >= 0:
            os.close(self.req_w)
            self.req_w = -1

    def finish(self) -> int:
        self.close_requests()
        try:
            code = self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.resp_r >= 0:
                os.close(self.resp_r)
                self.resp_r = -1
            self.proc.stdout.close()
            self.proc.stderr.close()
        return code
