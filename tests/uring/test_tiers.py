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


def test_seccomp_denied_io_uring_lands_in_socket_mode():
    [res], stderr = run_child(["--seccomp-deny-io-uring"])
    assert res["mode"] == "socket"
    assert res["ring_errno"] == errno.EPERM
    assert res["zero_copy_enabled"] is False and res["registration_errno"] is None
    assert res["delivered_exactly"] is True
    assert "io_uring could not be created (EPERM" in stderr and "seccomp" in stderr


def test_forced_zerocopy_without_io_uring_says_it_could_not_be_honoured():
    [res], stderr = run_child(["--seccomp-deny-io-uring", "--mode", "zerocopy"])
    assert res["mode"] == "socket" and res["delivered_exactly"]
    assert "WARNING" in stderr


def test_forced_socket_mode_never_touches_io_uring():
    # Under the same seccomp filter a forced socket ring has nothing to fall back from.
    [res], stderr = run_child(["--seccomp-deny-io-uring", "--mode", "socket"])
    assert res["mode"] == "socket" and res["ring_errno"] is None and res["fallbacks"] == 0
    assert "WARNING" not in stderr
