"""The run: start one target per send mode (and the reflector for --self-test), pin them,
run the steps (a fixed rate, or interleaved searches), stop cleanly on Ctrl-C, and return
everything measured."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import time
from typing import Any

from rich.console import Console

from .config import LoadtestConfig, port_range
from .progress import StepProgress
from .rate_search import RateSearch
from .reflector_target import ReflectorTarget
from .relay_target import RelayTarget
from .soak import SoakLimits, run_soak
from .step import run_step
from .traffic import Traffic

SELF_TEST_HEADROOM = 2.0



def _starting_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except OSError:
        return set()


# The cores this process could use when it started: a run pins the harness to one of them,
# and the next run (a matrix runs many) must still choose from all of them, not from the
# harness's one (then worker and harness would share a core, unpinned).
_STARTING_CPUS = _starting_cpus()

class Run:
    def __init__(self, cfg: LoadtestConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.scenario = cfg.build_scenario()
        self.stopping = False
        self.result: dict[str, Any] = {
            "tool": "relay-loadtest",
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": cfg.as_dict(),
            "scenario": {"name": self.scenario.name, "kind": self.scenario.kind,
                         "description": self.scenario.describe(),
                         "streams": self.scenario.streams, "sinks": self.scenario.sinks,
                         "consumers": len(self.scenario.consumers),
                         "packetSize": self.scenario.packet_size,
                         "srtp": cfg.srtp_suite if cfg.srtp else None,
                         "transport": cfg.transport},
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version()},
            "pinning": {},
            "harness": {"generator": "C, sendmmsg (relay/loadtest/traffic_core.c)",
                        "sinks": "C, epoll + recvmmsg (relay/loadtest/traffic_core.c)"},
            "modes": {},
            "selfTest": None,
            "interrupted": False,
            "errors": [],
        }
        self.targets: list[tuple[Any, Traffic]] = []

    # -- set-up -------------------------------------------------------------------------

    def _pinning(self) -> tuple[set[int] | None, set[int] | None]:
        """(worker cpus, harness cpus): different cores when there are two."""
        if not self.cfg.pin:
            self.result["pinning"] = {"pinned": False, "reason": "--no-pin"}
            return None, None
        available = sorted(_STARTING_CPUS)
        if len(available) < 2:
            self.result["pinning"] = {"pinned": False,
                                      "reason": f"only {len(available)} usable core(s)"}
            return None, None
        worker_cpus, harness_cpus = {available[0]}, {available[1]}
        try:
            os.sched_setaffinity(0, harness_cpus)
        except OSError as exc:
            self.result["pinning"] = {"pinned": False, "reason": str(exc)}
            return None, None
        self.result["pinning"] = {"pinned": True, "harness": sorted(harness_cpus),
                                  "harnessPid": os.getpid(), "workers": sorted(worker_cpus)}
        return worker_cpus, harness_cpus

    async def _add_target(self, target: Any, worker_cpus: set[int] | None) -> Traffic:
        traffic = Traffic(self.scenario, srtp_suite=self.cfg.srtp_suite if self.cfg.srtp else None,
                          late_after=self.cfg.late_after_ms / 1000)
        self.targets.append((target, traffic))
        await target.start(worker_cpus)
        await target.build(self.scenario, traffic, traffic.srtp_suite)
        return traffic

    # -- steps --------------------------------------------------------------------------

    async def _step(self, progress: StepProgress, target: Any, traffic: Traffic, rate: float,
                    duration: float, record: list[dict]) -> dict:
        label = f"{target.label:>9} {rate:>10,.0f} pkt/s"
        task = progress.add_task(label, total=duration, status="")

        def update(elapsed: float, sent: int, received: int) -> None:
            expected = sent * len(self.scenario.consumers) / max(1, self.scenario.streams)
            ratio = received / expected if expected else 1.0
            progress.report(task, completed=min(elapsed, duration),
                            status=f"in {sent:,} out {received:,} ({ratio:6.1%})")

        step = await run_step(target, traffic, rate, duration, threshold=self.cfg.threshold,
                              on_progress=update, should_stop=lambda: self.stopping,
                              poll_interval=self.cfg.poll_interval_ms / 1000)
        step["loadAverage1m"] = round(os.getloadavg()[0], 2)
        mark = "[green]pass" if step["passed"] else (
            "[yellow]stopped" if step["interrupted"] else "[red]fail")
        progress.finish(task, completed=duration, status=(
            f"min {step['perConsumerMinRatio']:7.2%}  cpu {step['workerCpuPercent']}%  {mark}"))
        record.append(step)
        return step

    async def _soak(self, progress: StepProgress, target: Any, traffic: Traffic,
                    entry: dict) -> None:
        """--soak: one long step at --rate, sampling the worker as it goes (soak.py)."""
        cfg = self.cfg
        assert cfg.soak is not None
        task = progress.add_task(f"{target.label:>9} soak {cfg.rate:,.0f} pkt/s",
                                 total=cfg.soak, status="")

        def update(elapsed: float, sent: int, received: int) -> None:
            rss = (sample.rss_bytes / 1e6) if (sample := target.sample()) else 0.0
            progress.report(task, completed=min(elapsed, cfg.soak),
                            status=f"in {sent:,} out {received:,} rss {rss:.1f} MB")

        limits = SoakLimits(cfg.soak_interval, cfg.soak_max_slope, cfg.soak_max_growth)
        step, soak = await run_soak(target, traffic, cfg.rate, cfg.soak, limits,
                                    threshold=cfg.threshold, on_progress=update,
                                    should_stop=lambda: self.stopping,
                                    poll_interval=cfg.poll_interval_ms / 1000)
        step["loadAverage1m"] = round(os.getloadavg()[0], 2)
        entry["steps"].append(step)
        entry["soak"] = soak
        mark = "[green]flat" if soak["passed"] else "[red]GREW: " + "; ".join(soak["failures"])
        progress.finish(task, completed=cfg.soak, status=mark)

    async def _unmeasured(self, target: Any, traffic: Traffic, rate: float,
                          duration: float) -> None:
        """Traffic at `rate` for `duration`, kept out of the results."""
        await run_step(target, traffic, rate, duration, threshold=0.0,
                       should_stop=lambda: self.stopping,
                       poll_interval=self.cfg.poll_interval_ms / 1000)

    async def _warmup(self, target: Any, traffic: Traffic) -> None:
        if self.cfg.warmup > 0:
            rate = min(self.cfg.rate if not self.cfg.search else self.cfg.start_rate, 5000.0)
            await self._unmeasured(target, traffic, rate, self.cfg.warmup)

    async def _run_relay(self, progress: StepProgress) -> None:
        cfg = self.cfg
        entries = []
        for target, traffic in self.targets:
            if target.kind != "relay":
                continue
            entry = {"target": "relay", "workerPid": target.pid, "pinned": target.pinned,
                     "workers": target.worker_count,
                     "workerPids": [w.pid for w in target.workers],
                     "sendRingAtStart": target.initial_send_ring, "steps": [], "search": None,
                     "webrtc": target.webrtc,  # the same dict: consent counts keep updating
                     "sendMode": target.send_mode, "quality": target.quality_check,
                     "transportCc": target.transport_cc_check,
                     # the checkout the worker ran from, and the send ring module it loaded
                     "tree": target.tree_info()}
            self.result["modes"][target.label] = entry
            entries.append((target, traffic, entry))
        for target, traffic, _ in entries:
            if self.stopping:
                return
            await self._warmup(target, traffic)
        if cfg.soak is not None:
            for target, traffic, entry in entries:
                if not self.stopping:
                    await self._soak(progress, target, traffic, entry)
            return
        if not cfg.search:
            for target, traffic, entry in entries:
                if self.stopping:
                    return
                await self._step(progress, target, traffic, cfg.rate, cfg.duration,
                                 entry["steps"])
            return
        searches = {id(entry): RateSearch(cfg.start_rate, cfg.max_rate, cfg.precision,
                                          cfg.max_steps) for _, _, entry in entries}
        # Interleaved: one step of each mode per round, so drifting machine load hits all.
        while not self.stopping and not all(s.done for s in searches.values()):
            for target, traffic, entry in entries:
                search = searches[id(entry)]
                rate = search.next_rate()
                if rate is None or self.stopping:
                    continue
                step = await self._step(progress, target, traffic, rate, cfg.step_duration,
                                        entry["steps"])
                if not step["interrupted"]:
                    search.record(rate, step["passed"])
                entry["search"] = search_summary(search, entry["steps"])
        for _, _, entry in entries:
            entry["search"] = search_summary(searches[id(entry)], entry["steps"])
        if cfg.half_rate_latency:
            await self._half_rate(progress, entries)

    async def _half_rate(self, progress: StepProgress, entries: list) -> None:
        """One step at half of each variant's best rate, for the one-way latency there
        (interleaved as the searches were); kept apart from the search's steps. Each is
        preceded by an unmeasured second at that rate: the search's last steps overloaded
        the worker, and the latency wanted is the steady state's."""
        duration = self.cfg.half_rate_duration
        for target, traffic, entry in entries:
            best = (entry.get("search") or {}).get("bestRate")
            entry["halfRate"] = None
            if self.stopping or not best:
                continue
            await self._unmeasured(target, traffic, best / 2, min(1.0, duration))
            steps: list[dict] = []
            step = await self._step(progress, target, traffic, best / 2, duration, steps)
            entry["halfRate"] = {"rate": step["rate"], "forwardedPps": step["forwardedPps"],
                                 "latencyUs": step["latencyUs"], "passed": step["passed"],
                                 "duration": step["duration"],
                                 # a late round sends what fell due at once: a burst the
                                 # rate does not imply, whose tail waits in the worker
                                 "generatorLateRounds": step["generatorLateRounds"],
                                 "generatorMaxGapUs": step["generatorMaxGapUs"],
                                 "workerCpuPercent": step["workerCpuPercent"],
                                 "loadAverage1m": step["loadAverage1m"], "step": step}

    async def _run_self_test(self, progress: StepProgress, target: Any, traffic: Traffic) -> None:
        cfg = self.cfg
        relay_figures = [m["search"]["bestRate"] if m.get("search") else
                         (m["steps"][-1]["rate"] if m["steps"] else None)
                         for m in self.result["modes"].values()]
        relay_best = max([r for r in relay_figures if r] or [cfg.start_rate])
        entry: dict[str, Any] = {"target": "reflector", "pid": target.pid,
                                 "pinned": target.pinned, "relayRate": relay_best,
                                 "steps": [], "search": None}
        self.result["selfTest"] = entry
        await self._warmup(target, traffic)
        start = relay_best * SELF_TEST_HEADROOM
        search = RateSearch(start, max(start, cfg.max_rate * SELF_TEST_HEADROOM),
                            cfg.precision, min(cfg.max_steps, 10))
        duration = cfg.step_duration if cfg.search else cfg.duration
        while not self.stopping and not search.done:
            rate = search.next_rate()
            before = await target.stats()
            step = await self._step(progress, target, traffic, rate, duration, entry["steps"])
            step["reflector"] = reflector_delta(before, await target.stats())
            if step["interrupted"]:
                break
            search.record(rate, step["passed"])
        entry["search"] = search_summary(search, entry["steps"])
        best = search.best or 0.0
        entry["harnessRate"] = best
        entry["headroom"] = round(best / relay_best, 2) if relay_best else None
        entry["sustains2x"] = best >= SELF_TEST_HEADROOM * relay_best
        # The reflector sends with GSO so that it outruns the harness (on loopback the
        # receive side's kernel work lands on the sending core, so a datagram-by-datagram
        # reflector tops out near where the worker does). The harness's own share of its
        # core at the relay's best rate is the second, direct, measure.
        relay_steps = [s for m in self.result["modes"].values() for s in m["steps"]
                       if s["rate"] == relay_best and s["passed"]]
        cpu = max((s["harness"]["cpuPercent"] or 0.0) for s in relay_steps) \
            if relay_steps else None
        entry["harnessCpuPercentAtRelayRate"] = cpu
        entry["harnessCpuHeadroom"] = round(100.0 / cpu, 2) if cpu else None
        if entry["sustains2x"]:
            entry["verdict"] = "reflector sustained >= 2x the relay rate"
        elif cpu is not None and cpu <= 100.0 / SELF_TEST_HEADROOM:
            entry["verdict"] = (f"reflector topped out below 2x, but the harness used only "
                                f"{cpu:.0f}% of its core at the relay rate (>= 2x headroom)")
        else:
            entry["verdict"] = "NOT shown: the harness may be limiting the relay figure"

    # -- the whole run ------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            self.stopping = True
            self.result["interrupted"] = True
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C is a hard stop

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        worker_cpus, _ = self._pinning()
        progress = StepProgress(self.console)
        try:
            with progress:
                for index, variant in enumerate(self.cfg.variants):
                    if self.stopping:
                        break
                    await self._add_target(
                        RelayTarget(variant.mode, port_range(self.cfg, index),
                                    transport=self.cfg.transport,
                                    consent_interval=self.cfg.consent_interval,
                                    quality=variant.quality,
                                    transport_cc=variant.transport_cc,
                                    transport_cc_extension=variant.transport_cc_extension,
                                    label=variant.label, workers=variant.workers,
                                    tree=variant.tree),
                        worker_cpus)
                if not self.stopping:
                    await self._run_relay(progress)
                if self.cfg.self_test and not self.stopping:
                    reflector = ReflectorTarget()
                    traffic = await self._add_target(reflector, worker_cpus)
                    await self._run_self_test(progress, reflector, traffic)
        finally:
            await self.close()
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (ValueError, RuntimeError):
                pass
        if len(self.cfg.variants) > 1:
            self.result["comparison"] = compare_modes(self.result["modes"], self.cfg.search)
            if self.cfg.workers > 1:
                self.result["comparison"]["workersAtCommonRate"] = workers_at_common_rate(
                    self.result["modes"])
        return self.result

    async def close(self) -> None:
        for target, traffic in self.targets:
            try:
                code = await asyncio.wait_for(target.close(), 15)
            except Exception as exc:  # noqa: BLE001 - report it, close the rest
                self.result["errors"].append(f"closing {target.kind} {target.label}: {exc}")
                code = None
            traffic.close()
            if target.kind == "relay" and target.label in self.result["modes"]:
                self.result["modes"][target.label]["workerExitCode"] = code
        self.targets.clear()


