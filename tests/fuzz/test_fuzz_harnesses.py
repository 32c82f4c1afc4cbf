"""Every coverage-guided fuzz harness (fuzz_registry.py) for a fixed number of inputs with a
fixed seed, so CI is reproducible; each runs in its own libFuzzer process (run.py). Longer
runs on demand: `python -m tests.fuzz.run --seconds 600 [harness ...]` (README.md)."""

from __future__ import annotations

import pytest

from tests.fuzz.fuzz_registry import CI_SEED, HARNESSES
from tests.fuzz.run import run_harness


@pytest.mark.parametrize("name", list(HARNESSES))
def test_fuzz_harness_finds_no_contract_violation(name, tmp_path):
    harness = HARNESSES[name]
    result = run_harness(name, runs=harness.ci_runs, seconds=None, seed=CI_SEED,
                         corpus_root=None, artifacts=tmp_path)
    # On a failure the tail shows the traceback and the input (libFuzzer's "Base64:" line).
    assert result.ok, f"{name}: {result.crash}\n{result.output_tail}"
    assert result.inputs == harness.ci_runs
