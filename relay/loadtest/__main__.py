"""relay-loadtest (also ``python -m relay.loadtest``): see ``relay-loadtest --help``."""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console

from .config import ConfigError, LoadtestConfig, from_args
from .matrix import new_matrix_result, run_matrix
from .plot import write_plot
from .report import print_matrix_report, print_report, write_json
from .runner import Run

EXIT_SOAK_GREW = 3  # --soak: RSS grew, or the ring's slots did not all come back at idle
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    err = Console(stderr=True)
    try:
        cfg = from_args(argv)
    except ConfigError as exc:
        print(f"relay-loadtest: error: {exc}", file=sys.stderr)  # one unwrapped line
        sys.exit(2)
    if cfg.is_matrix:
        main_matrix(cfg, err)
        return
    run = Run(cfg, err)
    failure: BaseException | None = None
    try:
        result = asyncio.run(run.run())
    except Exception as exc:  # noqa: BLE001 - still write what was measured
        failure = exc
        result = run.result
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    # Piped output (a file, CI) gets the full table instead of an 80-column squeeze.
    out = Console() if sys.stdout.isatty() else Console(width=200)
    print_report(out, result)
    if cfg.json:
        write_json(cfg.json, result)
        err.print(f"wrote {cfg.json}", highlight=False)
    if cfg.plot:
        write_plot(cfg.plot, result)
        err.print(f"wrote {cfg.plot}", highlight=False)
    if failure is not None:
        sys.exit(1)
    if result["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
    if any(not entry["soak"]["passed"] for entry in result["modes"].values()
           if entry.get("soak")):
        sys.exit(EXIT_SOAK_GREW)


def main_matrix(cfg: LoadtestConfig, err: Console) -> None:
    """--matrix / --scenarios / --srtp-suites: every cell in turn, then one table."""
    result = new_matrix_result(cfg)
    failure: BaseException | None = None
    try:
        asyncio.run(run_matrix(cfg, err, result))
    except KeyboardInterrupt:  # between two cells (inside one, the run stops cleanly)
        result["interrupted"] = True
    except Exception as exc:  # noqa: BLE001 - still write what was measured
        failure = exc
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    out = Console() if sys.stdout.isatty() else Console(width=220)
    print_matrix_report(out, result)
    if cfg.json:
        write_json(cfg.json, result)
        err.print(f"wrote {cfg.json}", highlight=False)
    if failure is not None:
        sys.exit(1)
    if result["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
