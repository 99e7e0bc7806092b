#!/usr/bin/env python3
"""
The PostgreSQL lock (L{txrwlock.postgres}) on a throwaway PostgreSQL 15 (with fsync on, as in
production): uncontended acquire+release pairs against the floor of one C{pg_try_advisory_lock}
and one C{pg_advisory_unlock} round trip through the same client (the lock's own session: a
thread of its pool, psycopg); and C{bench_redis.py}'s contention matrix (its driver and workers,
reused), for this lock side by side with the Redis lock, both around the same C{INCRBY} on a
C{redis-server} started for the purpose, so that the critical section costs both the same.

A section of C{run.py} (L{run}), and runnable alone::

    python benchmarks/bench_postgres.py [--smoke]

Timings are wall time, best of C{ctx.repeat} rounds; the Twisted measurements run in child
processes, as in C{bench_redis.py}.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _common, and tests.pgserver

from _children import childJson, printPairs, sectionMain  # noqa: E402
from _common import Context, Report, SectionUnavailableError, Value, atMost  # noqa: E402
from bench_redis import OURS as REDIS  # noqa: E402
from bench_redis import POSTGRES as OURS  # noqa: E402
from bench_redis import _goal, contendMatrix, matrix, matrixFigures, matrixRows, plotRates  # noqa: E402

from tests.pgserver import PG_BIN, PostgresServer  # noqa: E402

__all__ = ["main", "run"]

FLOOR = "try-lock + unlock (floor)"


def run(ctx: Context) -> Report:
    """
    Measure, on a PostgreSQL server started for the purpose.

    @raise SectionUnavailableError: if PostgreSQL 15, psycopg or C{redis-server} is missing.
    """
    from tests.redisserver import REDIS_SERVER, RedisServer

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
    if REDIS_SERVER is None:
        raise SectionUnavailableError(
            "redis-server is not installed (the contention matrix's critical section is an"
            " INCRBY): `apt-get install redis-server` enables this section"
        )
    pairs = 200
    rounds = 2 * ctx.repeat if ctx.smoke else 10 * ctx.repeat
    # The matrix as bench_redis runs it (smoke: its writers only, so that CI stays quick).
    cells = [c for c in matrix(ctx.smoke) if not ctx.smoke or c.workload == "writers"]
    seconds, matrixRounds = (0.2, 1) if ctx.smoke else (1.0, 3)
    subjects = [OURS, REDIS]
    server = PostgresServer(PG_BIN, "-c", "fsync=on")
    server.start()
    try:
        ours = childJson(__file__, "--pairs", server.conninfo(), pairs, rounds)
        with tempfile.TemporaryDirectory(prefix="txrwlock-bench-postgres-") as folder:
            redis = RedisServer(REDIS_SERVER, folder)
            redis.start()
            try:
                contended = contendMatrix(
                    redis.port, cells, subjects, seconds, matrixRounds, None, server.conninfo()
                )
            finally:
                redis.stop()
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
    summaries = {key: result.summary() for key, result in contended.items()}
    rows += matrixRows(cells, subjects, summaries)
    report.plots["postgres.png"] = lambda path, caption: plotRates(
        path, cells, summaries, f"PostgreSQL and Redis locks under contention; {caption}"
    )
    report.extra["postgres"] = {
        "pairs": pairs,
        "rounds": rounds,
        "pairMicroseconds": {"writer": writer, "reader": reader},
        "contention": matrixFigures(seconds, matrixRounds, summaries),
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

    await printPairs(locks, lock, floor, pairs, repeat)


def _childMain(argv: list[str]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    _, conninfo, pairs, repeat = argv

    def main(reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(_pairs(reactor, conninfo, int(pairs), int(repeat)))

    react(main)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run this section alone and print its table.

    @return: the section's figures, as C{run.py} records them.
    """
    return sectionMain(__doc__, run, "postgres", argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--pairs":
        _childMain(sys.argv[1:])
    else:
        main()
