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

import json
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _common, and tests.pgserver

from _children import bestOfRounds, childJson, contend, contendFor, sectionMain  # noqa: E402
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
        ours = childJson(__file__, "--pairs", server.conninfo(), pairs, rounds)
        throughput = contend(__file__, server.conninfo(), 4, seconds)
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

    results = await bestOfRounds(
        {"floor": floor, "writer": writer, "reader": reader}, pairs, repeat
    )
    await locks.disconnect()
    print(json.dumps(results))


async def _contender(reactor: Any, conninfo: str, start: float, seconds: float) -> None:
    from txrwlock.postgres import connect

    locks = await connect(conninfo, lease=5.0, reactor=reactor)
    lock = locks.lock("bench-contended")
    done = await contendFor(reactor, lock, start, seconds)
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
    return sectionMain(__doc__, run, "postgres", argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--pairs", "--contend"):
        _childMain(sys.argv[1:])
    else:
        main()