def reflector_delta(before: dict, after: dict) -> dict[str, Any]:
    """What the reflector did during a step: datagrams in and out, and how many went per send
    (above 1 only with GSO)."""
    delta = {key: after[key] - before[key] for key in ("received", "sent", "sends",
                                                          "sendErrors")}
    delta["gso"] = after["gso"]
    delta["datagramsPerSend"] = round(delta["sent"] / delta["sends"], 2) if delta["sends"] else None
    return delta


def search_summary(search: RateSearch, steps: list[dict]) -> dict[str, Any]:
    best_step = next((s for s in steps if s["rate"] == search.best and s["passed"]), None)
    return {"bestRate": search.best,
            "bestForwardedPps": best_step["forwardedPps"] if best_step else None,
            "bestWorkerCpuPercent": best_step["workerCpuPercent"] if best_step else None,
            "firstFailingRate": search.first_failing,
            "retriedRates": list(search.retried),
            "steps": search.steps, "complete": search.done}


def workers_at_common_rate(modes: dict[str, dict]) -> dict[str, Any]:
    """--workers: each variant spread over N workers against its one-worker twin at the
    highest input rate both passed, where they did the same work. Each variant's own best
    step compares different loads: a worker batches more packets per wake-up near
    saturation, and the spread one, its workers sharing one core, misses the on-time
    criterion earlier (one waits while the other runs), so its best step is at a lighter
    load per worker, which costs more per packet for reasons that are not the pipe's."""
    twins: dict[str, list[str]] = {}
    for label in modes:
        twins.setdefault(label.rsplit(" x", 1)[0], []).append(label)
    result: dict[str, Any] = {}
    for base, labels in twins.items():
        passed = [{s["rate"]: s for s in modes[label]["steps"]
                   if s.get("passed") and not s.get("interrupted") and s.get("workerCpuPercent")}
                  for label in labels]
        common = set.intersection(*(set(p) for p in passed))
        if len(labels) < 2 or not common:
            continue
        rate = max(common)
        per_cpu = {label: round(p[rate]["forwardedPps"] / (p[rate]["workerCpuPercent"] / 100), 1)
                   for label, p in zip(labels, passed, strict=True)}
        first = per_cpu[labels[0]]
        result[base] = {"inputRate": rate,
                        "workerCpuPercent": {label: p[rate]["workerCpuPercent"]
                                             for label, p in zip(labels, passed, strict=True)},
                        "forwardedPerWorkerCpuSecond": per_cpu,
                        "ratio": {label: round(v / first, 3) for label, v in per_cpu.items()}}
    return result


