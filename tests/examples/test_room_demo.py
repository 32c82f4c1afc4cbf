"""The browser room demo end to end: examples/room/server.py (aiohttp + relay) and two
headless Chromium pages (Debian's /usr/bin/chromium, fake camera and microphone) driven
by playwright-core: one publishes (video as three simulcast encodings by RID, which relay
must bind from the rtp-stream-id extension), the other must decode the video through relay
(its `framesDecoded` grows). A screenshot of the watcher goes to artifacts/room-demo.png.

Needs what `bash scripts/dev.sh setup` installs: chromium, node, and `npm ci` + the bundle
in examples/room. Nothing reaches the network: Chromium runs with networking features off
and the page only talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOM = ROOT / "examples" / "room"
DRIVER = Path(__file__).with_name("room_browser_driver.mjs")
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the room server did not start")


def test_browser_publishes_and_another_page_decodes_through_relay():
    missing = [what for what, ok in (
        ("/usr/bin/chromium", os.path.exists("/usr/bin/chromium")),
        ("node", shutil.which("node") is not None),
        ("examples/room/node_modules", (ROOM / "node_modules" / "playwright-core").exists()),
        ("examples/room/public/bundle.js", (ROOM / "public" / "bundle.js").exists()),
    ) if not ok]
    assert not missing, f"run `bash scripts/dev.sh setup` first; missing: {missing}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "room-demo.png"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOM / "server.py"), "--host", "127.0.0.1", "--port", str(port),
         "--webrtc-server", "--rtc-min-port", "46000", "--rtc-max-port", "46999"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        wait_for_port(port, server)
        with tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile:
            run = subprocess.run(
                ["node", str(DRIVER), f"http://127.0.0.1:{port}/", str(screenshot), profile],
                capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stderr[-2000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert "error" not in result, result["error"] + "\n" + run.stderr[-2000:]
        frames = [s["videos"][0]["framesDecoded"] for s in result["samples"]]
        assert frames[-1] > frames[0] and frames[-1] > 0, frames
        assert result["samples"][-1]["videos"][0]["width"] > 0
        assert not result["samples"][-1]["videos"][0]["paused"]
        assert screenshot.stat().st_size > 0
        # The page publishes video as three simulcast encodings by RID (mediasoup-client's
        # r0..r2); relay must have bound the layers Chrome sends to them by the RID header
        # extension. Chrome sends the top layer only once its bandwidth estimate allows,
        # so at least the two lower ones.
        (video,) = [p for p in result["published"] if p["kind"] == "video"]
        assert video["rids"] == ["r0", "r1", "r2"], video
        bound = [s for s in video["stats"] if s["ssrc"] is not None and s["packetsReceived"] > 0]
        assert [s["rid"] for s in video["stats"]] == ["r0", "r1", "r2"], video
        assert len(bound) >= 2, video
        assert len({s["ssrc"] for s in bound}) == len(bound)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
