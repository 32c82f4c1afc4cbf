"""The search for the highest input rate that still passes: double from a start rate until a
step fails (or the cap passes), then bisect between the best pass and the lowest failure.
A failing rate is run once more before it counts as failing: one stall of the shared machine
(another process on the worker's core) must not end a search at a rate the worker sustains."""

from __future__ import annotations


class RateSearch:
    def __init__(self, start: float, maximum: float, precision: float, max_steps: int,
                 retries: int = 1) -> None:
        self.start = start
        self.maximum = maximum
        self.precision = precision
        self.max_steps = max_steps
        self.best: float | None = None
        self.first_failing: float | None = None
        self.steps = 0
        self.retries = retries
        self.retried: list[float] = []
        self._failures: dict[float, int] = {}
        self._next: float | None = start

    @property
    def done(self) -> bool:
        return self._next is None

    def next_rate(self) -> float | None:
        return self._next

    def record(self, rate: float, passed: bool) -> None:
        self.steps += 1
        if not passed:
            failures = self._failures[rate] = self._failures.get(rate, 0) + 1
            if failures <= self.retries and self.steps < self.max_steps:
                self.retried.append(rate)
                self._next = rate  # the same rate again before it counts
                return
        if passed:
            self.best = rate if self.best is None else max(self.best, rate)
        else:
            self.first_failing = rate if self.first_failing is None else min(
                self.first_failing, rate)
        self._next = self._choose()

    def _choose(self) -> float | None:
        if self.steps >= self.max_steps:
            return None
        if self.first_failing is None:  # still climbing
            if self.best is not None and self.best >= self.maximum:
                return None
            return min(self.maximum, (self.best or self.start) * 2)
        low = self.best or 0.0
        high = self.first_failing
        if high - low <= self.precision * high:
            return None
        return round((low + high) / 2)
