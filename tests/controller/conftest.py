"""Run ``async def`` tests (no pytest-asyncio here) and provide raw workers."""

from __future__ import annotations

import asyncio
import contextlib
import inspect

import pytest
from relay_controller_support import RawWorker

TEST_TIMEOUT = 30.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run ``async def`` tests in a fresh event loop (no pytest-asyncio here)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT))
        return True
    return None


@pytest.fixture
def raw_worker():
    workers: list[RawWorker] = []

    def start(*args: str, **kwargs) -> RawWorker:
        worker = RawWorker(*args, **kwargs)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.resp_r >= 0:
            with contextlib.suppress(Exception):
                worker.finish()
