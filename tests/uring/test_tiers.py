"""The tier decisions that need another process: RLIMIT_MEMLOCK as an unprivileged user,
and io_uring forbidden by seccomp."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = str(Path(__file__).with_name("child_send.py"))
WORKER_CHILD = str(Path(__file__).with_name("child_worker.py"))
ROOT = str(Path(__file__).resolve().parents[2])


def run_child(args: list[str], prefix: list[str] | None = None, shell_prefix: str = ""):
    cmd = [sys.executable, CHILD, *args]
    if shell_prefix:
        cmd = ["bash", "-c", shell_prefix + " && exec " + " ".join(cmd)]
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    env.pop("RELAY_SEND_MODE", None)
    proc = subprocess.run((prefix or []) + cmd, capture_output=True, text=True, env=env,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="dropping to uid 65534 needs root and setpriv (CI runs as root)")

# uid 65534 without CAP_IPC_LOCK, so RLIMIT_MEMLOCK applies; CAP_DAC_READ_SEARCH only so
# it can read an interpreter installed under a root-only home.
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search",
                "--bounding-set=-all,+dac_read_search"]


def test_root_registers_and_uses_zero_copy():
    [res], _ = run_child([])
    assert res["mode"] == "zerocopy" and res["zero_copy_enabled"] is True
    assert res["registration_errno"] == 0 and res["delivered_exactly"]


@needs_root
def test_unprivileged_8_mib_fits_one_region_even_ring_after_ring():
    results, stderr = run_child(["--rings", "3"], prefix=UNPRIVILEGED, shell_prefix="ulimit -l 8192")
    for res in results:
        assert res == {"mode": "zerocopy", "zero_copy_enabled": True, "registration_errno": 0,
                       "ring_errno": None, "delivered_exactly": True, "leaked": 0,
                       "fallbacks": 0}
    assert "RLIMIT_MEMLOCK" not in stderr


@needs_root
def test_unprivileged_1_mib_gets_enomem_a_warning_and_copy_sends():
    [res], stderr = run_child([], prefix=UNPRIVILEGED, shell_prefix="ulimit -l 1024")
    assert res["mode"] == "copy"
    assert res["zero_copy_enabled"] is False
    assert res["registration_errno"] == errno.ENOMEM
    assert res["delivered_exactly"] is True
    assert res["fallbacks"] == 1
    # One warning that names the limit, the current values, the need and the fix.
    assert stderr.count("WARNING") == 1
    for needle in ("RLIMIT_MEMLOCK", "ENOMEM", "1048576 bytes", "6144000 bytes", "ulimit -l",
                   "LimitMEMLOCK="):
        assert needle in stderr


@needs_root
def test_unprivileged_1_mib_refuses_a_forced_zerocopy():
    [res], stderr = run_child(["--mode", "zerocopy"], prefix=UNPRIVILEGED,
                              shell_prefix="ulimit -l 1024")
    assert res["error"] == "SendModeUnavailableError"
    assert res["mode"] == "zerocopy" and res["errno"] == errno.ENOMEM
    for needle in ("RLIMIT_MEMLOCK", "ENOMEM", "1048576 bytes", "ulimit -l", "LimitMEMLOCK="):
        assert needle in res["message"]
    # copy needs only the ring's queues, which fit in 1 MiB
    [res], _ = run_child(["--mode", "copy"], prefix=UNPRIVILEGED, shell_prefix="ulimit -l 1024")
    assert res["mode"] == "copy" and res["delivered_exactly"]


def run_worker(mode: str, shell_prefix: str) -> tuple[dict, str]:
    """Start a worker through relay.create_worker as uid 65534 (child_worker.py)."""
    cmd = [sys.executable, WORKER_CHILD, mode]
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    env.pop("RELAY_SEND_MODE", None)
    proc = subprocess.run(UNPRIVILEGED + ["bash", "-c", shell_prefix + " && exec " + " ".join(cmd)],
                          capture_output=True, text=True, env=env, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


@needs_root
@pytest.mark.parametrize("mode", ["zerocopy", "copy"])
def test_forced_mode_without_locked_memory_for_the_ring_fails_worker_creation(mode):
    # 64 KiB of RLIMIT_MEMLOCK: io_uring_setup itself fails with ENOMEM.
    res, stderr = run_worker(mode, "ulimit -l 64")
    assert res["started"] is False
    assert res["type"] == "SendModeUnavailableError"  # a WorkerStartError, raised by type
    assert res["mode"] == mode and res["errno"] == errno.ENOMEM
    message = res["message"]
    for needle in (f"send mode {mode!r} is not available", "io_uring could not be created",
                   "ENOMEM", "RLIMIT_MEMLOCK", "soft 65536 bytes", "hard 65536 bytes",
                   "ulimit -l 8192", "LimitMEMLOCK=", "send_mode='auto'"):
        assert needle in message, needle


@needs_root
def test_auto_without_locked_memory_for_the_ring_runs_on_socket_sends_with_a_clear_warning():
    res, stderr = run_worker("auto", "ulimit -l 64")
    assert res["started"] is True
    ring = res["sendRing"]
    assert ring["mode"] == "socket" and ring["requestedMode"] == "auto"
    assert ring["ringErrno"] == errno.ENOMEM and ring["fallbacks"] == 1
    [reason] = ring["fallbackReasons"]
    warnings = [line for line in stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and reason in warnings[0]
    for needle in ("io_uring could not be created (ENOMEM", "RLIMIT_MEMLOCK",
                   "soft 65536 bytes", "hard 65536 bytes", "plain socket sends",
                   "ulimit -l 8192", "LimitMEMLOCK="):
        assert needle in reason, needle


def test_seccomp_denied_io_uring_lands_in_socket_mode():
    [res], stderr = run_child(["--seccomp-deny-io-uring"])
    assert res["mode"] == "socket"
    assert res["ring_errno"] == errno.EPERM
    assert res["zero_copy_enabled"] is False and res["registration_errno"] is None
    assert res["delivered_exactly"] is True
    assert "io_uring could not be created (EPERM" in stderr and "seccomp" in stderr


@pytest.mark.parametrize("mode", ["zerocopy", "copy"])
def test_forced_mode_without_io_uring_is_refused_not_replaced(mode):
    [res], stderr = run_child(["--seccomp-deny-io-uring", "--mode", mode])
    assert res["error"] == "SendModeUnavailableError"
    assert res["mode"] == mode and res["errno"] == errno.EPERM
    assert f"send mode {mode!r} is not available" in res["message"]
    assert "EPERM" in res["message"] and "seccomp" in res["message"]
    assert "WARNING" not in stderr  # refused, not degraded


def test_forced_socket_mode_never_touches_io_uring():
    # Under the same seccomp filter a forced socket ring has nothing to fall back from.
    [res], stderr = run_child(["--seccomp-deny-io-uring", "--mode", "socket"])
    assert res["mode"] == "socket" and res["ring_errno"] is None and res["fallbacks"] == 0
    assert "WARNING" not in stderr
