"""Run the fuzz harnesses with atheris (libFuzzer, coverage-guided), each in its own process.

    python -m tests.fuzz.run                          # every harness, 60 s each
    python -m tests.fuzz.run --seconds 600 rtcp       # one harness for ten minutes
    python -m tests.fuzz.run --runs 20000 --seed 1    # a fixed number of inputs, reproducible
    python -m tests.fuzz.run --ci                     # what CI runs: each harness's ci_runs
    python -m tests.fuzz.run --corpus fuzz-corpus     # keep what coverage found, resume later
    python -m tests.fuzz.run --reproduce rtcp CRASH   # run one input, show the traceback
    python -m tests.fuzz.run --list

Run from the repository root. Arguments after `--` go to libFuzzer as they are (for example
`-- -use_value_profile=1 -jobs=2`). A failing input is written to --artifacts (default
artifacts/fuzz/, which git ignores); add it as a regression test in
tests/fuzz/test_fuzz_regressions.py once the parser is fixed.

libFuzzer ends the process when it is done, so the parent starts one child per harness
(`--child NAME`) and reads its final statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTRUMENTED_PACKAGES = ("relay", "worker_proto", "aioice")
DEFAULT_SECONDS = 60
PER_INPUT_TIMEOUT_S = 10  # an input slower than this is a hang (libFuzzer reports it)
CHILD_MARK = "relay-fuzz: fuzzing starts at "


@dataclasses.dataclass
class HarnessResult:
    name: str
    ok: bool
    inputs: int
    seconds: float
    inputs_per_second: float
    new_units: int
    crash: str | None
    output_tail: str

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"FAILED ({self.crash or 'see output'})"
        return (f"{self.name:<15} {self.inputs:>10,} inputs {self.seconds:>7.1f} s "
                f"{self.inputs_per_second:>9,.0f}/s  {self.new_units:>5} new units  {verdict}")


def _write_seeds(corpus: Path, seeds: list[bytes]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds):
        (corpus / f"seed-{index:03d}").write_bytes(seed)


def _modules_of(package: str) -> set[str]:
    """Every module name of an installed package, from its files (importing nothing)."""
    root = Path(importlib.util.find_spec(package).origin).parent
    names = set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def child_main(name: str, corpus: str, libfuzzer_args: list[str]) -> None:
    """In the child: instrument the harness's modules (only those: instrumenting all of
    relay costs seconds per process and dilutes the coverage signal), then let libFuzzer
    run."""
    import atheris

    from tests.fuzz.fuzz_registry import HARNESSES

    harness = HARNESSES[name]
    others = set().union(*(_modules_of(p) for p in INSTRUMENTED_PACKAGES)) - set(harness.modules)
    with atheris.instrument_imports(include=list(INSTRUMENTED_PACKAGES), exclude=sorted(others)):
        target = harness.target
        seeds = harness.seeds()
    _write_seeds(Path(corpus), seeds)
    argv = [sys.argv[0], corpus, f"-max_len={harness.max_len}",
            f"-timeout={PER_INPUT_TIMEOUT_S}", "-print_final_stats=1", *libfuzzer_args]
    atheris.Setup(argv, target)
    print(f"{CHILD_MARK}{time.time():.6f}", file=sys.stderr, flush=True)
    atheris.Fuzz()


def run_harness(name: str, *, runs: int | None, seconds: float | None, seed: int,
                corpus_root: Path | None, artifacts: Path,
                extra: list[str] | None = None) -> HarnessResult:
    """Fuzz one harness in a child process; bounded by `runs` inputs and/or `seconds`."""
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [f"-seed={seed}", f"-artifact_prefix={artifacts}/{name}-"]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={max(1, round(seconds))}")
    args += extra or []
    with tempfile.TemporaryDirectory(prefix=f"relay-fuzz-{name}-") as scratch:
        corpus = corpus_root / name if corpus_root else Path(scratch)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fuzz.run", "--child", name, str(corpus), "--", *args],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=(seconds or 0) + 600)
        ended = time.time()
    out = proc.stderr + proc.stdout
    start = re.search(re.escape(CHILD_MARK) + r"([0-9.]+)", out)
    elapsed = ended - float(start.group(1)) if start else 0.0
    inputs = _stat(out, "number_of_executed_units")
    crash = re.search(r"Test unit written to (\S+)", out)
    return HarnessResult(
        name=name, ok=proc.returncode == 0 and inputs > 0, inputs=inputs,
        seconds=round(elapsed, 2),
        inputs_per_second=round(inputs / elapsed, 1) if elapsed > 0 else 0.0,
        new_units=_stat(out, "new_units_added"),
        crash=crash.group(1) if crash else None,
        output_tail="\n".join(out.splitlines()[-60:]))


def _stat(output: str, key: str) -> int:
    match = re.search(rf"stat::{key}:\s+(\d+)", output)
    return int(match.group(1)) if match else 0


def reproduce(name: str, path: str) -> int:
    """Run one input through a harness in this process: the traceback names the bug."""
    from tests.fuzz.fuzz_registry import HARNESSES

    HARNESSES[name].target(Path(path).read_bytes())
    print(f"{name}: {path} passes")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("harnesses", nargs="*", help="harness names (default: all)")
    parser.add_argument("--seconds", type=float, help=f"per harness (default {DEFAULT_SECONDS} "
                                                      "unless --runs is given)")
    parser.add_argument("--runs", type=int, help="inputs per harness")
    parser.add_argument("--ci", action="store_true",
                        help="each harness's CI input count with the CI seed (as pytest does)")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    parser.add_argument("--corpus", type=Path, help="keep each harness's corpus in DIR/NAME")
    parser.add_argument("--artifacts", type=Path, default=REPO_ROOT / "artifacts" / "fuzz",
                        help="where failing inputs are written (default artifacts/fuzz)")
    parser.add_argument("--json", type=Path, help="write the results to FILE")
    parser.add_argument("--list", action="store_true", help="list the harnesses")
    parser.add_argument("--reproduce", nargs=2, metavar=("HARNESS", "FILE"))
    parser.add_argument("--child", nargs=2, metavar=("HARNESS", "CORPUS"), help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        child_main(ns.child[0], ns.child[1], extra)
        return 0  # not reached: libFuzzer exits
    from tests.fuzz.fuzz_registry import CI_SEED, HARNESSES

    if ns.list:
        for harness in HARNESSES.values():
            print(f"{harness.name:<15} {harness.what}")
        return 0
    if ns.reproduce:
        return reproduce(*ns.reproduce)
    names = ns.harnesses or list(HARNESSES)
    unknown = [n for n in names if n not in HARNESSES]
    if unknown:
        parser.error(f"unknown harness(es) {', '.join(unknown)}; see --list")
    seconds = ns.seconds if ns.seconds is not None or ns.runs is not None else DEFAULT_SECONDS
    if ns.ci:
        seconds, ns.seed = None, CI_SEED
    results = []
    for name in names:
        runs = HARNESSES[name].ci_runs if ns.ci else ns.runs
        result = run_harness(name, runs=runs, seconds=seconds, seed=ns.seed,
                             corpus_root=ns.corpus, artifacts=ns.artifacts, extra=extra)
        results.append(result)
        print(result.summary(), flush=True)
        if not result.ok:
            print(result.output_tail, file=sys.stderr)
            if result.crash:
                print(f"reproduce: python -m tests.fuzz.run --reproduce {name} {result.crash}",
                      file=sys.stderr)
    total = sum(r.inputs for r in results)
    print(f"{'total':<15} {total:>10,} inputs")
    if ns.json:
        ns.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
