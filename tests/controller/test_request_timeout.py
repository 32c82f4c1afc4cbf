"""Request deadlines: a stopped worker makes calls fail with RequestTimeoutError, its late
answers are dropped and counted, and never taken for another request's."""

from __future__ import annotations

import asyncio
import math
import os
import signal

import pytest
from relay_controller_support import MEDIA_CODECS, running_worker, wait_until
from test_channel import FakeWorkerEnd

import relay
from relay.controller import channel as channel_module
from worker_proto.errors import ArgumentError, RequestTimeoutError
from worker_proto.messages import MAX_REQUEST_ID, make_ok_response


async def test_stopped_worker_times_out_and_its_late_answer_is_dropped():
    loop = asyncio.get_running_loop()
    async with running_worker() as worker:
        assert worker.request_timeout == channel_module.DEFAULT_REQUEST_TIMEOUT
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            start = loop.time()
            with pytest.raises(RequestTimeoutError) as info:
                await worker.get_resource_usage(timeout=0.3)
            elapsed = loop.time() - start
            # While still stopped: a request with the default deadline, answered after SIGCONT.
            following = asyncio.ensure_future(worker.dump())
            await asyncio.sleep(0.05)
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        error = info.value
        assert 0.3 <= elapsed < 1.0, elapsed
        assert isinstance(error, TimeoutError) and isinstance(error, relay.RelayError)
        assert "worker.getResourceUsage on the worker" in str(error)
        assert "0.3 s" in str(error)
        assert (error.method, error.handler_id, error.timeout) == (
            "worker.getResourceUsage", "", 0.3)
        # The worker answers both in order: the stale getResourceUsage answer first. Only the
        # dump's own answer may complete the dump.
        dump = await asyncio.wait_for(following, 10)
        assert dump["pid"] == worker.pid and "ru_utime" not in dump
        await wait_until(lambda: worker.channel_stats["lateResponses"] == 1)
        stats = worker.channel_stats
        assert stats["timeouts"] == 1 and stats["pending"] == 0
        assert stats["unknownResponses"] == 0
        usage = await worker.get_resource_usage()
        assert "ru_utime" in usage and "pid" not in usage
        dump = await worker.dump()
        assert dump["controllerChannel"]["lateResponses"] == 1
        assert dump["controllerChannel"]["responses"] == stats["responses"] + 2


async def test_per_worker_timeout_applies_to_every_object_and_names_it():
    loop = asyncio.get_running_loop()
    async with running_worker(request_timeout=0.3) as worker:
        assert worker.request_timeout == 0.3
        router = await worker.create_router(media_codecs=MEDIA_CODECS)
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            start = loop.time()
            with pytest.raises(RequestTimeoutError) as info:
                await router.dump()
            elapsed = loop.time() - start
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        assert 0.3 <= elapsed < 1.0, elapsed
        assert f"router.dump on handler {router.id!r}" in str(info.value)
        assert "0.3 s" in str(info.value) and info.value.handler_id == router.id
        await wait_until(lambda: worker.channel_stats["lateResponses"] == 1)
        assert (await router.dump())["id"] == router.id


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "5", True, None])
async def test_bad_request_timeout_is_refused_before_spawning(bad):
    with pytest.raises(ArgumentError, match="request_timeout"):
        await relay.create_worker(request_timeout=bad)


async def test_channel_drops_late_answers_and_never_reuses_a_timed_out_id(monkeypatch):
    monkeypatch.setattr(channel_module, "MAX_TIMED_OUT_IDS", 3)
    end = FakeWorkerEnd()
    await end.channel.open()
    channel = end.channel
    try:
        with pytest.raises(ArgumentError):
            await channel.request("worker.dump", timeout=0)
        stale = []
        for _ in range(5):
            with pytest.raises(RequestTimeoutError):
                await channel.request("worker.getResourceUsage", timeout=0.02)
            stale.append((await end.next_request())["id"])
        fresh = asyncio.ensure_future(channel.request("worker.dump"))
        request = await end.next_request()
        assert request["id"] not in stale
        for request_id in stale:  # the worker wakes up and answers everything, in order
            end.send(make_ok_response(request_id, "stale"))
        end.send(make_ok_response(request["id"], "fresh"))
        assert await asyncio.wait_for(fresh, 5) == "fresh"
        # The three newest timed-out ids were remembered; the two oldest were forgotten but
        # are still dropped (counted as unknown), never matched to a newer request.
        assert channel.stats["timeouts"] == 5
        assert channel.stats["lateResponses"] == 3 and channel.stats["unknownResponses"] == 2
        assert channel.pending_count == 0
        # After 2^53 - 1 the ids wrap, skipping any id whose answer may still come.
        channel._last_id = MAX_REQUEST_ID - 1
        channel._timed_out[1] = "worker.dump on the worker"
        with pytest.raises(RequestTimeoutError):
            await channel.request("worker.dump", timeout=0.02)
        assert (await end.next_request())["id"] == MAX_REQUEST_ID
        late = asyncio.ensure_future(channel.request("worker.dump"))
        assert (await end.next_request())["id"] == 2
        end.send(make_ok_response(2, "ok"))
        assert await asyncio.wait_for(late, 5) == "ok"
    finally:
        end.close()


async def test_pending_requests_lengthen_the_default_deadline_only():
    end = FakeWorkerEnd()
    end.channel.request_timeout = 0.2
    await end.channel.open()
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        burst = [asyncio.ensure_future(end.channel.request("worker.dump")) for _ in range(4)]
        explicit = asyncio.ensure_future(end.channel.request("worker.dump", timeout=0.2))
        finished = []
        for future in (*burst, explicit):
            with pytest.raises(RequestTimeoutError) as info:
                await future
            finished.append((info.value.timeout, loop.time() - start))
        timeouts = [timeout for timeout, _ in finished]
        assert timeouts == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.2])
        for timeout, elapsed in finished[:4]:
            assert elapsed >= timeout
    finally:
        end.close()