def compare_modes(modes: dict[str, dict], searching: bool) -> dict[str, Any]:
    """Each variant's headline figure and its ratio to the first one's (zerocopy, or with
    --quality both the first send mode with quality off)."""
    headline: dict[str, float | None] = {}
    cpu: dict[str, float | None] = {}
    per_cpu: dict[str, float | None] = {}
    for mode, entry in modes.items():
        if searching:
            summary = entry.get("search") or {}
            headline[mode] = summary.get("bestForwardedPps")
            cpu[mode] = summary.get("bestWorkerCpuPercent")
        else:
            step = entry["steps"][-1] if entry["steps"] else {}
            headline[mode] = step.get("forwardedPps")
            cpu[mode] = step.get("workerCpuPercent")
        per_cpu[mode] = (round(headline[mode] / (cpu[mode] / 100), 1)
                         if headline[mode] and cpu[mode] else None)
    names = list(headline)
    base = names[0] if names else None

    def ratio(values: dict, mode: str) -> float | None:
        b, v = values.get(base), values.get(mode)
        return round(v / b, 3) if b and v is not None else None

    return {"baseline": base,
            "metric": "bestForwardedPps" if searching else "forwardedPps",
            "forwardedPps": headline, "workerCpuPercent": cpu,
            "forwardedRatio": {m: ratio(headline, m) for m in names},
            "cpuRatio": {m: ratio(cpu, m) for m in names},
            # forwarded packets per second of worker CPU (all workers of a variant summed):
            # with --workers, what the pipes between them cost
            "forwardedPerWorkerCpuSecond": per_cpu,
            "perWorkerCpuSecondRatio": {m: ratio(per_cpu, m) for m in names}}
