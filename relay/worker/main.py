"""The worker process: parse settings, check the protocol version, serve the channel.

Lifecycle: "running" notification once requests are accepted; exits 0 on EOF of the request
pipe (the controller is gone), on SIGTERM, or after a worker.close request. A request that
crashes gets an error response; the process never dies of one. SIGINT is ignored: a Ctrl-C in
the controller's terminal is the controller's to handle (its exit closes our pipe); so are
SIGHUP, SIGPIPE, SIGALRM, SIGUSR1 and SIGUSR2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

from relay.transport.port_allocator import PortAllocator
from worker_proto.errors import WorkerStartError, start_error_line
from worker_proto.methods import WORKER_HANDLER_ID, WorkerEvent
from worker_proto.version import PROTOCOL_VERSION

from .channel import WorkerChannel
from .context import WorkerContext
from .handlers import WorkerHandler

logger = logging.getLogger("relay.worker.main")

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_PROTOCOL_MISMATCH = 3

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR, "none": logging.CRITICAL + 1}
SEND_MODES = ("auto", "zerocopy", "copy", "socket")

_WIRE_LEVEL = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m relay.worker")
    parser.add_argument("--request-fd", type=int, default=3,
                        help="fd the worker reads request frames from")
    parser.add_argument("--response-fd", type=int, default=4,
                        help="fd the worker writes response/notification/log frames to")
    parser.add_argument("--protocol-version", type=int, required=True)
    parser.add_argument("--log-level", choices=tuple(LOG_LEVELS), default="warn")
    parser.add_argument("--rtc-min-port", type=int, default=10000)
    parser.add_argument("--rtc-max-port", type=int, default=59999)
    parser.add_argument("--dtls-certificate-file", default=None)
    parser.add_argument("--dtls-private-key-file", default=None)
    parser.add_argument("--send-mode", choices=SEND_MODES,
                        default=os.environ.get("RELAY_SEND_MODE", "auto"))
    args = parser.parse_args(argv)
    if not 1 <= args.rtc_min_port <= args.rtc_max_port <= 65535:
        parser.error("need 1 <= --rtc-min-port <= --rtc-max-port <= 65535")
    if bool(args.dtls_certificate_file) != bool(args.dtls_private_key_file):
        parser.error("give both --dtls-certificate-file and --dtls-private-key-file, or neither")
    return args


class ChannelLogHandler(logging.Handler):
    """Sends log records as "log" messages.

    Records logged before the channel opens are held (bounded) and sent once it does; after
    it closes they go to stderr as ``<level>:<logger>:<message>``, which the controller
    parses back into a level.
    """

    MAX_EARLY_RECORDS = 1000

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._thread = threading.get_ident()
        self._channel: WorkerChannel | None = None
        self._early: list[tuple[str, str, str]] | None = []

    def attach(self, channel: WorkerChannel | None) -> None:
        """Route records to ``channel`` (flushing held ones); None routes them to stderr."""
        self._channel = channel
        early, self._early = self._early, None
        if channel is not None and early:
            for level, name, text in early:
                channel.log(level, name, text)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            level = _WIRE_LEVEL.get(record.levelno, "error")
            channel = self._channel
            if channel is None and self._early is not None:
                if len(self._early) < self.MAX_EARLY_RECORDS:
                    self._early.append((level, record.name, text))
            elif channel is None or not channel.is_open:
                sys.stderr.write(f"{level}:{record.name}:{text}\n")
                sys.stderr.flush()
            elif threading.get_ident() == self._thread:
                channel.log(level, record.name, text)
            else:  # the channel's transport is not thread-safe
                self._loop.call_soon_threadsafe(channel.log, level, record.name, text)
        except Exception:  # noqa: BLE001 - logging must never take the worker down
            self.handleError(record)

    def flush_early_to_stderr(self) -> None:
        """Startup failed before the channel opened: don't lose what was logged."""
        early, self._early = self._early, None
        for level, name, text in early or ():
            sys.stderr.write(f"{level}:{name}:{text}\n")
        sys.stderr.flush()


