"""The README's plain-RTP example runs and forwards every packet, rewritten."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_rtp_forward.py"


@pytest.mark.parametrize("mode", ["zerocopy", "socket"])
def test_plain_rtp_forward_example(mode):
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--consumers", "3", "--packets", "40",
                           "--send-mode", mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"send mode: {mode}" in proc.stdout
    assert proc.stdout.count("40/40 packets") == 3
    assert "all receivers got every packet, rewritten" in proc.stdout
