"""The run's outputs: the summary tables (rich) and the JSON file."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from rich.console import Console
from rich.table import Table

LATENCY_CEILING_US = 99_999  # the sinks' histogram ends at 100 ms (its last bucket)
REFERENCE_NOTE = ("mediasoup 3.14 (C++ worker, one core, this machine class): 1 -> 10 audio "
                  "~155k, 1 -> 40 audio ~190k, 1 -> 10 video ~100k forwarded pkt/s")


def _fmt(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{suffix}"


def _lat(value: float | None) -> str:
    if value is None:
        return "-"
    return ">=100k" if value >= LATENCY_CEILING_US else f"{value:,.0f}"


def _half_rate_cell(lat: dict | None, late_rounds: int | None) -> str:
    """Latency p50/p99/max at half rate, and the generator's late rounds in brackets."""
    if not lat:
        return "-"
    return (f"{_lat(lat.get('p50'))}/{_lat(lat.get('p99'))}/{_lat(lat.get('max'))} "
            f"({_fmt(late_rounds)})")


def steps_table(title: str, steps: list[dict]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("mode", "rate in", "pkts in", "pkts out", "fwd pkt/s", "delivery",
                 "min on time", "lat p50/p99/max µs", "worker cpu", "rss MB",
                 "sqe/submit", "zc notif", "drops", "result"):
        table.add_column(name, justify="right" if name not in ("mode", "result") else "left")
    for s in steps:
        lat = s["latencyUs"]
        ring = s.get("sendRing") or {}
        result = "pass" if s["passed"] else ("stopped" if s["interrupted"] else "FAIL")
        if s["duplicates"]:
            result += f" dup={s['duplicates']}"
        table.add_row(
            s["mode"], _fmt(s["rate"]), _fmt(s["packetsIn"]), _fmt(s["packetsOut"]),
            _fmt(s["forwardedPps"]), _fmt(100 * s["deliveryRatio"], ".2f", "%"),
            _fmt(100 * s["perConsumerMinRatio"], ".2f", "%"),
            f"{_lat(lat['p50'])}/{_lat(lat['p99'])}/{_fmt(lat['max'])}",
            _fmt(s["workerCpuPercent"], ".0f", "%"),
            _fmt(s["workerRssBytes"] / 1e6 if s["workerRssBytes"] else None, ".0f"),
            _fmt(ring.get("sqesPerSubmit"), ".1f"), _fmt(ring.get("zcNotifications")),
            _fmt(ring.get("exhaustionDrops")), result)
    return table


def summary_table(result: dict) -> Table | None:
    modes = result["modes"]
    if not any(m.get("search") for m in modes.values()):
        return None
    comparison = result.get("comparison") or {}
    ratios = comparison.get("forwardedRatio", {})
    cpu_ratios = comparison.get("cpuRatio", {})
    table = Table(title=f"Highest rate with >= {result['config']['threshold']:.0%} delivery to "
                        f"every consumer: {result['scenario']['description']}",
                  title_justify="left")
    half = any(m.get("halfRate") for m in modes.values())  # --half-rate-latency
    for name in ("mode", "best input pkt/s", "forwarded pkt/s", "worker cpu",
                 "first failing input", "fwd ratio", "cpu ratio") + (
                     ("lat p50/p99/max µs at half (late rounds)",) if half else ()):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for mode, entry in modes.items():
        s = entry.get("search") or {}
        half_rate = entry.get("halfRate") or {}
        table.add_row(mode, _fmt(s.get("bestRate")), _fmt(s.get("bestForwardedPps")),
                      _fmt(s.get("bestWorkerCpuPercent"), ".0f", "%"),
                      _fmt(s.get("firstFailingRate")), _fmt(ratios.get(mode), ".2f", "x"),
                      _fmt(cpu_ratios.get(mode), ".2f", "x"),
                      *((_half_rate_cell(half_rate.get("latencyUs"),
                                         half_rate.get("generatorLateRounds")),)
                        if half else ()))
    return table


def soak_table(result: dict) -> Table | None:
    """--soak: the worker's RSS and free ring slots from start to end, and the verdict."""
    soaks = {mode: entry["soak"] for mode, entry in result["modes"].items()
             if entry.get("soak")}
    if not soaks:
        return None
    table = Table(title="Soak: worker RSS and free send-ring slots", title_justify="left")
    for name in ("mode", "rate in", "seconds", "samples", "rss idle/baseline/end MB",
                 "slope 2nd half MB/min", "free slots idle/min/end/idle after", "result"):
        table.add_column(name, justify="left" if name in ("mode", "result") else "right")
    for mode, soak in soaks.items():
        rss, slots = soak["rss"], soak["freeSlots"]

        def mb(value: int | None) -> str:
            return _fmt(value / 1e6 if value is not None else None, ".1f")

        table.add_row(
            mode, _fmt(soak["rate"]), _fmt(soak["durationSeconds"], ".0f"),
            _fmt(len(soak["samples"])),
            f"{mb(rss.get('idleBeforeBytes'))}/{mb(rss.get('baselineBytes'))}/"
            f"{mb(rss.get('endBytes'))}",
            _fmt(rss.get("secondHalfSlopeMBPerMin"), ".3f"),
            f"{_fmt(slots['idleBefore'])}/{_fmt(slots['minDuringTraffic'])}/"
            f"{_fmt(slots['endOfTraffic'])}/{_fmt(slots['idleAfter'])} of {_fmt(slots['total'])}",
            "flat" if soak["passed"] else "GREW: " + "; ".join(soak["failures"]))
    return table


def transport_cc_line(mode: str, check: dict, steps: list[dict]) -> str:
    """What --transport-cc really did in one worker: negotiated, recorded, fed back."""
    feedback = [s["receiveFeedback"] for s in steps if s.get("receiveFeedback")]
    recorded = sum(f["transportCcPackets"] for f in feedback)
    sent = sum(f["feedbackPacketsSent"] for f in feedback)
    return (f"{mode}: transport-cc {check['requested']}: {check['producersNegotiated']} of "
            f"{check['producers']} producers negotiated it, "
            f"{check['sendTransportsWithTransportCc']} of {check['sendTransports']} send "
            f"transports send it; in the steps the worker recorded {recorded:,} of "
            f"{sum(s['packetsIn'] for s in steps):,} packets and sent {sent:,} feedback "
            f"packets ({sum(s.get('transportCcFeedbackPackets', 0) for s in steps):,} "
            f"counted at the producers' sockets)")


def print_report(console: Console, result: dict) -> None:
    scenario = result["scenario"]
    srtp = f", SRTP {scenario['srtp']}" if scenario["srtp"] else ""
    console.print(f"\n[bold]{scenario['description']}[/bold] ({scenario['packetSize']}-byte "
                  f"packets, {scenario['transport']} transport{srtp})")
    pin = result["pinning"]
    if pin.get("pinned"):
        console.print(f"pinned: worker(s) to CPU {pin['workers']}, harness (pid "
                      f"{pin['harnessPid']}) to CPU {pin['harness']}")
    else:
        console.print(f"not pinned: {pin.get('reason')}")
    for mode, entry in result["modes"].items():
        q = entry.get("quality") or {}
        if q:
            console.print(f"{mode}: quality {q['requested']}: {q['consumersWithNack']} of "
                          f"{q['consumers']} consumers negotiated NACK, "
                          f"{q['producerStreamsWithRetransmissionStore']} producer stream(s) "
                          f"keep a retransmission store")
        tcc = entry.get("transportCc") or {}
        if tcc and (tcc["requested"] == "on" or result["config"].get("transport_cc") == "both"):
            console.print(transport_cc_line(mode, tcc, entry["steps"]))
        rtc = entry.get("webrtc")
        if rtc:
            setup = rtc["setupMs"]
            console.print(f"{mode}: {rtc['peers']} WebRTC peers, ICE + DTLS set-up median "
                          f"{_fmt(setup['median'], '.1f')} / max {_fmt(setup['max'], '.1f')} ms "
                          f"({rtc['concurrency']} at a time, {rtc['wallSeconds']:.2f} s), "
                          f"{rtc['cryptoSuite']}, {rtc['consentChecksSent']:,} consent checks "
                          f"every {rtc['consentIntervalSeconds']:g} s")
    steps = [s for m in result["modes"].values() for s in m["steps"]]
    if steps:
        console.print(steps_table("Steps", steps))
    table = summary_table(result)
    if table is not None:
        console.print(table)
    soak = soak_table(result)
    if soak is not None:
        console.print(soak)
    comparison = result.get("comparison")
    if comparison and not table:
        console.print("send modes, forwarded pkt/s ratio to "
                      f"{comparison['baseline']}: " + ", ".join(
                          f"{m} {_fmt(r, '.2f', 'x')}"
                          for m, r in comparison["forwardedRatio"].items()))
    if comparison and result["config"].get("workers", 1) > 1:
        per_cpu = comparison["forwardedPerWorkerCpuSecond"]
        console.print("forwarded pkt per worker-CPU second (all workers summed; ratio to "
                      f"{comparison['baseline']}): " + ", ".join(
                          f"{m} {_fmt(v)} ({_fmt(comparison['perWorkerCpuSecondRatio'][m], '.2f', 'x')})"
                          for m, v in per_cpu.items()))
        for base, common in (comparison.get("workersAtCommonRate") or {}).items():
            console.print(f"{base}, at the highest input rate all passed "
                          f"({_fmt(common['inputRate'])} pkt/s): forwarded pkt per worker-CPU "
                          "second " + ", ".join(
                              f"{m} {_fmt(v)} ({_fmt(common['ratio'][m], '.2f', 'x')}, CPU "
                              f"{_fmt(common['workerCpuPercent'][m], '.0f', '%')})"
                              for m, v in common["forwardedPerWorkerCpuSecond"].items()))
    st = result.get("selfTest")
    if st:
        console.print(steps_table("Self-test against a loopback reflector (harness ceiling)",
                                  st["steps"]))
        console.print(f"harness sustained {_fmt(st.get('harnessRate'))} input pkt/s through the "
                      f"reflector = {_fmt(st.get('headroom'), '.2f')}x the relay figure "
                      f"{_fmt(st.get('relayRate'))}; harness CPU at the relay rate "
                      f"{_fmt(st.get('harnessCpuPercentAtRelayRate'), '.0f', '%')} of its core")
        colour = "red" if st.get("verdict", "").startswith("NOT") else "green"
        console.print(f"self-test: [{colour}]{st.get('verdict')}[/{colour}]")
    _print_footer(console, result)


def write_json(path: str, result: dict) -> None:
    """Atomically: a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".relay-loadtest-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# -- a matrix run (matrix.py) -------------------------------------------------------------

def _matrix_columns(rows: list[dict]) -> list[tuple[str, list[str]]]:
    """(send mode, its variant labels in run order): the compared checkout's first."""
    columns: dict[str, list[str]] = {}
    for row in rows:
        labels = columns.setdefault(row["sendMode"], [])
        if row["variant"] not in labels:
            labels.append(row["variant"])
    return list(columns.items())


def _cells(rows: list[dict]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["scenario"], r["srtp"]) for r in rows))


