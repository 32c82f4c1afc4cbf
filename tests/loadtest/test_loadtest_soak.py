"""relay-loadtest --soak: a short real soak end to end (RSS and free ring slots sampled while
the traffic runs, the JSON, the plot, exit 0 when flat), the growth verdict on its own, and
a soak whose worker RSS grows exiting 3."""

from __future__ import annotations

import json
import time

import pytest
from test_loadtest_cli import assert_exact, run_cli

import relay.loadtest.relay_target as relay_target_module
from relay.loadtest.__main__ import EXIT_SOAK_GREW, main
from relay.loadtest.config import ConfigError, from_args
from relay.loadtest.proc_stats import ProcessSample
from relay.loadtest.soak import SoakLimits, soak_verdict

MB = 1_000_000


def test_short_soak_samples_rss_and_free_slots_and_passes_when_flat(tmp_path):
    plot = tmp_path / "soak.png"
    proc, data = run_cli(tmp_path, "--soak", "10s", "--soak-interval", "1", "--rate", "1000",
                         "--consumers", "2", "--plot", str(plot), timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (entry,) = data["modes"].values()
    (step,) = entry["steps"]
    assert_exact(step, 2)  # the soak's traffic is counted like any step
    assert 9.5 <= step["duration"] <= 11
    soak = entry["soak"]
    assert soak["passed"] and soak["failures"] == []
    phases = [s["phase"] for s in soak["samples"]]
    assert phases[0] == "idle-before" and phases[-1] == "idle-after"
    traffic = [s for s in soak["samples"] if s["phase"] == "traffic"]
    assert 9 <= len(traffic) <= 12  # one a second, while the traffic ran
    times = [s["t"] for s in traffic]
    assert all(0.5 < b - a < 1.6 for a, b in zip(times, times[1:], strict=False))
    start, end = soak["trafficSeconds"]
    assert start <= times[0] and times[-1] <= end + 0.2
    sent = [s["sent"] for s in traffic]
    assert sent == sorted(sent) and sent[-1] > 8000  # sampled without stopping the traffic
    pid_rss = [s["rssBytes"] for s in soak["samples"]]
    assert all(rss > 10 * MB for rss in pid_rss)
    slots = soak["freeSlots"]
    assert slots["total"] == 4096 and slots["returnedToTotal"]
    assert slots["idleBefore"] == slots["idleAfter"] == 4096
    rss = soak["rss"]
    assert rss["baselineBytes"] > 0 and rss["endBytes"] > 0
    assert rss["secondHalfSamples"] >= 4 and rss["secondHalfSlopeMBPerMin"] is not None
    assert abs(rss["growthMB"]) < 8
    assert plot.stat().st_size > 10_000
    assert "Soak: worker RSS and free send-ring slots" in proc.stdout and "flat" in proc.stdout


def _samples(rss_mb: list[float], interval: float = 5.0, free_after: int = 4096) -> list[dict]:
    def sample(t: float, phase: str, rss: float) -> dict:
        return {"t": t, "phase": phase, "rssBytes": int(rss * MB), "slotsTotal": 4096,
                "slotsFree": 4096, "slotsInFlight": 0, "slotsQueued": 0}

    out = [sample(0.0, "idle-before", rss_mb[0])]
    out += [sample(0.1 + i * interval, "traffic", v) for i, v in enumerate(rss_mb)]
    out.append({**sample(out[-1]["t"] + 1, "idle-after", rss_mb[-1]), "slotsFree": free_after})
    return out


def test_soak_verdict_flat_leaking_jumping_and_slots():
    limits = SoakLimits(interval=5.0, max_slope=1.0, max_growth=8.0, noise_mb=1.0)
    ten_minutes = 600.0
    # flat with noise, after the stores filled in the first seconds
    flat = [50.0, 58.0] + [60.0 + (0.3 if i % 3 else -0.3) for i in range(119)]
    assert soak_verdict(_samples(flat), ten_minutes, limits)["passed"]
    # a 2 MB/min leak: the slope over the second half says so
    leak = [60.0 + 2.0 * (i * 5 / 60) for i in range(121)]
    verdict = soak_verdict(_samples(leak), ten_minutes, limits)
    assert not verdict["passed"] and "MB/min" in verdict["failures"][0]
    assert verdict["rss"]["secondHalfSlopeMBPerMin"] == pytest.approx(2.0, rel=0.01)
    # a step up in the first half, flat afterwards: the growth from the baseline says so
    jump = [60.0] * 40 + [75.0] * 81
    verdict = soak_verdict(_samples(jump), ten_minutes, limits)
    assert not verdict["passed"] and "grew 15.0 MB" in verdict["failures"][0]
    # a 10 s soak's jitter is steep but tiny: below the noise floor, not a leak
    short = [60.0, 60.1, 60.0, 60.2, 60.1, 60.3, 60.2, 60.3, 60.4, 60.3]
    assert soak_verdict(_samples(short, interval=1.0), 10.0, limits)["passed"]
    # slots still held at idle
    verdict = soak_verdict(_samples(flat, free_after=4090), ten_minutes, limits)
    assert not verdict["passed"] and "free slots did not return to 4096" in verdict["failures"][0]
    assert verdict["freeSlots"]["returnedToTotal"] is False


def test_a_soak_whose_worker_grows_exits_3(tmp_path, monkeypatch, capsys):
    # The worker's RSS as /proc reports it, plus 2 MB per second from the first reading on:
    # the leak a soak is there to catch (the worker itself is real and does real work).
    real = relay_target_module.sample_process
    leak_started: list[float] = []

    def leaking(pid: int) -> ProcessSample | None:
        sample = real(pid)
        if sample is None:
            return None
        leak_started[:] = leak_started or [time.monotonic()]
        sample.rss_bytes += int((time.monotonic() - leak_started[0]) * 2 * MB)
        return sample

    monkeypatch.setattr(relay_target_module, "sample_process", leaking)
    out = tmp_path / "soak.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["--soak", "6", "--soak-interval", "0.5", "--rate", "500", "--consumers", "1",
              "--warmup", "0", "--no-pin", "--json", str(out)])
    assert exit_info.value.code == EXIT_SOAK_GREW
    soak = json.loads(out.read_text())["modes"]["auto"]["soak"]
    assert not soak["passed"]
    assert soak["rss"]["secondHalfSlopeMBPerMin"] == pytest.approx(120, rel=0.2)
    assert any("RSS grows" in f for f in soak["failures"])
    assert any("RSS grew" in f for f in soak["failures"])
    assert soak["freeSlots"]["returnedToTotal"]  # the ring itself was fine
    assert "GREW" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--soak", "10", "--search"], "--soak runs one fixed --rate"),
    (["--soak", "10", "--send-mode", "all"], "--soak watches one worker"),
    (["--soak", "10", "--quality", "both"], "--soak watches one worker"),
    (["--soak", "10", "--transport-cc", "both"], "--soak watches one worker"),
    (["--soak", "10", "--soak-interval", "6"], "--soak-interval must be positive"),
    (["--soak", "0"], "--soak must be a positive duration"),
    (["--soak", "ten"], "not a duration"),
])
def test_bad_soak_options_are_clear_messages(args, message, capsys):
    # from_args is what the CLI calls; a ConfigError or argparse's error exits 2 there.
    with pytest.raises((ConfigError, SystemExit)) as raised:
        from_args(args)
    if isinstance(raised.value, SystemExit):
        assert raised.value.code == 2
    text = str(raised.value) if isinstance(raised.value, ConfigError) else capsys.readouterr().err
    assert message in text