def _create_send_ring(send_mode: str) -> Any:
    from relay.uring import SendRing

    return SendRing(slots=4096, slot_size=1500, mode=send_mode)


def _create_port_allocator(min_port: int, max_port: int) -> Any:
    return PortAllocator(min_port, max_port)


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    log_handler = ChannelLogHandler(loop)
    log_handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("relay")
    root.handlers[:] = [log_handler]
    root.setLevel(LOG_LEVELS[args.log_level])
    root.propagate = False

    stop = asyncio.Event()
    reason = {"why": ""}

    def request_stop(why: str) -> None:
        if not stop.is_set():
            reason["why"] = why
            stop.set()

    os.environ["RELAY_SEND_MODE"] = args.send_mode
    try:
        # The DTLS certificate of every WebRTC transport: generated (ECDSA P-256) or loaded
        # once, at start, so a bad file fails the start, not a transport.
        from relay.transport.dtls import worker_certificate

        worker_certificate(args.dtls_certificate_file, args.dtls_private_key_file)
        ring = _create_send_ring(args.send_mode)
        if hasattr(ring, "attach"):  # reap send completions from this loop (eventfd)
            ring.attach(loop)
    except WorkerStartError as exc:  # e.g. an explicit send mode this host cannot give
        log_handler.flush_early_to_stderr()
        sys.stderr.write(start_error_line(exc) + "\n")  # raised by type in the controller
        sys.stderr.flush()
        return EXIT_FATAL
    except Exception:
        log_handler.flush_early_to_stderr()
        raise
    settings = {"logLevel": args.log_level, "rtcMinPort": args.rtc_min_port,
                "rtcMaxPort": args.rtc_max_port, "sendMode": args.send_mode}
    ctx = WorkerContext(loop=loop, ring=ring,
                        ports=_create_port_allocator(args.rtc_min_port, args.rtc_max_port),
                        settings=settings)
    channel = WorkerChannel(loop, args.request_fd, args.response_fd, ctx.handlers,
                            on_eof=lambda: request_stop("request pipe closed"))
    worker = WorkerHandler(ctx, request_close=lambda: request_stop("worker.close"),
                           channel_stats=lambda: dict(channel.stats))
    ctx.handlers[WORKER_HANDLER_ID] = worker
    ctx.notify = channel.notify
    await channel.open()
    log_handler.attach(channel)
    loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")

    channel.notify(WORKER_HANDLER_ID, WorkerEvent.RUNNING, {
        "pid": os.getpid(),
        "protocolVersion": PROTOCOL_VERSION,
        "sendMode": getattr(ring, "mode", None),
    })
    logger.debug("worker %d running (send mode %s)", os.getpid(), getattr(ring, "mode", None))

    await stop.wait()
    logger.debug("worker %d closing: %s", os.getpid(), reason["why"])
    await channel.wait_pending()
    await worker.close_routers()
    try:
        ring.close()
    except Exception:  # noqa: BLE001 - still exit cleanly
        logger.exception("closing the send ring failed")
    await channel.drain()
    log_handler.attach(None)
    channel.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.protocol_version != PROTOCOL_VERSION:
        sys.stderr.write(
            f"relay worker: protocol version mismatch: controller speaks "
            f"{args.protocol_version}, this worker speaks {PROTOCOL_VERSION}\n"
        )
        return EXIT_PROTOCOL_MISMATCH
    # Signals that would otherwise kill us for reasons that are not ours to act on: SIGINT
    # (Ctrl-C belongs to the controller), SIGHUP (terminal gone), SIGPIPE (handled as EPIPE),
    # stray SIGALRM/SIGUSR1/SIGUSR2. SIGTERM is the way to stop a worker.
    for name in ("SIGINT", "SIGHUP", "SIGPIPE", "SIGALRM", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(serve(args))
    return uvloop.run(serve(args))
