"""
What the sections that measure a lock across processes (C{bench_redis.py}, C{bench_postgres.py})
share: their Twisted measurements run in child processes, each with its own reactor, so that a
section leaves the reactor of the process running it alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import Context, Report

__all__ = ["bestOfRounds", "childJson", "printPairs", "sectionMain"]


def childJson(script: str, *args: object) -> Any:
    """
    Run C{script} as a child process with C{args}; return what it printed last, as JSON.
    """
    command = [sys.executable, script, *map(str, args)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def bestOfRounds(
    subjects: dict[str, Callable[[], Awaitable[None]]], pairs: int, repeat: int
) -> dict[str, float]:
    """
    Rounds of C{pairs} calls of each subject in turn, so that a busy spell of the machine does not
    fall on one subject only; the best round of each is kept.

    @return: microseconds per call, by subject.
    """
    best = dict.fromkeys(subjects, float("inf"))
    for _ in range(repeat):
        for name, pair in subjects.items():
            began = time.perf_counter()
            for _ in range(pairs):
                await pair()
            best[name] = min(best[name], time.perf_counter() - began)
    return {name: seconds / pairs * 1e6 for name, seconds in best.items()}


async def printPairs(
    locks: Any, lock: Any, floor: Callable[[], Awaitable[None]], pairs: int, repeat: int
) -> None:
    """
    Time C{lock}'s uncontended writer and reader pairs beside C{floor} (L{bestOfRounds}), print
    the microseconds per pair of each as JSON, for L{childJson}, and disconnect C{locks}.
    """

    async def writer() -> None:
        await lock.writerAcquire()
        await lock.writerRelease()

    async def reader() -> None:
        await lock.readerAcquire()
        await lock.readerRelease()

    results = await bestOfRounds(
        {"floor": floor, "writer": writer, "reader": reader}, pairs, repeat
    )
    await locks.disconnect()
    print(json.dumps(results))


def sectionMain(
    doc: str | None, run: Callable[[Context], Report], key: str, argv: list[str] | None
) -> dict[str, Any]:
    """
    Run a section alone and print its table.

    @return: the section's figures, C{extra[key]} of its report, as C{run.py} records them.
    """
    from _report import formatGoals, formatTable

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for CI")
    args = parser.parse_args(argv)
    ctx = Context(
        smoke=args.smoke,
        cacheDir=Path(__file__).resolve().parent.parent / ".cache" / "bench",
        pointBudget=0.3 if args.smoke else 10.0,
        repeat=2 if args.smoke else 7,
    )
    report = run(ctx)
    print(formatTable(report.rows))
    print(formatGoals(report.rows))
    results = Path(__file__).resolve().parent / "results"
    for name, plot in report.plots.items():
        plot(results / name, f"{Path(sys.argv[0]).name} alone")
        print(f"wrote {results / name}")
    return report.extra[key]  # type: ignore[no-any-return]
