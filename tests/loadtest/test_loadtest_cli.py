"""relay-loadtest end to end: real workers, real sockets on 127.0.0.1, the CLI in a
subprocess. At low rates every count must add up exactly (nothing lost, nothing duplicated)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

STEP_FIELDS = {
    "mode", "target", "rate", "duration", "interrupted", "packetsIn", "inputPps", "expected",
    "packetsOut", "forwardedPps", "deliveryRatio", "perConsumerMinRatio",
    "perConsumerMinPackets", "perConsumer", "duplicates", "stale", "malformed", "unknown",
    "rtcpPackets", "stunPackets", "stunErrors", "dtlsPackets", "srtpFailures", "sendErrors", "latencyUs", "workerCpuPercent", "workerRssBytes",
    "sendRing", "passed", "workerRunqueueWaitPercent", "latePackets", "onTimeRatio", "harness", "loadAverage1m",
    "rtcpAtSenders", "transportCcFeedbackPackets", "receiveFeedback",
}
HARNESS_FIELDS = {"cpuPercent", "recvCalls", "packetsPerRecvCall", "kernelTimestamps",
                  "pollIntervalMs", "runqueueWaitPercent"}
RING_FIELDS = {"mode", "zeroCopyEnabled", "submits", "sqesSubmitted", "sqesPerSubmit",
               "zcNotifications", "exhaustionDrops"}
TOP_FIELDS = {"tool", "startedAt", "config", "scenario", "machine", "pinning", "harness",
              "modes", "selfTest", "interrupted", "errors"}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_cli(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess,
                                                                       dict | None]:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "relay.loadtest", "--warmup", "0", "--json", str(out), *args],
        capture_output=True, text=True, timeout=timeout, env=_env(), cwd=tmp_path)
    data = json.loads(out.read_text()) if out.exists() else None
    return proc, data


def assert_exact(step: dict, fanout: int, relay: bool = True) -> None:
    assert step["passed"] and not step["interrupted"]
    assert step["packetsIn"] > 0
    assert step["expected"] == step["packetsIn"] * fanout
    assert step["packetsOut"] == step["expected"], step
    assert step["duplicates"] == step["stale"] == step["malformed"] == step["unknown"] == 0
    assert step["srtpFailures"] == step["sendErrors"] == 0
    assert step["deliveryRatio"] == step["perConsumerMinRatio"] == 1.0
    assert STEP_FIELDS <= set(step)
    assert HARNESS_FIELDS <= set(step["harness"])
    # every datagram (media, the worker's RTCP, STUN answers) carried the kernel's arrival time
    assert step["harness"]["kernelTimestamps"] == step["packetsOut"] + step["rtcpPackets"] \
        + step["stunPackets"] + step["dtlsPackets"]
    lat = step["latencyUs"]
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert step["workerRssBytes"] > 0 and step["workerCpuPercent"] is not None
    if relay:
        assert RING_FIELDS <= set(step["sendRing"])
        assert step["sendRing"]["sendsQueued"] >= step["packetsOut"]  # + RTCP reports


@pytest.mark.parametrize("args, fanout, per_consumer_equal", [
    (["--consumers", "3"], 3, True),
    (["--consumers", "2", "--srtp"], 2, True),
    (["--consumers", "2", "--kind", "video", "--streams", "2"], 4, True),
    (["--scenario", "rooms", "--rooms", "2", "--participants", "3", "--srtp"], 12, False),
], ids=["fanout-audio", "fanout-audio-srtp", "fanout-video", "rooms-audio-srtp"])
def test_fixed_rate_counts_add_up_exactly(tmp_path, args, fanout, per_consumer_equal):
    proc, data = run_cli(tmp_path, "--rate", "300", "--duration", "1", *args)
    assert proc.returncode == 0, proc.stderr
    assert TOP_FIELDS <= set(data)
    assert data["interrupted"] is False and data["errors"] == []
    (entry,) = data["modes"].values()
    (step,) = entry["steps"]
    streams = data["scenario"]["streams"]
    assert data["scenario"]["consumers"] == fanout
    # every stream has as many consumers, so packetsIn x consumers-per-stream == expected
    assert_exact(step, fanout // streams)
    assert len(step["perConsumer"]) == fanout
    if per_consumer_equal:  # each consumer got every packet of its stream
        # (video streams' frames are out of step, so their counts may differ by a frame)
        assert sum(step["packetsInPerStream"]) == step["packetsIn"]
        assert sorted(step["perConsumer"]) == sorted(
            sent for sent in step["packetsInPerStream"] for _ in range(fanout // streams))
    assert entry["workerExitCode"] == 0
    # the generator's own timing (its late rounds send bursts the rate does not imply)
    assert 0 < step["generatorMaxGapUs"] < step["duration"] * 1e6
    assert 0 <= step["generatorLateRounds"]
    assert entry["webrtc"] is None and data["scenario"]["transport"] == "plain"
    assert step["stunPackets"] == step["dtlsPackets"] == 0
    assert "pass" in proc.stdout and "min on time" in proc.stdout
    quality = entry["quality"]  # --quality on is the default: NACK negotiated everywhere
    assert quality["requested"] == "on"
    assert quality["consumersWithNack"] == quality["consumers"] == fanout
    assert quality["producerStreamsWithRetransmissionStore"] == streams


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_quality_both_compares_nack_and_rtcp_on_with_off(tmp_path, kind):
    proc, data = run_cli(tmp_path, "--rate", "300", "--duration", "1", "--consumers", "2",
                         "--kind", kind, "--send-mode", "copy", "--quality", "both")
    assert proc.returncode == 0, proc.stderr
    assert list(data["modes"]) == ["copy quality-off", "copy quality-on"]
    pids = set()
    for label, entry in data["modes"].items():
        (step,) = entry["steps"]
        assert_exact(step, 2)
        assert step["mode"] == label and entry["sendMode"] == "copy"
        on = label.endswith("-on")
        quality = entry["quality"]
        assert quality["requested"] == ("on" if on else "off")
        assert quality["consumersWithNack"] == (2 if on else 0) and quality["consumers"] == 2
        assert quality["producerStreamsWithRetransmissionStore"] == (1 if on else 0)
        pids.add(entry["workerPid"])
    assert len(pids) == 2  # one worker each
    comparison = data["comparison"]
    assert comparison["baseline"] == "copy quality-off"
    assert set(comparison["forwardedRatio"]) == set(data["modes"])


def test_search_in_every_send_mode_with_plot_and_self_test(tmp_path):
    plot = tmp_path / "rates.png"
    proc, data = run_cli(
        tmp_path, "--search", "--send-mode", "all", "--consumers", "2", "--start-rate", "200",
        "--max-rate", "400", "--step-duration", "0.5", "--max-steps", "2", "--self-test",
        "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    assert list(data["modes"]) == ["zerocopy", "copy", "socket"]
    order = []
    for mode, entry in data["modes"].items():
        assert [s["rate"] for s in entry["steps"]] == [200, 400]
        for step in entry["steps"]:
            assert_exact(step, 2)
            assert step["sendRing"]["mode"] in (mode, "copy", "socket")
        assert entry["search"]["bestRate"] == 400 and entry["search"]["firstFailingRate"] is None
        order.append(entry["workerPid"])
    assert len(set(order)) == 3
    comparison = data["comparison"]
    assert comparison["baseline"] == "zerocopy"
    assert comparison["forwardedRatio"]["zerocopy"] == 1.0
    assert set(comparison["forwardedRatio"]) == {"zerocopy", "copy", "socket"}
    st = data["selfTest"]
    assert st["steps"] and st["steps"][0]["rate"] == 800  # 2x the best relay rate
    assert_exact(st["steps"][0], 2, relay=False)
    reflected = st["steps"][0]["reflector"]  # the reflector's own counters agree
    assert reflected["received"] == st["steps"][0]["packetsIn"]
    assert reflected["sent"] == 2 * reflected["received"] and reflected["sendErrors"] == 0
    assert reflected["gso"] is True
    assert st["sustains2x"] is True and st["headroom"] >= 2
    assert st["verdict"].startswith("reflector sustained")
    assert st["harnessCpuPercentAtRelayRate"] is not None
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Highest rate" in proc.stdout and "reflector" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--consumers", "0"], "--consumers must be at least 1"),
    (["--scenario", "rooms", "--participants", "1"], "--participants must be at least 2"),
    (["--rate", "-5"], "--rate must be a positive number"),
    (["--search", "--start-rate", "5000", "--max-rate", "100"], "is below --start-rate"),
    (["--srtp-suite", "ROT13"], "--srtp-suite must be one of"),
    (["--plot", "out.jpg"], "ending in .png"),
    (["--json", "/nonexistent-dir/x.json"], "does not exist"),
    (["--port-min", "65500", "--consumers", "100"], "does not fit"),
    (["--send-mode", "fast"], "--send-mode: 'fast' is not auto"),
    (["--poll-interval-ms", "50"], "--poll-interval-ms must be in 0..20"),
    (["--late-after-ms", "0"], "--late-after-ms must be positive"),
    (["--kind", "video", "--rate", "40000"], "at most 1000 packets per frame"),
])
def test_bad_configuration_is_a_clear_message(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "relay.loadtest", *args], capture_output=True,
                          text=True, timeout=30, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def _children(pid: int) -> list[int]:
    """The relay workers among ``pid``'s children (the harness may run short-lived helper
    processes too, which would vanish under the test)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    workers = []
    for child in map(int, text.split()):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if b"relay.worker" in cmdline:
            workers.append(child)
    return workers


def _sockets(pid: int) -> int:
    count = 0
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:  # exited: the wait's checks say why
        return 0
    for fd in fds:
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return count


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped between open and read
        return True
    return state in ("Z", "X")


def test_ctrl_c_stops_closes_the_worker_and_writes_what_was_measured(tmp_path):
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.loadtest", "--warmup", "0", "--consumers", "2",
         "--rate", "300", "--duration", "60", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not _children(proc.pid):  # the worker is up
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        workers = _children(proc.pid)
        # its three transports made (a loaded machine may take seconds to get there), then
        # some traffic
        while _sockets(workers[0]) < 3:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    (entry,) = data["modes"].values()
    (step,) = entry["steps"]
    assert step["interrupted"] is True and not step["passed"]
    assert step["packetsIn"] > 0 and step["packetsOut"] > 0
    assert step["duration"] < 30
    assert entry["workerExitCode"] == 0
    assert all(_gone(pid) for pid in workers)
