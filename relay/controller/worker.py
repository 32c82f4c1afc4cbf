"""The Worker proxy and create_worker(): spawn ``python -m relay.worker`` and supervise it."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import signal
import sys
import uuid
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from worker_proto.errors import (
    ArgumentError,
    InvalidStateError,
    RelayError,
    WorkerDiedError,
    WorkerStartError,
    start_error_from_line,
)
from worker_proto.methods import WORKER_HANDLER_ID, WorkerEvent, WorkerMethod
from worker_proto.version import PROTOCOL_VERSION

from . import ortc
from .channel import DEFAULT_REQUEST_TIMEOUT, Channel, check_timeout, worker_log
from .router import Router
from .webrtc_server import WebRtcServer
from .webrtc_transport import validate_listen_infos

logger = logging.getLogger(__name__)
worker_logger = logging.getLogger("relay.worker")

LOG_LEVELS = ("debug", "info", "warn", "error", "none")
SEND_MODES = ("auto", "zerocopy", "copy", "socket")

# How long close() lets the worker exit on its own before SIGTERM, then SIGKILL.
CLOSE_GRACE_SECONDS = 3.0
# After the worker closes its end of the pipe, how long before it must have exited.
EOF_GRACE_SECONDS = 2.0

_STDIO_LOG_LINE = re.compile(r"^(?P<level>debug|info|warn|error):(?P<name>[\w.]+):(?P<message>.*)$")

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Worker(AsyncIOEventEmitter):
    """A worker process. Events: "died" (a WorkerDiedError with exit_code and signal)."""

    def __init__(self, process: asyncio.subprocess.Process, channel: Channel,
                 settings: dict[str, Any], app_data: Any) -> None:
        super().__init__()
        self._process = process
        self._channel = channel
        self._settings = settings
        self._routers: dict[str, Router] = {}
        self._webrtc_servers: dict[str, WebRtcServer] = {}
        self._closed = False
        self._died = False
        self._started = False
        self._exit_code: int | None = None
        self._signal: str | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._running: asyncio.Future = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task] = []
        self._exited = asyncio.Event()
        self.app_data = app_data

    # -- properties -------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def died(self) -> bool:
        return self._died

    @property
    def exit_code(self) -> int | None:
        """Exit status once the process has exited (None while running or if signalled)."""
        return self._exit_code

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    @property
    def routers(self) -> list[Router]:
        return list(self._routers.values())

    @property
    def request_timeout(self) -> float:
        """Seconds a request waits for its answer before RequestTimeoutError (plus 0.1 s per
        request already pending); set with ``create_worker(request_timeout=...)``."""
        return self._channel.request_timeout

    @property
    def channel_stats(self) -> dict[str, int]:
        """The controller side of the channel: requests, responses, timeouts, lateResponses
        (answers that came after their time-out, dropped), unknownResponses, pending."""
        return {**self._channel.stats, "pending": self._channel.pending_count}

    # -- start ------------------------------------------------------------------------------

    async def _start(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._channel.add_listener(WORKER_HANDLER_ID, self._on_notification)
        await self._channel.open()
        process = self._process
        self._tasks = [
            loop.create_task(self._forward_stream(process.stdout, logging.INFO, False)),
            loop.create_task(self._forward_stream(process.stderr, logging.WARNING, True)),
            loop.create_task(self._watch_process()),
        ]
        try:
            await asyncio.wait_for(asyncio.shield(self._running), timeout)
        except TimeoutError:
            self._abort_start()
            raise WorkerStartError(
                f"worker {self.pid} did not report running within {timeout} s"
                f"{self._stderr_hint()}") from None
        except RelayError:
            self._abort_start()
            raise
        self._started = True

    def _abort_start(self) -> None:
        self._closed = True
        if self._process.returncode is None:
            self._process.kill()
        self._channel.fail_all(InvalidStateError("worker failed to start"))
        self._channel.close()

    def _stderr_hint(self) -> str:
        return (": " + " | ".join(self._stderr_tail)) if self._stderr_tail else ""

    def _on_notification(self, event: str, data: Any) -> None:
        if event != WorkerEvent.RUNNING or self._running.done():
            logger.debug("worker %d: ignored event %s", self.pid, event)
            return
        version = data.get("protocolVersion") if isinstance(data, dict) else None
        if version != PROTOCOL_VERSION:
            self._running.set_exception(WorkerStartError(
                f"worker speaks protocol {version}, controller speaks {PROTOCOL_VERSION}"))
        else:
            self._running.set_result(data)

    # -- supervision ------------------------------------------------------------------------

    async def _forward_stream(self, stream: asyncio.StreamReader | None, level: int,
                              keep_tail: bool) -> None:
        """Forward the worker's stdout/stderr to logging, line by line (lines of any length)."""
        if stream is None:
            return
        pending = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._log_line(raw, level, keep_tail)
        if pending:
            self._log_line(pending, level, keep_tail)

    def _log_line(self, raw: bytes, level: int, keep_tail: bool) -> None:
        line = raw.decode(errors="replace").rstrip()
        if not line:
            return
        if keep_tail:
            start_error = start_error_from_line(line)
            if start_error is not None and not self._running.done():
                self._running.set_exception(start_error)  # why it cannot start, typed
                return
            self._stderr_tail.append(line)
        match = _STDIO_LOG_LINE.match(line)
        if match:  # a log record the worker wrote while its channel was closed
            worker_log(match["level"], match["name"], match["message"])
        else:  # print(), tracebacks, C libraries
            worker_logger.log(level, "[pid %d] %s", self.pid, line)

    async def _watch_process(self) -> None:
        returncode = await self._process.wait()
        if returncode < 0:
            self._signal = _signal_name(-returncode)
        else:
            self._exit_code = returncode
        self._exited.set()
        if not self._started:
            if not self._running.done():
                # Let the stderr forwarder read the last lines: they say why it exited.
                await asyncio.wait(self._tasks[1:2], timeout=1.0)
                if self._running.done():
                    return
                self._running.set_exception(WorkerStartError(
                    f"worker {self.pid} exited before running ({self._exit_description()})"
                    f"{self._stderr_hint()}"))
            return
        if self._closed:
            self._channel.fail_all(InvalidStateError("worker closed"))
            return
        self._on_died()

    def _exit_description(self) -> str:
        return f"signal {self._signal}" if self._signal else f"exit code {self._exit_code}"

    def _on_died(self) -> None:
        self._closed = True
        self._died = True
        error = WorkerDiedError(
            f"worker process {self.pid} died unexpectedly ({self._exit_description()})",
            exit_code=self._exit_code, signal=self._signal)
        logger.error("%s", error)
        self._channel.fail_all(error)
        self._channel.close()
        for router in list(self._routers.values()):
            router._worker_closed()
        for server in list(self._webrtc_servers.values()):
            server._worker_closed()
        self.emit("died", error)

    def _on_channel_eof(self) -> None:
        """The worker closed its end: it is exiting; make sure it really does."""
        if self._closed or self._process.returncode is not None:
            return
        asyncio.get_running_loop().create_task(self._kill_if_lingering(EOF_GRACE_SECONDS))

    async def _kill_if_lingering(self, grace: float) -> None:
        try:
            await asyncio.wait_for(self._exited.wait(), grace)
        except TimeoutError:
            logger.error("worker %d closed its channel but did not exit: killing it", self.pid)
            self._kill(signal.SIGKILL)

    def _kill(self, sig: int) -> None:
        if self._process.returncode is None:
            try:
                self._process.send_signal(sig)
            except ProcessLookupError:
                pass

    # -- API --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every router and stop the worker process (SIGTERM/SIGKILL if it lingers)."""
        if self._closed:
            return
        self._closed = True
        self._channel.request_nowait(WorkerMethod.CLOSE)
        self._channel.fail_all(InvalidStateError("worker closed"))
        self._channel.close()  # EOF on the worker's request pipe: it exits even if busy
        for router in list(self._routers.values()):
            router._worker_closed()
        for server in list(self._webrtc_servers.values()):
            server._worker_closed()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (interpreter teardown): just make sure it stops
            self._kill(signal.SIGTERM)
            return
        self._tasks.append(loop.create_task(self._reap()))

    async def _reap(self) -> None:
        for sig, grace in ((None, CLOSE_GRACE_SECONDS), (signal.SIGTERM, CLOSE_GRACE_SECONDS),
                           (signal.SIGKILL, None)):
            if sig is not None:
                logger.warning("worker %d still running after close: sending %s", self.pid,
                               _signal_name(sig))
                self._kill(sig)
            try:
                await asyncio.wait_for(self._exited.wait(), grace)
                return
            except TimeoutError:
                continue

    async def wait_closed(self) -> int | None:
        """Wait until the process has exited; its exit code (None if it died of a signal)."""
        await self._exited.wait()
        return self._exit_code

    def _ensure_open(self) -> None:
        if self._closed:
            raise InvalidStateError("worker closed")

    async def dump(self, *, timeout: float | None = None) -> dict:
        """The worker's dump (PROTOCOL.md), plus ``controllerChannel``: ``channel_stats``.

        ``timeout`` (seconds) replaces the worker's ``request_timeout`` for this call.
        """
        self._ensure_open()
        dump = await self._channel.request(WorkerMethod.DUMP, timeout=timeout)
        if isinstance(dump, dict):
            dump["controllerChannel"] = self.channel_stats
        return dump

    async def get_resource_usage(self, *, timeout: float | None = None) -> dict:
        self._ensure_open()
        return await self._channel.request(WorkerMethod.GET_RESOURCE_USAGE, timeout=timeout)

    async def create_router(self, *, media_codecs: list[dict] | None = None,
                            app_data: Any = None) -> Router:
        """A router for ``media_codecs`` (RtpCodecCapability dicts, camelCase keys)."""
        self._ensure_open()
        caps = ortc.generate_router_rtp_capabilities([] if media_codecs is None
                                                     else media_codecs)
        router_id = str(uuid.uuid4())
        await self._channel.request(WorkerMethod.CREATE_ROUTER, WORKER_HANDLER_ID,
                                    {"routerId": router_id, "mediaCodecs": caps["codecs"]})
        router = Router(self._channel, router_id, caps, app_data, on_close=self._router_closed)
        if self._closed:  # closed while the request was in flight
            router._worker_closed()
            raise InvalidStateError("worker closed")
        self._routers[router_id] = router
        return router

    def _router_closed(self, router: Router) -> None:
        self._routers.pop(router.id, None)

    @property
    def webrtc_servers(self) -> list[WebRtcServer]:
        return list(self._webrtc_servers.values())

    async def create_webrtc_server(self, *, listen_infos: list[dict],
                                   app_data: Any = None) -> WebRtcServer:
        """One UDP and/or TCP port per listen info ({protocol, ip, announcedAddress?, port?}),
        shared by the WebRTC transports created with ``webrtc_server=`` it."""
        self._ensure_open()
        infos = validate_listen_infos(listen_infos)
        server_id = str(uuid.uuid4())
        data = await self._channel.request(WorkerMethod.CREATE_WEBRTC_SERVER, WORKER_HANDLER_ID,
                                           {"webRtcServerId": server_id, "listenInfos": infos})
        server = WebRtcServer(self._channel, server_id, data if isinstance(data, dict) else {},
                              app_data, on_close=self._webrtc_server_closed)
        if self._closed:
            server._worker_closed()
            raise InvalidStateError("worker closed")
        self._webrtc_servers[server_id] = server
        return server

    def _webrtc_server_closed(self, server: WebRtcServer) -> None:
        self._webrtc_servers.pop(server.id, None)


