#!/usr/bin/env python3
"""
The Redis lock (L{txrwlock.redis}) on a throwaway C{redis-server}: uncontended acquire+release
pairs against the floor of two C{EVALSHA} of an empty script and against redis-py's asyncio
C{Lock}, and the throughput of 4 processes contending for the write lock.

A section of C{run.py} (L{run}), and runnable alone::

    python benchmarks/bench_redis.py [--smoke]

Timings are wall time (network round trips are the cost), best of C{ctx.repeat} rounds.  Twisted
measurements run in child processes, each with its own reactor, so that this section leaves the
reactor of the process running it alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _common, and tests.redisserver

from _children import bestOfRounds, childJson, contend, contendFor, sectionMain  # noqa: E402
from _common import Context, Report, Row, SectionUnavailableError, Value, atMost  # noqa: E402

from tests.redisserver import REDIS_SERVER, RedisServer  # noqa: E402

__all__ = ["main", "run"]

OURS = "txrwlock.redis"
FLOOR = "2x EVALSHA (floor)"
REDISPY = "redis-py Lock"
EMPTY_SCRIPT = "return 0"


def run(ctx: Context) -> Report:
    """
    Measure, on a C{redis-server} started for the purpose.

    @raise SectionUnavailableError: if C{redis-server} or redis-py is missing.
    """
    if REDIS_SERVER is None:
        raise SectionUnavailableError(
            "redis-server is not installed: `apt-get install redis-server` (or, as root, "
            "`bash .ci/ensure-redis`) enables this section"
        )
    try:
        import redis  # noqa: F401
    except ImportError:
        raise SectionUnavailableError(
            "redis-py is missing: `pip install -r requirements-bench.txt` enables this section"
        ) from None
    # Many short rounds rather than a few long ones: the best round is then one in a quiet spell
    # (on a shared machine, 35 rounds of 500 pairs gave ratios 0.05 apart from run to run).
    pairs = 200
    rounds = 2 * ctx.repeat if ctx.smoke else 15 * ctx.repeat
    seconds = 1.0 if ctx.smoke else 5.0
    with tempfile.TemporaryDirectory(prefix="txrwlock-bench-redis-") as folder:
        server = RedisServer(REDIS_SERVER, folder)
        server.start()
        try:
            ours = childJson(__file__, "--pairs", server.port, pairs, rounds)
            redisPy = _redisPyPairs(server.port, pairs, rounds)
            throughput = contend(__file__, server.port, 4, seconds)
        finally:
            server.stop()

    writer: dict[str, Value] = {OURS: ours["writer"], FLOOR: ours["floor"], REDISPY: redisPy}
    reader: dict[str, Value] = {OURS: ours["reader"], FLOOR: ours["floor"]}
    report = Report()
    rows = report.rows
    rows.append(
        _goal("Redis writer pair vs the floor", writer, atMost(writer, (OURS,), FLOOR, 1.3))
    )
    rows.append(
        _goal("Redis reader pair vs the floor", reader, atMost(reader, (OURS,), FLOOR, 1.3))
    )
    rows.append(
        _goal("Redis writer pair vs redis-py", writer, atMost(writer, (OURS,), REDISPY, 1.0))
    )
    rows.append(Row("Redis, 4 processes contending", "pairs/s", {OURS: throughput}))
    report.extra["redis"] = {
        "pairs": pairs,
        "rounds": rounds,
        "contentionSeconds": seconds,
        "pairMicroseconds": {"writer": writer, "reader": reader},
        "contendedPairsPerSecond": throughput,
    }
    return report


def _goal(figure: str, values: dict[str, Value], judged: Row) -> Row:
    return Row(figure, "µs", values, judged.goal, judged.measured, judged.met)


def _redisPyPairs(port: int, pairs: int, repeat: int) -> float:
    """
    @return: microseconds per acquire+release of redis-py's asyncio C{Lock}, uncontended.
    """
    from redis.asyncio import Redis

    async def measure() -> float:
        client = Redis(host="127.0.0.1", port=port)
        lock = client.lock("bench-redis-py", timeout=30)
        best = float("inf")
        try:
            for _ in range(repeat):
                began = time.perf_counter()
                for _ in range(pairs):
                    await lock.acquire()
                    await lock.release()
                best = min(best, time.perf_counter() - began)
        finally:
            await client.aclose()
        return best / pairs * 1e6

    return asyncio.run(measure())


# The children, each on Twisted's reactor.


async def _pairs(reactor: Any, port: int, pairs: int, repeat: int) -> None:
    from txrwlock.redis import connect
    from txrwlock.redis._client import encode

    locks = await connect("127.0.0.1", port, reactor=reactor)
    lock = locks.lock("bench")
    client = locks._client
    sha = await client.execute("SCRIPT", "LOAD", EMPTY_SCRIPT)
    # Encoded once, and sent as the lock sends its commands: the cheapest EVALSHA there is.
    empty = encode("EVALSHA", sha, 1, "k", "a")

    def reply(reply: object, sent: float) -> None:
        pass

    async def floor() -> None:
        await client.run(empty, reply)
        await client.run(empty, reply)

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


async def _contender(reactor: Any, port: int, start: float, seconds: float) -> None:
    from txrwlock.redis import connect

    locks = await connect("127.0.0.1", port, reactor=reactor)
    lock = locks.lock("bench-contended", lease=5.0)
    done = await contendFor(reactor, lock, start, seconds)
    await locks.disconnect()
    print(done)


def _childMain(argv: list[str]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    mode, port, *args = argv

    def main(reactor: Any) -> Deferred[None]:
        if mode == "--pairs":
            return Deferred.fromCoroutine(_pairs(reactor, int(port), int(args[0]), int(args[1])))
        return Deferred.fromCoroutine(
            _contender(reactor, int(port), float(args[0]), float(args[1]))
        )

    react(main)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run this section alone and print its tables: figures and goals.

    @return: the section's figures, as C{run.py} records them.
    """
    return sectionMain(__doc__, run, "redis", argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--pairs", "--contend"):
        _childMain(sys.argv[1:])
    else:
        main()
