"""--soak: one fixed rate for a long time, watching the worker for growth.

Every ``interval`` seconds (without pausing the traffic) the worker's RSS (/proc) and its
send ring's slots (the worker dump's "sendRing": free, in flight, queued) are sampled, with
the packets sent and received so far. Before the traffic starts and after it has stopped the
worker is sampled idle. The verdict fails on growth:

- RSS: the least-squares slope over the second half of the traffic above ``max_slope``
  MB/min (when the fitted growth over that half also exceeds ``noise_mb``: a short soak's
  slope is mostly noise), or the last sample above the baseline by more than
  ``max_growth`` MB. The baseline is the first sample after the settling time (a tenth of
  the soak, at most a minute): retransmission stores fill in the first seconds.
- free slots: once the traffic has stopped and the tail has drained, every slot must be
  free again (waiting up to ``IDLE_WAIT`` seconds for the kernel's last completions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .step import ProgressCallback, run_step
from .traffic import Traffic

IDLE_WAIT = 5.0
MAX_SETTLE = 60.0
MB = 1e6


@dataclass
class SoakLimits:
    interval: float = 5.0  # seconds between samples
    max_slope: float = 1.0  # MB/min over the second half
    max_growth: float = 8.0  # MB, last sample over the baseline
    noise_mb: float = 1.0  # fitted growth below this over the second half is noise


class SoakSampler:
    """Takes a sample every ``interval`` seconds of the step, from the step's progress
    callback: the sample is a task, so the generator never waits for the worker's answer."""

    def __init__(self, target: Any, interval: float, started: float) -> None:
        self.target = target
        self.interval = interval
        self.started = started
        self.samples: list[dict[str, Any]] = []
        self._next = 0.0
        self._tasks: set[asyncio.Task] = set()

    async def sample(self, phase: str, sent: int | None = None,
                     received: int | None = None) -> dict[str, Any]:
        t = time.monotonic() - self.started
        ring = await self.target.send_ring()
        proc = self.target.sample()
        entry = {"t": round(t, 3), "phase": phase,
                 "rssBytes": proc.rss_bytes if proc else None,
                 "slotsTotal": ring.get("slotsTotal"), "slotsFree": ring.get("slotsFree"),
                 "slotsInFlight": ring.get("slotsInFlight"),
                 "slotsQueued": ring.get("slotsQueued"),
                 "exhaustionDrops": ring.get("exhaustionDrops"),
                 "sent": sent, "received": received}
        self.samples.append(entry)
        return entry

    def on_progress(self, elapsed: float, sent: int, received: int) -> None:
        if elapsed < self._next:
            return
        self._next = elapsed + self.interval
        task = asyncio.get_running_loop().create_task(self.sample("traffic", sent, received))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks)


def _slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) points, in MB per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60 / MB


def soak_verdict(samples: list[dict[str, Any]], duration: float,
                 limits: SoakLimits) -> dict[str, Any]:
    """RSS and free-slot figures of a soak, and whether it grew (see the module doc)."""
    traffic = [s for s in samples if s["phase"] == "traffic" and s["rssBytes"] is not None]
    idle_before = [s for s in samples if s["phase"] == "idle-before"]
    idle_after = [s for s in samples if s["phase"] == "idle-after"]
    failures: list[str] = []
    rss: dict[str, Any] = {"maxSlopeMBPerMin": limits.max_slope,
                           "maxGrowthMB": limits.max_growth, "noiseMB": limits.noise_mb}
    if traffic:
        t0 = traffic[0]["t"]
        settle = min(MAX_SETTLE, max(limits.interval, 0.1 * duration))
        baseline = next((s for s in traffic if s["t"] - t0 >= settle), traffic[0])
        end = traffic[-1]
        half = [(s["t"], s["rssBytes"]) for s in traffic if s["t"] - t0 >= duration / 2]
        slope = _slope_mb_per_min(half)
        window_min = (half[-1][0] - half[0][0]) / 60 if len(half) > 1 else 0.0
        growth = (end["rssBytes"] - baseline["rssBytes"]) / MB
        rss.update({
            "idleBeforeBytes": idle_before[0]["rssBytes"] if idle_before else None,
            "baselineBytes": baseline["rssBytes"], "baselineAt": baseline["t"],
            "endBytes": end["rssBytes"], "growthMB": round(growth, 3),
            "secondHalfSlopeMBPerMin": round(slope, 4) if slope is not None else None,
            "secondHalfSamples": len(half),
            "idleAfterBytes": idle_after[-1]["rssBytes"] if idle_after else None})
        if slope is not None and slope > limits.max_slope \
                and slope * window_min > limits.noise_mb:
            failures.append(f"RSS grows {slope:.2f} MB/min over the second half "
                            f"(limit {limits.max_slope:g})")
        if growth > limits.max_growth:
            failures.append(f"RSS grew {growth:.1f} MB from {baseline['rssBytes'] / MB:.1f} "
                            f"MB (limit {limits.max_growth:g} MB)")
    else:
        failures.append("no RSS sample during the traffic")
    total = (idle_after or idle_before or [{}])[-1].get("slotsTotal")
    slots: dict[str, Any] = {
        "total": total,
        "idleBefore": idle_before[0]["slotsFree"] if idle_before else None,
        "minDuringTraffic": min((s["slotsFree"] for s in traffic), default=None),
        "endOfTraffic": traffic[-1]["slotsFree"] if traffic else None,
        "idleAfter": idle_after[-1]["slotsFree"] if idle_after else None,
        "idleWaitSeconds": round(idle_after[-1]["t"] - idle_after[0]["t"], 3)
        if idle_after else None}
    slots["returnedToTotal"] = slots["idleAfter"] is not None and slots["idleAfter"] == total
    if not slots["returnedToTotal"]:
        failures.append(f"free slots did not return to {total} at idle "
                        f"(still {slots['idleAfter']} free after {IDLE_WAIT:g} s)")
    return {"rss": rss, "freeSlots": slots, "passed": not failures, "failures": failures}


async def run_soak(target: Any, traffic: Traffic, rate: float, duration: float,
                   limits: SoakLimits, *, threshold: float,
                   on_progress: ProgressCallback | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   poll_interval: float = 0.001) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the step, the soak: samples and verdict) of `duration` seconds at `rate`."""
    sampler = SoakSampler(target, limits.interval, time.monotonic())
    await sampler.sample("idle-before")

    def progress(elapsed: float, sent: int, received: int) -> None:
        sampler.on_progress(elapsed, sent, received)
        if on_progress:
            on_progress(elapsed, sent, received)

    traffic_start = time.monotonic() - sampler.started
    step = await run_step(target, traffic, rate, duration, threshold=threshold,
                          on_progress=progress, should_stop=should_stop,
                          poll_interval=poll_interval)
    await sampler.finish()
    # Idle: the step has drained the tail; wait for the ring's last completions.
    deadline = time.monotonic() + IDLE_WAIT
    while True:
        idle = await sampler.sample("idle-after")
        if idle["slotsFree"] == idle["slotsTotal"] or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    verdict = soak_verdict(sampler.samples, step["duration"], limits)
    soak = {"rate": rate, "durationSeconds": step["duration"], "intervalSeconds": limits.interval,
            "trafficSeconds": [round(traffic_start, 3),
                               round(traffic_start + step["duration"], 3)],
            "interrupted": step["interrupted"], "samples": sampler.samples, **verdict}
    if step["interrupted"]:
        soak["passed"] = False
        soak["failures"].append("interrupted before the end")
    return step, soak
