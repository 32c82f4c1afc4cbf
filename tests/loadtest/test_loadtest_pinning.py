"""Runs one after another (a matrix) pin worker and harness to different cores every time."""

from __future__ import annotations

import os

from rich.console import Console

from relay.loadtest.config import from_args
from relay.loadtest.runner import Run


def test_every_run_pins_worker_and_harness_apart() -> None:
    saved = os.sched_getaffinity(0)
    assert len(saved) >= 2, "the loadtest's pinning needs two cores (this machine has them)"
    try:
        cfg = from_args(["--rate", "100", "--duration", "1"])
        pins = [Run(cfg, Console(quiet=True))._pinning() for _ in range(3)]
    finally:
        os.sched_setaffinity(0, saved)
    for worker_cpus, harness_cpus in pins:
        # before the fix the second run saw only the harness's core left and pinned nothing
        assert worker_cpus and harness_cpus and not worker_cpus & harness_cpus, pins
