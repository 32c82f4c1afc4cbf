"""The step display draws from the harness's loop, at most once a second, never from a
thread: a redraw thread takes the GIL from the generator, whose late rounds are bursts that
show up as the latency p99 (relay/loadtest/progress.py)."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from relay.loadtest import progress as progress_module
from relay.loadtest.progress import StepProgress


def test_the_step_display_redraws_from_the_loop_at_most_once_a_second(monkeypatch):
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    before = set(threading.enumerate())
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    with StepProgress(console) as display:
        assert set(threading.enumerate()) == before  # no redraw thread
        redraws = []
        real_refresh = display.refresh
        monkeypatch.setattr(display, "refresh", lambda: (redraws.append(clock[0]),
                                                         real_refresh()))
        task = display.add_task("     auto     10,000 pkt/s", total=10, status="")
        redraws.clear()  # (adding a task draws it once)
        for i in range(50):  # the step loop reports every 50 ms: 2.5 s
            clock[0] = 1000.0 + i * 0.05
            display.report(task, completed=i * 0.05, status=f"in {i:,}")
        assert [round(t - 1000.0, 2) for t in redraws] == [0.0, 1.0, 2.0]
        display.finish(task, completed=10, status="min 100.00%  cpu 50%  pass")
        assert display.tasks == []  # the live area keeps only running steps
    out = console.file.getvalue()
    assert out.count("min 100.00%  cpu 50%  pass") >= 1 and "10,000 pkt/s" in out
