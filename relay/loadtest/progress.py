"""The live display of the steps, drawn by the harness's own loop and never by a thread.

rich's Progress redraws from a thread ten times a second by default. That thread takes the
GIL from the generator's loop, which releases it in every C call: in a 10-s step at half
rate the generator came late (> 2 ms after its last round) 102–114 times with it, and 7–16
times without it, and each late round is a burst whose tail waits in the worker (the latency
p99 went from 0.7–0.9 ms to 1.1–1.5 ms). So this display redraws only when the step loop
reports progress, at most once a second, and the step loop sleeps that time off (its period
is measured from the round's start). A finished step is printed once above the live area,
which then holds only the running step: a redraw costs ~1.4 ms in a terminal with one task
and ~7 ms with thirteen."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

REFRESH_INTERVAL = 1.0  # seconds between redraws while a step runs


class StepProgress(Progress):
    def __init__(self, console: Console) -> None:
        super().__init__(TextColumn("{task.description}"), BarColumn(bar_width=24),
                         TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                         TextColumn("{task.fields[status]}"), console=console,
                         transient=False, auto_refresh=False)
        self._last_refresh = 0.0

    def report(self, task: TaskID, **fields: Any) -> None:
        """A running step's figures: redrawn if the last redraw is a second old."""
        self.update(task, **fields)
        now = time.monotonic()
        if now - self._last_refresh >= REFRESH_INTERVAL:
            self._last_refresh = now
            self.refresh()

    def finish(self, task: TaskID, **fields: Any) -> None:
        """A step's last figures: printed once as a line of their own, and the task leaves
        the live area."""
        self.update(task, **fields)
        done = [t for t in self.tasks if t.id == task]
        self.console.print(self.make_tasks_table(done))
        self.remove_task(task)
        self.refresh()
