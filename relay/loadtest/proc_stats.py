"""CPU time and RSS of a process from /proc (the worker's own figures, not the harness's)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class ProcessSample:
    wall: float
    cpu_seconds: float
    rss_bytes: int
    runqueue_wait_seconds: float | None = None


def sample_process(pid: int) -> ProcessSample | None:
    """utime+stime and RSS of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return ProcessSample(time.monotonic(), cpu, rss_pages * PAGE_SIZE, _runqueue_wait(pid))


def _runqueue_wait(pid: int) -> float | None:
    """Seconds the process was runnable but not running (schedstat field 2): how much the
    machine's other work held it back."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def runqueue_wait_percent(before: ProcessSample | None,
                          after: ProcessSample | None) -> float | None:
    if (before is None or after is None or after.wall <= before.wall
            or before.runqueue_wait_seconds is None or after.runqueue_wait_seconds is None):
        return None
    waited = after.runqueue_wait_seconds - before.runqueue_wait_seconds
    return round(100.0 * waited / (after.wall - before.wall), 1)


def cpu_percent(before: ProcessSample | None, after: ProcessSample | None) -> float | None:
    """Share of one core the process used between two samples, in percent."""
    if before is None or after is None or after.wall <= before.wall:
        return None
    return round(100.0 * (after.cpu_seconds - before.cpu_seconds) / (after.wall - before.wall), 1)
