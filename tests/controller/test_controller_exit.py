"""The worker never outlives its controller: EOF on the request pipe ends it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from relay_controller_support import REPO_ROOT, process_gone, wait_until

CONTROLLER = textwrap.dedent("""
    import asyncio, sys
    import relay

    async def main():
        worker = await relay.create_worker(rtc_min_port=43000, rtc_max_port=43099)
        print(worker.pid, flush=True)
        if sys.argv[1] == "return":
            return  # exit without closing the worker
        await asyncio.sleep(60)

    asyncio.run(main())
""")


def _start_controller(mode: str) -> tuple[subprocess.Popen, int]:
    controller = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER, mode], cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = controller.stdout.readline()
    assert line.strip().isdigit(), f"controller did not start a worker: {line!r}"
    return controller, int(line)


async def test_kill_9_of_the_controller_ends_the_worker():
    controller, worker_pid = _start_controller("sleep")
    try:
        assert not process_gone(worker_pid)
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait(10)
        await wait_until(lambda: process_gone(worker_pid))
    finally:
        controller.kill()
        controller.wait()
        controller.stdout.close()


async def test_normal_exit_of_the_controller_without_close_ends_the_worker():
    controller, worker_pid = _start_controller("return")
    try:
        assert await asyncio.to_thread(controller.wait, 10) == 0
        await wait_until(lambda: process_gone(worker_pid))
    finally:
        controller.kill()
        controller.wait()
        controller.stdout.close()
