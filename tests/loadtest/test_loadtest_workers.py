"""relay-loadtest --workers N: the fan-out on one worker and spread over N workers through
pipe transports, in the same run; every count adds up exactly at a low rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay.loadtest.runner import workers_at_common_rate

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "relay.loadtest", "--warmup", "0", *args],
                          capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)


def test_workers_spread_a_fanout_over_pipes_and_compare(tmp_path):
    out = tmp_path / "result.json"
    proc = _run(tmp_path, "--workers", "2", "--consumers", "4", "--rate", "300",
                "--duration", "1", "--srtp", "--send-mode", "copy", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert list(data["modes"]) == ["copy x1", "copy x2"]
    pids = []
    for label, entry in data["modes"].items():
        (step,) = entry["steps"]
        assert step["passed"] and step["packetsIn"] > 0
        assert step["packetsOut"] == step["expected"] == step["packetsIn"] * 4
        assert set(step["perConsumer"]) == {step["packetsIn"]}
        assert step["srtpFailures"] == step["duplicates"] == step["stale"] == 0
        assert entry["workers"] == (2 if label.endswith("x2") else 1)
        assert len(entry["workerPids"]) == entry["workers"] and entry["workerExitCode"] == 0
        pids += entry["workerPids"]
    assert len(set(pids)) == 3
    comparison = data["comparison"]
    assert comparison["baseline"] == "copy x1"
    assert set(comparison["perWorkerCpuSecondRatio"]) == {"copy x1", "copy x2"}
    assert comparison["perWorkerCpuSecondRatio"]["copy x1"] == 1.0
    assert "per worker-CPU second" in proc.stdout
    common = comparison["workersAtCommonRate"]["copy"]
    assert common["inputRate"] == 300 and common["ratio"]["copy x1"] == 1.0
    assert set(common["forwardedPerWorkerCpuSecond"]) == {"copy x1", "copy x2"}
    assert "at the highest input rate all passed" in proc.stdout


def test_common_rate_is_the_highest_both_twins_passed():
    def step(rate, passed, forwarded, cpu):
        return {"rate": rate, "passed": passed, "interrupted": False,
                "forwardedPps": forwarded, "workerCpuPercent": cpu}

    modes = {
        "copy x1": {"steps": [step(2000, True, 20000, 20), step(4000, True, 40000, 40),
                              step(8000, True, 80000, 80), step(16000, False, 90000, 99)]},
        "copy x2": {"steps": [step(2000, True, 20000, 25), step(4000, True, 40000, 50),
                              step(8000, False, 70000, 95), step(6000, True, 60000, 75)]},
    }
    (entry,) = workers_at_common_rate(modes).values()
    assert entry["inputRate"] == 4000
    assert entry["forwardedPerWorkerCpuSecond"] == {"copy x1": 100000.0, "copy x2": 80000.0}
    assert entry["ratio"] == {"copy x1": 1.0, "copy x2": 0.8}


def test_workers_over_webrtc_transports(tmp_path):
    """The same spread with ICE + DTLS-SRTP peers: sinks on both workers, exact counts."""
    out = tmp_path / "result.json"
    proc = _run(tmp_path, "--workers", "2", "--transport", "webrtc", "--consumers", "3",
                "--rate", "200", "--duration", "1", "--send-mode", "copy", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert list(data["modes"]) == ["copy x1", "copy x2"]
    for entry in data["modes"].values():
        (step,) = entry["steps"]
        assert step["passed"] and step["packetsIn"] > 0
        assert step["packetsOut"] == step["expected"] == step["packetsIn"] * 3
        assert step["srtpFailures"] == step["duplicates"] == step["stale"] == 0
        assert entry["webrtc"]["offeredSuite"]
    assert set(data["comparison"]["perWorkerCpuSecondRatio"]) == {"copy x1", "copy x2"}


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be in 1..16"),
    (["--workers", "17"], "--workers must be in 1..16"),
])
def test_bad_workers_option_is_a_clear_message(tmp_path, args, message):
    proc = _run(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