def matrix_tables(result: dict) -> list[Table]:
    rows = result.get("rows") or []
    if not rows:
        return []
    by_key = {(r["scenario"], r["srtp"], r["variant"]): r for r in rows}
    columns = _matrix_columns(rows)
    threshold = result["config"]["threshold"]
    best = Table(title=f"Forwarded pkt/s at the highest input rate with >= {threshold:.0%} on "
                       f"time to every consumer (worker CPU)", title_justify="left")
    latency = Table(title="One-way latency at half that rate, p50/p99/max µs (generator's "
                          "send time to the sink's kernel receive time), and in brackets the "
                          "generator's rounds that came > 2 ms late (the machine held it)",
                    title_justify="left")
    for table in (best, latency):
        table.add_column("scenario", no_wrap=True)
        table.add_column("srtp", no_wrap=True)
    for mode, labels in columns:
        for label in labels:
            best.add_column(label, justify="right")
            latency.add_column(label, justify="right")
        if len(labels) == 2:  # this checkout over the compared one, e.g. "copy after/before"
            trees = [label.removeprefix(mode).strip() for label in labels]
            best.add_column(f"{mode} {trees[1]}/{trees[0]}", justify="right")
    for scenario, srtp in _cells(rows):
        cells_best, cells_lat = [scenario, srtp], [scenario, srtp]
        for _, labels in columns:
            values = []
            for label in labels:
                r = by_key.get((scenario, srtp, label)) or {}
                values.append(r.get("bestForwardedPps"))
                cells_best.append(f"{_fmt(r.get('bestForwardedPps'))} "
                                  f"({_fmt(r.get('workerCpuPercent'), '.0f', '%')})")
                cells_lat.append(_half_rate_cell(r.get("halfRateLatencyUs"),
                                                 r.get("halfRateGeneratorLateRounds")))
            if len(labels) == 2:
                ratio = values[1] / values[0] if values[0] and values[1] else None
                cells_best.append(_fmt(ratio, ".2f", "x"))
        best.add_row(*cells_best)
        latency.add_row(*cells_lat)
    tables = [best]
    if any(r.get("halfRateLatencyUs") for r in rows):
        tables.append(latency)
    rss = result.get("rssPerConsumer") or []
    if rss:
        table = Table(title="Worker RSS per consumer (each on its own plain transport, after "
                            "traffic)", title_justify="left")
        for name in ("srtp", "variant", "consumers", "rss 0 consumers MB",
                     "rss N consumers MB", "per consumer kB"):
            table.add_column(name, justify="left" if name in ("srtp", "variant") else "right")
        for r in rss:
            table.add_row(r["srtp"], r["label"], _fmt(r["consumers"]),
                          _fmt(r["rssWithoutConsumersBytes"] / 1e6, ".1f"),
                          _fmt(r["rssWithConsumersBytes"] / 1e6, ".1f"),
                          _fmt(r["rssPerConsumerBytes"] / 1e3, ".1f"))
        tables.append(table)
    return tables