async def create_worker(*, log_level: str = "warn", rtc_min_port: int = 10000,
                        rtc_max_port: int = 59999, send_mode: str = "auto",
                        app_data: Any = None, start_timeout: float = 15.0,
                        dtls_certificate_file: str | None = None,
                        dtls_private_key_file: str | None = None,
                        request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> Worker:
    """Spawn a worker process and wait until it runs.

    Every request to it (and to its routers, transports, ...) fails with
    RequestTimeoutError after ``request_timeout`` seconds without an answer (plus 0.1 s per
    request already pending). Raises ArgumentError for bad settings and WorkerStartError if
    the process exits (or does not report "running" within ``start_timeout`` seconds)
    before it is ready.
    """
    if log_level not in LOG_LEVELS:
        raise ArgumentError(f"log_level must be one of {LOG_LEVELS}")
    for name, value in (("rtc_min_port", rtc_min_port), ("rtc_max_port", rtc_max_port)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
            raise ArgumentError(f"{name} must be an integer in 1..65535")
    if rtc_min_port > rtc_max_port:
        raise ArgumentError("rtc_min_port must not be greater than rtc_max_port")
    if send_mode not in SEND_MODES:
        raise ArgumentError(f"send_mode must be one of {SEND_MODES}")
    if not isinstance(start_timeout, (int, float)) or start_timeout <= 0:
        raise ArgumentError("start_timeout must be a positive number")
    request_timeout = check_timeout(request_timeout, "request_timeout")
    if bool(dtls_certificate_file) != bool(dtls_private_key_file):
        raise ArgumentError("give both dtls_certificate_file and dtls_private_key_file, or neither")
    dtls_args: list[str] = []
    if dtls_certificate_file:
        dtls_args = ["--dtls-certificate-file", os.path.abspath(dtls_certificate_file),
                     "--dtls-private-key-file", os.path.abspath(str(dtls_private_key_file))]

    loop = asyncio.get_running_loop()
    request_read, request_write = os.pipe()
    response_read, response_write = os.pipe()
    env = dict(os.environ)
    # The worker must import this very copy of relay, wherever the controller found it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    # `python -m` would put the current directory before PYTHONPATH, so a checkout of relay
    # there (or anything named relay) would win; Python 3.11's safe path keeps it out.
    env["PYTHONSAFEPATH"] = "1"
    env["RELAY_SEND_MODE"] = send_mode
    args = [sys.executable, "-m", "relay.worker",
            "--request-fd", str(request_read), "--response-fd", str(response_write),
            "--protocol-version", str(PROTOCOL_VERSION), "--log-level", log_level,
            "--rtc-min-port", str(rtc_min_port), "--rtc-max-port", str(rtc_max_port),
            "--send-mode", send_mode, *dtls_args]
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, pass_fds=(request_read, response_write), env=env)
    except BaseException:
        os.close(request_write)
        os.close(response_read)
        raise
    finally:  # the child's ends: keeping them open here would hide the worker's exit (no EOF)
        os.close(request_read)
        os.close(response_write)
    settings = {"logLevel": log_level, "rtcMinPort": rtc_min_port, "rtcMaxPort": rtc_max_port,
                "sendMode": send_mode}
    channel = Channel(loop, request_write, response_read, request_timeout=request_timeout)
    worker = Worker(process, channel, settings, app_data)
    channel._on_eof_cb = worker._on_channel_eof
    await worker._start(start_timeout)
    logger.debug("worker %d running", worker.pid)
    return worker
