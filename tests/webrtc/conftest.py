"""Run ``async def`` tests in a fresh event loop; make aiortc gather loopback candidates."""

from __future__ import annotations

import asyncio
import inspect

import aioice.ice
import pytest

TEST_TIMEOUT = 40.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT))
        return True
    return None


@pytest.fixture(autouse=True)
def loopback_gathering(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice never offers 127.0.0.1 by itself; the tests must stay on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])
