#!/usr/bin/env python3
"""
Run the benchmark suite: every section, one table, a JSON record and a plot.

    python benchmarks/run.py            # full run; writes benchmarks/results/
    python benchmarks/run.py --smoke    # small sizes, seconds; writes into a temporary folder

Sections are the modules named in L{SECTIONS}, in this folder.  One that is absent, or that
raises L{SectionUnavailableError} (a server or a module missing), is skipped with one printed line.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import cast

from _common import Context, Report, SectionUnavailableError, machine
from _report import formatGoals, formatTable, plotCurves, writeJson
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogBeginner

__all__ = ["SECTIONS", "main"]

SECTIONS = ("bench_local", "bench_redis", "bench_postgres")
"""The sections, in the order their rows are printed."""

_HERE = Path(__file__).resolve().parent


def _load(name: str) -> Report | None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        print(f"skipped {name}: benchmarks/{name}.py is not there")
        return None
    print(f"{name}:", flush=True)
    try:
        report: Report = module.run(_context)
    except SectionUnavailableError as e:
        print(f"skipped {name}: {e}")
        return None
    return report


class _UnhandledErrors:
    """
    A log observer that counts the failures Twisted logs as unhandled, by exception type, instead
    of printing their tracebacks: peers that break down (txrwlock 1.1.4 with RecursionError)
    leave many, and the run reports how many.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, event: LogEvent) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.counts[getattr(failure.type, "__name__", repr(failure.type))] += 1
        elif event.get("log_level") in (LogLevel.error, LogLevel.critical):
            self.counts[formatEvent(event)] += 1


def _coreVersion() -> str:
    # The lock changes while the suite is rerun; a digest of its module ties figures to its text.
    import txrwlock.txrwlock as core

    digest = hashlib.sha256(Path(core.__file__).read_bytes()).hexdigest()
    return f"txrwlock/txrwlock.py sha256 {digest[:12]}"


def main(argv: list[str] | None = None) -> int:
    """
    Run the sections, print their tables and the goals', and save the JSON and the plot.

    @return: the exit status: 0, whatever the figures (goals are judged in the table, not here).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--out", type=Path, help="where to write (default: benchmarks/results, or a temp folder)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=_HERE.parent / ".cache" / "bench",
        help="where downloaded peers are kept (default: .cache/bench)",
    )
    args = parser.parse_args(argv)
    global _context
    _context = Context(
        smoke=args.smoke,
        cacheDir=args.cache,
        pointBudget=0.3 if args.smoke else 10.0,
        repeat=2 if args.smoke else 7,
    )
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="txrwlock-bench-")) if args.smoke else _HERE / "results"
    )
    out.mkdir(parents=True, exist_ok=True)

    about = machine()
    about["core"] = _coreVersion()
    about["run"] = "smoke (small sizes, figures only indicative)" if args.smoke else "full"
    about["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for key, value in about.items():
        print(f"{key:>8}: {value}")
    unhandled = _UnhandledErrors()
    globalLogBeginner.beginLoggingTo([cast(ILogObserver, unhandled)], redirectStandardIO=False)
    # Every timing starts with a collection of the garbage left by the previous one; the objects
    # alive now (modules, classes) are set aside so that this costs only that garbage.
    gc.freeze()
    started = time.perf_counter()
    reports = [r for r in map(_load, SECTIONS) if r is not None]
    rows = [row for r in reports for row in r.rows]
    curves = [curve for r in reports for curve in r.curves]
    extra = {k: v for r in reports for k, v in r.extra.items()}
    about["seconds"] = f"{time.perf_counter() - started:.1f}"
    about["load after"] = machine()["load"]

    for report in reports:
        print()
        print(formatTable(report.rows))
    print()
    print(formatGoals(rows))
    writeJson(out / "latest.json", {"machine": about, **extra}, rows, curves)
    caption = (
        f"{about['cpu']} ({about['cores']} cores), {about['python']}, Twisted {about['twisted']},"
        f" {about['date']}, {about['run']} run"
    )
    plotCurves(out / "drain.png", curves, caption)
    plots = [out / "drain.png"]
    for report in reports:
        for name, plot in report.plots.items():
            plot(out / name, caption)
            plots.append(out / name)
    print(
        f"\n{len(rows)} figures in {about['seconds']} s; wrote {out / 'latest.json'} and "
        + ", ".join(map(str, plots))
    )
    return 0


_context: Context

if __name__ == "__main__":
    sys.exit(main())
