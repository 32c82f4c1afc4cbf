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
import subprocess
import tempfile
from pathlib import Path

from room_server import ARTIFACTS, missing_browser_setup, room_server

DRIVER = Path(__file__).with_name("room_browser_driver.mjs")


def test_browser_publishes_and_another_page_decodes_through_relay():
    missing = missing_browser_setup()
    assert not missing, f"run `bash scripts/dev.sh setup` first; missing: {missing}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "room-demo.png"
    with room_server(46000, 46999, ARTIFACTS / "room-demo-server.log") as url:
        with tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile:
            run = subprocess.run(["node", str(DRIVER), url, str(screenshot), profile],
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
