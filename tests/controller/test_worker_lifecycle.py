"""Worker: start, dump, resource usage, close, bad settings, calls after close, death."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from relay_controller_support import process_gone, running_worker, wait_until

import relay
from relay.controller import worker as worker_process


async def test_worker_runs_and_reports_itself():
    async with running_worker(log_level="warn", send_mode="auto") as worker:
        assert isinstance(worker.pid, int) and worker.pid > 0
        assert not worker.closed and not worker.died
        dump = await worker.dump()
        assert dump["pid"] == worker.pid
        assert dump["routerIds"] == []
        assert dump["settings"]["rtcMinPort"] == 41000
        ring = dump["sendRing"]
        for key in ("mode", "zeroCopyEnabled", "registrationErrno", "slotsTotal", "submits"):
            assert key in ring
        assert ring["mode"] in ("zerocopy", "copy", "socket")
        usage = await worker.get_resource_usage()
        assert usage["ru_maxrss"] > 0 and usage["ru_utime"] >= 0


@pytest.mark.parametrize("mode", ["copy", "socket"])
async def test_forced_send_mode_reaches_the_ring(mode):
    async with running_worker(send_mode=mode) as worker:
        ring = (await worker.dump())["sendRing"]
        assert ring["mode"] == mode
        assert ring["requestedMode"] == mode


async def test_close_stops_the_process_and_is_idempotent():
    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    worker.close()
    worker.close()
    assert worker.closed and not worker.died
    assert await asyncio.wait_for(worker.wait_closed(), 10) == 0
    died = []
    worker.on("died", died.append)
    await asyncio.sleep(0.05)
    assert died == []


async def test_calls_after_close_raise_invalid_state():
    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    worker.close()
    with pytest.raises(relay.InvalidStateError):
        await worker.dump()
    with pytest.raises(relay.InvalidStateError):
        await worker.get_resource_usage()
    with pytest.raises(relay.InvalidStateError):
        await worker.create_router(media_codecs=[])
    await worker.wait_closed()


async def test_pending_call_fails_when_closed():
    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    os.kill(worker.pid, signal.SIGSTOP)  # the request below cannot be answered
    try:
        pending = asyncio.ensure_future(worker.dump())
        await asyncio.sleep(0.05)
        assert not pending.done()
        worker.close()
        with pytest.raises(relay.InvalidStateError):
            await asyncio.wait_for(pending, 5)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    await asyncio.wait_for(worker.wait_closed(), 10)


@pytest.mark.parametrize("kwargs", [
    {"log_level": "loud"},
    {"rtc_min_port": 0},
    {"rtc_max_port": 70000},
    {"rtc_min_port": 5000, "rtc_max_port": 4000},
    {"rtc_min_port": "40000"},
    {"send_mode": "fast"},
    {"start_timeout": 0},
])
async def test_bad_settings_raise_argument_error(kwargs):
    with pytest.raises(relay.ArgumentError) as info:
        await relay.create_worker(**kwargs)
    assert isinstance(info.value, TypeError)  # ArgumentError is a TypeError too


async def test_kill_9_fails_pending_calls_and_emits_died_once():
    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    died: list[relay.WorkerDiedError] = []
    worker.on("died", died.append)
    os.kill(worker.pid, signal.SIGSTOP)  # keep a request pending until the kill
    pending = asyncio.ensure_future(worker.dump())
    await asyncio.sleep(0.05)
    assert not pending.done()
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(relay.WorkerDiedError) as info:
        await asyncio.wait_for(pending, 5)
    assert info.value.signal == "SIGKILL" and info.value.exit_code is None
    await wait_until(lambda: died)
    await asyncio.sleep(0.05)
    assert len(died) == 1 and died[0].signal == "SIGKILL"
    assert worker.died and worker.closed
    with pytest.raises(relay.InvalidStateError):
        await worker.dump()
    worker.close()  # harmless after death


async def test_sigterm_is_a_graceful_exit_reported_as_died_with_code_0():
    worker = await relay.create_worker(rtc_min_port=41000, rtc_max_port=41999)
    died = asyncio.get_running_loop().create_future()
    worker.on("died", lambda error: died.done() or died.set_result(error))
    os.kill(worker.pid, signal.SIGTERM)
    error = await asyncio.wait_for(died, 10)
    assert error.exit_code == 0 and error.signal is None
    assert "exit code 0" in str(error)


async def test_start_fails_clearly_when_the_worker_exits_early(monkeypatch):
    monkeypatch.setattr(worker_process, "PROTOCOL_VERSION", 999)
    with pytest.raises(relay.WorkerStartError) as info:
        await relay.create_worker()
    message = str(info.value)
    assert "exit code 3" in message and "protocol version mismatch" in message


async def test_start_times_out_and_kills_a_silent_worker(monkeypatch, tmp_path):
    fake_python = tmp_path / "silent-python"
    fake_python.write_text("#!/bin/sh\necho $$ > \"$0.pid\"\nexec sleep 60\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake_python))
    with pytest.raises(relay.WorkerStartError, match="did not report running"):
        await relay.create_worker(start_timeout=0.5)
    pid = int((tmp_path / "silent-python.pid").read_text())
    await wait_until(lambda: process_gone(pid))


async def test_worker_logs_reach_python_logging(caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="relay.worker")
    async with running_worker(log_level="debug") as worker:
        await worker.dump()
        await wait_until(lambda: any("running" in r.getMessage() for r in caplog.records
                                     if r.name.startswith("relay.worker")))
    # the ring's own start-up line arrives with its level, not as raw stderr
    assert any(r.name == "relay.worker.uring" and r.levelno == logging.INFO
               for r in caplog.records)
