"""A matrix run (--matrix, --scenarios, --srtp-suites): every scenario x SRTP variant in turn,
each a whole run of its own (its variants' workers started, searched interleaved, closed),
then the worker's RSS per consumer (--rss-per-consumer), and one side-by-side table."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from rich.console import Console

from .config import PLAIN, LoadtestConfig, Variant, matrix_cells
from .proc_stats import sample_process
from .relay_target import RelayTarget
from .runner import Run
from .scenario import fanout
from .step import run_step
from .traffic import Traffic

RSS_TRAFFIC_PPS = 500.0  # input rate of the steps before each RSS reading (--step-duration
RSS_MIN_TRAFFIC_SECONDS = 0.5  # long, at least this: the stores fill as in a search step)
RSS_SETTLE_SECONDS = 0.2


def new_matrix_result(cfg: LoadtestConfig) -> dict[str, Any]:
    return {"tool": "relay-loadtest", "matrix": cfg.matrix,
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": cfg.as_dict(),
            "cells": [], "rssPerConsumer": [], "rows": [], "interrupted": False, "errors": []}


async def run_matrix(cfg: LoadtestConfig, console: Console,
                     result: dict[str, Any]) -> dict[str, Any]:
    """Fills ``result`` (new_matrix_result) as it goes, so an interrupted run keeps what it
    measured."""
    for spec, suite, cell in matrix_cells(cfg):
        console.rule(f"{spec}, {suite}")
        run = Run(cell, console)
        try:
            cell_result = await run.run()
        except Exception as exc:  # noqa: BLE001 - record it, go on with the next cell
            cell_result = run.result
            cell_result["errors"].append(f"{type(exc).__name__}: {exc}")
        result["cells"].append({"scenario": spec, "srtp": suite, "result": cell_result})
        result["errors"] += [f"{spec}, {suite}: {e}" for e in cell_result["errors"]]
        result["rows"] = matrix_rows(result)
        if cell_result["interrupted"]:
            result["interrupted"] = True
            return result
    if cfg.rss_per_consumer:
        cell = matrix_cells(cfg)[0][2]
        suites = cfg.srtp_suites or [cfg.srtp_suite if cfg.srtp else PLAIN]
        for suite in suites:
            for index, variant in enumerate(_rss_variants(cell)):
                try:
                    result["rssPerConsumer"].append(await measure_rss_per_consumer(
                        cell, variant, _rss_ports(cfg, index), suite, cfg.rss_per_consumer))
                except Exception as exc:  # noqa: BLE001
                    result["errors"].append(f"RSS per consumer, {suite}, {variant.label}: "
                                            f"{type(exc).__name__}: {exc}")
    return result


def _rss_ports(cfg: LoadtestConfig, index: int) -> tuple[int, int]:
    """The index-th RSS worker's port range: a transport per consumer, the producer's and
    slack (the matrix's cells have finished, so their ranges are free again)."""
    size = cfg.rss_per_consumer + 16
    low = cfg.port_min + index * size
    return low, low + size - 1


def _rss_variants(cell: LoadtestConfig) -> list[Variant]:
    """One variant per checkout (memory does not depend on the send tier): the first send
    mode's."""
    first = cell.variants[0].mode
    return [v for v in cell.variants if v.mode == first]


async def measure_rss_per_consumer(cfg: LoadtestConfig, variant: Variant,
                                   ports: tuple[int, int], suite: str,
                                   consumers: int) -> dict[str, Any]:
    """A fresh worker with one producer (1 -> ``consumers`` audio on plain transports): its
    RSS once the producer has had traffic, and again once every consumer, each on its own
    transport as a browser's, has forwarded some. (RSS_N - RSS_0) / N is a consumer's share
    with its transport, its SRTP session and its send history."""
    scenario = fanout("audio", consumers)
    srtp_suite = None if suite == PLAIN else suite
    traffic = Traffic(scenario, srtp_suite=srtp_suite, late_after=cfg.late_after_ms / 1000)
    target = RelayTarget(variant.mode, ports, quality=variant.quality,
                         transport_cc=variant.transport_cc,
                         transport_cc_extension=variant.transport_cc_extension,
                         label=variant.label, tree=variant.tree)
    readings: dict[str, int] = {}

    async def settle_and_read(name: str) -> None:
        await run_step(target, traffic, RSS_TRAFFIC_PPS,
                       max(cfg.step_duration, RSS_MIN_TRAFFIC_SECONDS), threshold=0.0)
        await asyncio.sleep(RSS_SETTLE_SECONDS)
        sample = sample_process(target.pid) if target.pid else None
        if sample is None:
            raise RuntimeError("the worker is gone")
        readings[name] = sample.rss_bytes

    target.before_consumers = lambda: settle_and_read("withoutConsumers")
    try:
        await target.start(None)
        started = sample_process(target.pid) if target.pid else None
        await target.build(scenario, traffic, srtp_suite)
        await settle_and_read("withConsumers")
        delivered = traffic.counts().received
    finally:
        await target.close()
        traffic.close()
    grown = readings["withConsumers"] - readings["withoutConsumers"]
    return {"srtp": suite, "tree": variant.tree or "this", "label": variant.label,
            "sendMode": variant.mode, "consumers": consumers,
            "rssAtStartBytes": started.rss_bytes if started else None,
            "rssWithoutConsumersBytes": readings["withoutConsumers"],
            "rssWithConsumersBytes": readings["withConsumers"],
            "rssPerConsumerBytes": round(grown / consumers),
            "packetsDeliveredInLastStep": delivered,
            "transportCc": target.transport_cc_check,
            "loadAverage1m": round(os.getloadavg()[0], 2)}


def matrix_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell and variant: the figures the side-by-side table shows."""
    rows = []
    for cell in result["cells"]:
        modes = cell["result"].get("modes", {})
        comparison = cell["result"].get("comparison") or {}
        for label, entry in modes.items():
            search = entry.get("search") or {}
            half = entry.get("halfRate") or {}
            lat = half.get("latencyUs") or {}
            tcc = entry.get("transportCc") or {}
            rows.append({
                "scenario": cell["scenario"], "srtp": cell["srtp"], "variant": label,
                "sendMode": entry.get("sendMode"), "tree": (entry.get("tree") or {}).get("path"),
                "bestInputPps": search.get("bestRate"),
                "bestForwardedPps": search.get("bestForwardedPps"),
                "workerCpuPercent": search.get("bestWorkerCpuPercent"),
                "firstFailingRate": search.get("firstFailingRate"),
                "forwardedRatio": (comparison.get("forwardedRatio") or {}).get(label),
                "halfRateForwardedPps": half.get("forwardedPps"),
                "halfRateLatencyUs": {k: lat.get(k) for k in ("p50", "p99", "max")}
                if lat else None,
                "halfRateGeneratorLateRounds": half.get("generatorLateRounds"),
                "consumersNumbered": tcc.get("consumersNumbered"),
                "consumers": tcc.get("consumers")})
    return rows
