"""The room demo's server (examples/room/server.py) as the browser tests start it: what they
need installed, a context manager that runs the server on a free local port, and what the
pages reported going wrong."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOM = ROOT / "examples" / "room"
ARTIFACTS = ROOT / "artifacts"


def missing_browser_setup() -> list[str]:
    """What `bash scripts/dev.sh setup` should have installed and has not."""
    return [what for what, ok in (
        ("/usr/bin/chromium", os.path.exists("/usr/bin/chromium")),
        ("node", shutil.which("node") is not None),
        ("examples/room/node_modules", (ROOM / "node_modules" / "playwright-core").exists()),
        ("examples/room/public/bundle.js", (ROOM / "public" / "bundle.js").exists()),
    ) if not ok]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the room server did not start")


@contextmanager
def room_server(rtc_min_port: int, rtc_max_port: int, log: Path) -> Iterator[str]:
    """Run server.py with one WebRtcServer (media ports in the given range) on 127.0.0.1,
    its output to `log` (a file: a pipe nobody reads would block it); yields the room's URL."""
    port = free_port()
    log.parent.mkdir(exist_ok=True)
    log_file = log.open("wb")
    server = subprocess.Popen(
        [sys.executable, str(ROOM / "server.py"), "--host", "127.0.0.1", "--port", str(port),
         "--webrtc-server", "--rtc-min-port", str(rtc_min_port),
         "--rtc-max-port", str(rtc_max_port)],
        stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        wait_for_port(port, server, log)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log_file.close()


def page_problems(samples: list[dict]) -> list[str]:
    """What any page reported going wrong (the app's `roomProblems()`: a failed consume, a
    failed transport, an error), from the last sample, which holds everything since the
    page loaded."""
    found = []
    for page in samples[-1]["pages"] if samples else ():
        for problem in page.get("problems") or ():
            found.append(f"page {page['peer']} at {problem['at']:.1f} s after it loaded: "
                         f"{problem['text']}")
    return found