def print_matrix_report(console: Console, result: dict) -> None:
    console.print(f"\n[bold]relay-loadtest matrix[/bold] {result.get('matrix') or ''}: "
                  f"{len(result['cells'])} scenario x SRTP cells")
    # which checkout each worker ran from: the send ring module it mapped
    trees: dict[tuple[bool, str | None], set] = {}
    for cell in result["cells"]:
        for entry in cell["result"].get("modes", {}).values():
            tree = entry.get("tree") or {}
            trees.setdefault((bool(tree.get("compared")), tree.get("path")), set()).add(
                tree.get("ringModule"))
    if any(compared for compared, _ in trees):
        for (compared, path), rings in trees.items():
            console.print(f"{'compared' if compared else 'this'} checkout {path}: workers "
                          f"mapped {', '.join(sorted(str(r) for r in rings))}")
    for cell in result["cells"]:
        modes = cell["result"].get("modes", {})
        numbered = {label: entry.get("transportCc") or {} for label, entry in modes.items()}
        tcc = next(iter(numbered.values()), {})
        if tcc:
            console.print(
                f"{cell['scenario']}, {cell['srtp']}: transport-cc {tcc.get('requested')}, "
                f"{tcc.get('producersNegotiated')} of {tcc.get('producers')} producers "
                f"negotiated it, {tcc.get('consumersNumbered', '-')} of "
                f"{tcc.get('consumers', '-')} consumers numbered (send history)")
    for table in matrix_tables(result):
        console.print(table)
    loads = [s.get("loadAverage1m") for cell in result["cells"]
             for m in cell["result"].get("modes", {}).values() for s in m.get("steps", [])]
    loads = [x for x in loads if x is not None]
    if loads:
        console.print(f"1-minute load average during the steps: {min(loads):.2f}–"
                      f"{max(loads):.2f}")
    _print_footer(console, result)


def _print_footer(console: Console, result: dict[str, Any]) -> None:
    """What every report ends with: the reference figures, an interruption, the errors."""
    console.print(f"[dim]reference: {REFERENCE_NOTE}[/dim]")
    if result["interrupted"]:
        console.print("[yellow]interrupted: the figures above are what was measured "
                      "before Ctrl-C[/yellow]")
    for error in result["errors"]:
        console.print(f"[red]error:[/red] {error}")
