#!/usr/bin/env python3
"""
The PostgreSQL lock (L{txrwlock.postgres}) on a throwaway PostgreSQL 15 (with fsync on, as in
production): uncontended acquire+release pairs against the floor of one C{pg_try_advisory_lock}
and one C{pg_advisory_unlock} round trip through the same client (the lock's own session: a
thread of its pool, psycopg), and the throughput of 4 processes contending for the write lock.

A section of C{run.py} (L{run}), and runnable alone::

    python benchmarks/bench_postgres.py [--smoke]

Timings are wall time, best of C{ctx.repeat} rounds; the Twisted measurements run in child
processes, as in C{bench_redis.py}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _common, and tests.pgserver

from _common import Context, Report, Row, SectionUnavailableError, Value, atMost  # noqa: E402
from bench_redis import _goal  # noqa: E402

from tests.pgserver import PG_BIN, PostgresServer  # noqa: E402

__all__ = ["main", "run"]

OURS = "txrwlock.postgres"
FLOOR = "try-lock + unlock (floor)"


def run(ctx: Context) -> Report:
    """
    Measure, on a PostgreSQL server started for the purpose.

    @raise SectionUnavailableError: if PostgreSQL 15 or psycopg is missing.
    """
    if not (PG_BIN / "postgres").exists():
        raise SectionUnavailableError(
            f"PostgreSQL 15 is not installed ({PG_BIN}): `apt-get install postgresql` (or, as"
            " root, `bash .ci/ensure-postgres`) enables this section"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SectionUnavailableError(
            "psycopg is missing: `pip install -r requirements-test.txt` enables this section"
        ) from None
    pairs = 200
    rounds = 2 * ctx.repeat if ctx.smoke else 10 * ctx.repeat
    seconds = 1.0 if ctx.smoke else 5.0
    server = PostgresServer(PG_BIN, "-c", "fsync=on")
    server.start()
    try:
        ours = _child("--pairs", server.conninfo(), pairs, rounds)
        throughput = _contend(server.conninfo(), 4, seconds)
    finally:
        server.destroy()

    writer: dict[str, Value] = {OURS: ours["writer"], FLOOR: ours["floor"]}
    reader: dict[str, Value] = {OURS: ours["reader"], FLOOR: ours["floor"]}
    report = Report()
    rows = report.rows
    rows.append(
        _goal("PostgreSQL writer pair vs the floor", writer, atMost(writer, (OURS,), FLOOR, 1.3))
    )
    rows.append(
        _goal("PostgreSQL reader pair vs the floor", reader, atMost(reader, (OURS,), FLOOR, 1.3))
    )
    rows.append(Row("PostgreSQL, 4 processes contending", "pairs/s", {OURS: throughput}))
    report.extra["postgres"] = {
        "pairs": pairs,
        "rounds": rounds,
        "contentionSeconds": seconds,
        "pairMicroseconds": {"writer": writer, "reader": reader},
        "contendedPairsPerSecond": throughput,
    }
    return report


def _child(mode: str, conninfo: str, *args: float) -> Any:
    """
    Run this file as a child process in C{mode}; return what it printed last, as JSON.
    """
    command = [sys.executable, __file__, mode, conninfo, *map(str, args)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _contend(conninfo: str, processes: int, seconds: float) -> float:
    """
    @return: write acquire+release pairs per second, summed over C{processes} processes that
        contend for one lock during the same C{seconds}.
    """
    start = time.time() + 3.0  # when all have started and connected, on a loaded machine too
    command = [sys.executable, __file__, "--contend", conninfo, str(start), str(seconds)]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    counts = [int(child.communicate(timeout=600)[0].split()[-1]) for child in children]
    return sum(counts) / seconds


# The children, each on Twisted's reactor.


async def _pairs(reactor: Any, conninfo: str, pairs: int, repeat: int) -> None:
    from txrwlock.postgres import connect, lockKey

    locks = await connect(conninfo, reactor=reactor)
    lock = locks.lock("bench")
    session, key = lock._session, lockKey("bench-floor")

    async def floor() -> None:
        await session.execute("SELECT pg_try_advisory_lock(%s)", key)
        await session.execute("SELECT pg_advisory_unlock(%s)", key)

    async def writer() -> None:
        await lock.writerAcquire()
        await lock.writerRelease()

    async def reader() -> None:
        await lock.readerAcquire()
        await lock.readerRelease()

    # Rounds of each subject in turn, the best round of each kept (see bench_redis.py).
    subjects = {"floor": floor, "writer": writer, "reader": reader}
    best = dict.fromkeys(subjects, float("inf"))
    for _ in range(repeat):
        for name, pair in subjects.items():
            began = time.perf_counter()
            for _ in range(pairs):
                await pair()
            best[name] = min(best[name], time.perf_counter() - began)
    await locks.disconnect()
    print(json.dumps({name: s / pairs * 1e6 for name, s in best.items()}))


async def _contender(reactor: Any, conninfo: str, start: float, seconds: float) -> None:
    from twisted.internet.task import deferLater

    from txrwlock.postgres import connect

    locks = await connect(conninfo, lease=5.0, reactor=reactor)
    lock = locks.lock("bench-contended")
    await deferLater(reactor, max(0.0, start - time.time()), lambda: None)
    end = time.time() + seconds
    done = 0
    while time.time() < end:
        await lock.writerAcquire()
        await lock.writerRelease()
        done += 1
    await locks.disconnect()
    print(done)


def _childMain(argv: list[str]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    mode, conninfo, *args = argv

    def main(reactor: Any) -> Deferred[None]:
        if mode == "--pairs":
            work = _pairs(reactor, conninfo, int(args[0]), int(args[1]))
        else:
            work = _contender(reactor, conninfo, float(args[0]), float(args[1]))
        return Deferred.fromCoroutine(work)

    react(main)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run this section alone and print its table.

    @return: the section's figures, as C{run.py} records them.
    """
    from _report import formatTable

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for CI")
    args = parser.parse_args(argv)
    ctx = Context(
        smoke=args.smoke,
        cacheDir=_HERE.parent / ".cache" / "bench",
        pointBudget=0.3 if args.smoke else 10.0,
        repeat=2 if args.smoke else 7,
    )
    report = run(ctx)
    print(formatTable(report.rows))
    return report.extra["postgres"]  # type: ignore[no-any-return]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--pairs", "--contend"):
        _childMain(sys.argv[1:])
    else:
        main()
