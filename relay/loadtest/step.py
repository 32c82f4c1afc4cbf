"""One measured step: offer a rate for a duration, drain the tail, and return every figure."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from .proc_stats import cpu_percent, runqueue_wait_percent, sample_process
from .traffic import Traffic
from .traffic_lib import lib

UI_INTERVAL_NS = 50_000_000
LATE_ROUND_NS = 2_000_000  # a generator round this long after the last is counted late
TAIL_QUIET_NS = 200_000_000  # the step ends after this long without a packet ...
TAIL_MAX_NS = 2_000_000_000  # ... or this long after the generator stopped
RING_COUNTERS = ("submits", "sqesSubmitted", "completions", "zcNotifications", "zcCopied",
                 "cqeErrors", "exhaustionDrops", "socketSendCalls", "sendsQueued", "fallbacks")

ProgressCallback = Callable[[float, int, int], None]


def ring_delta(before: dict, after: dict) -> dict[str, Any]:
    """The send ring during the step: its tier, and what its counters did."""
    if not after:
        return {}
    delta: dict[str, Any] = {
        "mode": after.get("mode"),
        "zeroCopyEnabled": after.get("zeroCopyEnabled"),
        "slotsInFlightAtEnd": after.get("slotsInFlight"),
    }
    for key in RING_COUNTERS:
        if key in after:
            delta[key] = after[key] - before.get(key, 0)
    submits = delta.get("submits", 0)
    delta["sqesPerSubmit"] = round(delta.get("sqesSubmitted", 0) / submits, 2) if submits else 0.0
    return delta


def feedback_delta(before: dict, after: dict) -> dict[str, Any]:
    """What the relay's send transports' uplink feedback did during a step."""
    delta: dict[str, Any] = {"types": after["types"]}
    for key, value in after.items():
        if key != "types":
            delta[key] = value - before.get(key, 0)
    return delta


BATCHING_ABOVE_PPS = 20000  # output rate above which the harness polls on a period


def _harness_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def run_step(target: Any, traffic: Traffic, rate: float, duration: float, *,
                   threshold: float, on_progress: ProgressCallback | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   poll_interval: float = 0.001) -> dict[str, Any]:
    """``poll_interval``: at high rates the loop sleeps to this period between rounds, so
    recvmmsg and sendmmsg move full batches instead of one packet per syscall; latency is
    taken from the kernel's arrival timestamp, so it does not include this wait."""
    scenario = traffic.scenario
    per_stream = rate / scenario.streams
    traffic.begin_step(int(per_stream * duration) + 64)
    ring_before = await target.send_ring()
    feedback_of = getattr(target, "receive_feedback", None)  # the relay's, not the reflector
    feedback_before = await feedback_of() if feedback_of else None
    cpu_before = target.sample()
    # A short epoll wait at low rates leaves the core to others; a busy loop at high ones.
    timeout_ms = 1 if rate < 5000 else 0
    output_rate = rate * len(traffic.consumers) / max(1, scenario.streams)
    period_ns = int(poll_interval * 1e9) if output_rate > BATCHING_ABOVE_PPS else 0
    harness_cpu_before = _harness_cpu()
    harness_before = sample_process(os.getpid())
    t0 = lib.lt_now_ns()
    end = t0 + int(duration * 1e9)
    next_ui = t0
    interrupted = False
    now = t0
    # Rounds that came late: the generator then sends what fell due at once, a burst the
    # rate does not imply, whose last packets wait behind the first in the worker.
    last_round, max_gap, late_rounds = t0, 0, 0
    while now < end:
        gap = now - last_round
        if gap > max_gap:
            max_gap = gap
        if gap > LATE_ROUND_NS:
            late_rounds += 1
        last_round = now
        traffic.generate(t0, now, per_stream)
        traffic.drain(timeout_ms)
        if now >= next_ui:
            if on_progress:
                on_progress((now - t0) / 1e9, traffic.sent, traffic.received)
            await asyncio.sleep(0)
            if should_stop():
                interrupted = True
                break
            next_ui = now + UI_INTERVAL_NS
        if period_ns:
            remaining = now + period_ns - lib.lt_now_ns()
            if remaining > 0:
                time.sleep(remaining / 1e9)
        now = lib.lt_now_ns()
    generation_end = lib.lt_now_ns()
    cpu_after = target.sample()
    harness_cpu = _harness_cpu() - harness_cpu_before
    harness_after = sample_process(os.getpid())
    elapsed = (generation_end - t0) / 1e9
    # The tail: what the worker still has queued reaches the sinks.
    last_packet = lib.lt_now_ns()
    while True:
        now = lib.lt_now_ns()
        if now - last_packet > TAIL_QUIET_NS or now - generation_end > TAIL_MAX_NS:
            break
        if traffic.drain(5):
            last_packet = lib.lt_now_ns()
    if on_progress:
        on_progress(elapsed, traffic.sent, traffic.received)
    ring_after = await target.send_ring()
    feedback_after = await feedback_of() if feedback_of else None
    counts = traffic.counts()
    sent_of = counts.sent_per_stream
    expected = sum(sent_of[stream] for _, stream in traffic.consumers)
    # A consumer's packet counts for the pass/fail verdict only if it arrived within the
    # latency budget: a worker that falls behind would otherwise "deliver" its backlog in
    # the tail, after the generator stopped, and pass a rate it cannot sustain.
    on_time = [got - late for got, late in zip(counts.per_consumer, counts.late_per_consumer,
                                               strict=True)]
    ratios = [got / sent_of[stream] if sent_of[stream] else 1.0
              for got, (_, stream) in zip(on_time, traffic.consumers, strict=True)]
    worst = min(range(len(ratios)), key=ratios.__getitem__) if ratios else None
    min_ratio = ratios[worst] if worst is not None else 1.0
    return {
        "mode": target.label,
        "target": target.kind,
        "rate": rate,
        "duration": round(elapsed, 3),
        "interrupted": interrupted,
        "packetsIn": counts.sent,
        "packetsInPerStream": counts.sent_per_stream,
        "generatorMaxGapUs": round(max_gap / 1000),
        "generatorLateRounds": late_rounds,
        "inputPps": round(counts.sent / elapsed, 1) if elapsed > 0 else 0.0,
        "expected": expected,
        "packetsOut": counts.received,
        "forwardedPps": round(counts.received / elapsed, 1) if elapsed > 0 else 0.0,
        "deliveryRatio": round(counts.received / expected, 6) if expected else 1.0,
        "latePackets": sum(counts.late_per_consumer),
        "onTimeRatio": round(sum(on_time) / expected, 6) if expected else 1.0,
        "perConsumerMinRatio": round(min_ratio, 6),
        "perConsumerMinPackets": on_time[worst] if worst is not None else 0,
        "perConsumer": counts.per_consumer,
        "duplicates": counts.duplicates,
        "stale": counts.stale,
        "malformed": counts.malformed,
        "rtcpPackets": counts.rtcp,
        # of which reached the producers' sockets, and of those transport-cc feedback
        "rtcpAtSenders": counts.rtcp_at_senders,
        "transportCcFeedbackPackets": counts.transport_cc_feedback,
        # WebRTC: the answers to the peers' consent checks, and DTLS after the handshake
        "stunPackets": counts.stun,
        "stunErrors": counts.stun_errors,
        "dtlsPackets": counts.dtls,
        "unknown": counts.unknown,
        "srtpFailures": counts.srtp_failures,
        "sendErrors": counts.send_errors,
        "latencyUs": counts.latency_us,
        "workerCpuPercent": cpu_percent(cpu_before, cpu_after),
        "workerRssBytes": cpu_after.rss_bytes if cpu_after else None,
        # Runnable but not running: the share of the step the worker waited for its core.
        "workerRunqueueWaitPercent": runqueue_wait_percent(cpu_before, cpu_after),
        "sendRing": ring_delta(ring_before, ring_after),
        # the send transports' uplink feedback (getStats "receiveFeedback") during the step
        "receiveFeedback": feedback_delta(feedback_before, feedback_after)
        if feedback_before is not None and feedback_after is not None else None,
        "harness": {
            "cpuPercent": round(100 * harness_cpu / elapsed, 1) if elapsed > 0 else None,
            "recvCalls": counts.recv_calls,
            "packetsPerRecvCall": round(counts.received / counts.recv_calls, 1)
            if counts.recv_calls else 0.0,
            "kernelTimestamps": counts.kernel_timestamps,
            "pollIntervalMs": period_ns / 1e6,
            "runqueueWaitPercent": runqueue_wait_percent(harness_before, harness_after),
        },
        "passed": (not interrupted) and min_ratio >= threshold,
    }
