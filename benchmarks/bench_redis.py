#!/usr/bin/env python3
"""
The Redis lock (L{txrwlock.redis}) on a throwaway C{redis-server}: uncontended acquire+release
pairs against the floor of two C{EVALSHA} of an empty script and against redis-py's asyncio
C{Lock}; and the contention matrix: P processes of C coroutines each, taking the lock in turn
around one C{INCRBY} (writers only, readers only, 9 reads to 1 write), for this lock, the same
lock at c593907 (before issue 12), redis-py's asyncio C{Lock} (writers only), the local lock
(one process), for writers one per process, the floor of a handoff through Redis (L{_Baton}),
and, for readers, the C{INCRBY}s alone, with no lock (L{_NoLock}).

A section of C{run.py} (L{run}), and runnable alone::

    python benchmarks/bench_redis.py [--smoke] [--only WORKLOAD:C]

C{--only writers:1}, say, measures only the cells of the matrix with that workload and C.

Timings are wall time (network round trips are the cost), best of C{ctx.repeat} rounds.  Twisted
measurements run in child processes, each with its own reactor, so that this section leaves the
reactor of the process running it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _common, and tests.redisserver

from _children import childJson, printPairs, sectionMain  # noqa: E402
from _common import Context, Report, Row, SectionUnavailableError, Value, atMost  # noqa: E402

__all__ = ["main", "run"]

OURS = "txrwlock.redis"
FLOOR = "2x EVALSHA (floor)"
REDISPY = "redis-py Lock"
EMPTY_SCRIPT = "return 0"
HANDOFF = "handoff floor"
BATON_SCRIPT = "return redis.call('PUBLISH', ARGV[1], ARGV[2])"


def run(ctx: Context, only: tuple[str, int] | None = None) -> Report:
    """
    Measure, on a C{redis-server} started for the purpose.

    @param only: the workload and C of the only cells of the matrix to measure; all if L{None}.
    @raise SectionUnavailableError: if C{redis-server} or redis-py is missing.
    """
    # Here, not at the top: the workers of c593907's lock must import no txrwlock of ours.
    from tests.redisserver import REDIS_SERVER, RedisServer

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
    # The matrix: slots of a second (smoke: a fifth), each cell thrice (smoke: once).
    cells = [c for c in matrix(ctx.smoke) if only in (None, (c.workload, c.coroutines))]
    seconds, matrixRounds = (0.2, 1) if ctx.smoke else (1.0, 3)
    subjects = [OURS, HANDOFF, REDISPY, LOCAL, NOLOCK]
    try:
        base: Path | None = baseTree(ctx.cacheDir)
        subjects.insert(1, BASE)
    except SectionUnavailableError as e:
        print(f"  {BASE} left out: {e}")
        base = None
    with tempfile.TemporaryDirectory(prefix="txrwlock-bench-redis-") as folder:
        server = RedisServer(REDIS_SERVER, folder)
        server.start()
        try:
            ours = childJson(__file__, "--pairs", server.port, pairs, rounds)
            redisPy = _redisPyPairs(server.port, pairs, rounds)
            contended = contendMatrix(server.port, cells, subjects, seconds, matrixRounds, base)
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
    summaries = {key: result.summary() for key, result in contended.items()}
    rows += matrixRows(cells, subjects, summaries)
    rows += _handoffRows(cells, summaries)
    rows += _issue12Goals(cells, summaries)
    report.plots["redis.png"] = lambda path, caption: plotRates(
        path, cells, summaries, f"Redis lock under contention; {caption}"
    )
    report.extra["redis"] = {
        "pairs": pairs,
        "rounds": rounds,
        "pairMicroseconds": {"writer": writer, "reader": reader},
        "contention": matrixFigures(seconds, matrixRounds, summaries),
    }
    return report


def matrixFigures(
    seconds: float, rounds: int, summaries: dict[tuple[Cell, str], dict[str, Any]]
) -> dict[str, Any]:
    """
    @return: the figures of a contention matrix, as C{run.py} records them.
    """
    return {
        "seconds": seconds,
        "rounds": rounds,
        "cells": [
            {"workload": c.workload, "P": c.processes, "C": c.coroutines, "subject": s, **f}
            for (c, s), f in summaries.items()
        ],
    }


def _rate(
    summaries: dict[tuple[Cell, str], dict[str, Any]],
    cell: Cell,
    subject: str,
    figure: str = "pairsPerSecond",
) -> Value:
    found = summaries.get((cell, subject))
    return None if found is None else float(found[figure])


def matrixRows(
    cells: list[Cell], subjects: list[str], summaries: dict[tuple[Cell, str], dict[str, Any]]
) -> list[Row]:
    """
    @return: rows of pairs/s (the best round, and the lowest), waits and fairness per cell.
    """
    rows = []
    for cell in cells:
        name = f"{cell.workload}, P={cell.processes} C={cell.coroutines}"
        measured = [s for s in subjects if (cell, s) in summaries]
        rows.append(Row(name, "pairs/s", {s: _rate(summaries, cell, s) for s in measured}))
        rows.append(
            Row(
                name,
                "lowest round, pairs/s",
                {s: _rate(summaries, cell, s, "lowest") for s in measured},
            )
        )
        waits = {s: "{p50:,} / {p99:,}".format(**summaries[cell, s]) for s in measured}
        rows.append(Row(name, "p50 / p99 wait, µs", dict[str, Value](waits)))
        fairness = {s: float(summaries[cell, s]["fairness"]) for s in measured}
        rows.append(Row(name, "fairness", dict[str, Value](fairness)))
    return rows


def _handoffRows(cells: list[Cell], summaries: dict[tuple[Cell, str], dict[str, Any]]) -> list[Row]:
    """
    @return: for each cell where L{HANDOFF} was measured, the pairs/s of L{OURS} and L{BASE} over
        the floor's, and those of L{OURS} and the floor over L{BASE}'s: how far each lock is from
        the floor, and how far above the lock at c593907 any lock handing off through Redis can go.
    """
    rows = []
    for cell in cells:
        floor, base = _rate(summaries, cell, HANDOFF), _rate(summaries, cell, BASE)
        if floor is None:
            continue
        name = f"{cell.workload}, P={cell.processes} C={cell.coroutines}"
        for unit, ref, subjects in [
            ("pairs/s over the handoff floor's", floor, (OURS, BASE)),
            ("pairs/s over c593907's", base, (OURS, HANDOFF)),
        ]:
            values: dict[str, Value] = {}
            for subject in subjects:
                mine = _rate(summaries, cell, subject)
                if isinstance(mine, float) and isinstance(ref, float):
                    values[subject] = mine / ref
            if values:
                rows.append(Row(name, unit, values))
    return rows


def _issue12Goals(
    cells: list[Cell], summaries: dict[tuple[Cell, str], dict[str, Any]]
) -> list[Row]:
    """
    @return: the goals of issue 12, each judged on the figures of L{OURS} and L{BASE} measured
        in this run.
    """
    rows: list[Row] = []
    byKey = {(c.workload, c.processes, c.coroutines): c for c in cells}

    def ratio(figure: str, mine: tuple[Any, ...], ref: tuple[Any, ...], limit: float) -> None:
        a, b = byKey.get(mine[:3]), byKey.get(ref[:3])
        if a is None or b is None:
            return  # a smoke run has no such cell
        x, y = _rate(summaries, a, mine[3]), _rate(summaries, b, ref[3])
        if not isinstance(x, float) or not isinstance(y, float):
            rows.append(Row(figure, "pairs/s", {}, f"≥ {limit:g}x", "no figure", False))
            return
        rows.append(Row(figure, "pairs/s", {}, f"≥ {limit:g}x", f"{x / y:.2f}x", x / y >= limit))

    ratio("writers C=1: P=8 vs P=2", ("writers", 8, 1, OURS), ("writers", 2, 1, OURS), 0.8)
    ratio("writers P=8 C=1 vs c593907", ("writers", 8, 1, OURS), ("writers", 8, 1, BASE), 2.5)
    ratio("readers P=1 C=4 vs c593907", ("readers", 1, 4, OURS), ("readers", 1, 4, BASE), 2)
    ratio("90/10 P=4 C=4 vs c593907", ("90/10", 4, 4, OURS), ("90/10", 4, 4, BASE), 2)
    fairness, cell = min(
        ((f["fairness"], c) for (c, s), f in summaries.items() if s == OURS), key=lambda x: x[0]
    )
    where = f"worst: {cell.workload} P={cell.processes} C={cell.coroutines}"
    alone = summaries.get((cell, NOLOCK))
    if alone is not None:
        # Where no lock makes anyone wait, the figure is the machine's scheduling: say it.
        where += f"; the INCRBY alone there: {alone['fairness']:.2f}"
    worst = f"{fairness:.2f} ({where})"
    rows.append(
        Row("fairness of txrwlock.redis, every cell", "", {}, "≥ 0.9", worst, fairness >= 0.9)
    )
    return rows


def plotRates(
    path: Path, cells: list[Cell], summaries: dict[tuple[Cell, str], dict[str, Any]], title: str
) -> None:
    """
    Plot pairs/s against P, one panel per workload and C, one line per subject (the best round),
    over a band down to its lowest round.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((c.workload, c.coroutines) for c in cells))
    fig, axes = plt.subplots(2, 3, figsize=(15, 9), squeeze=False)
    subjects = list(dict.fromkeys(s for _, s in summaries))
    for index, (workload, coroutines) in enumerate(panels):
        ax = axes[index % 2][index // 2]
        for i, subject in enumerate(subjects):
            points = sorted(
                (c.processes, f["pairsPerSecond"], f["lowest"])
                for (c, s), f in summaries.items()
                if s == subject and c.workload == workload and c.coroutines == coroutines
            )
            if not points:
                continue
            ps, best, lowest = zip(*points, strict=True)
            ax.plot(ps, best, marker="o", color=f"C{i}", label=subject)
            ax.fill_between(ps, lowest, best, color=f"C{i}", alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("P (processes)")
        ax.set_ylabel("pairs/s (best round; band: lowest)")
        ax.set_title(f"{workload}, C={coroutines} coroutine{'s' if coroutines > 1 else ''} each")
        ax.grid(True, alpha=0.4)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


# The contention matrix: P processes of C coroutines each, for each subject, side by side.

BASE = "txrwlock.redis at c593907"
LOCAL = "local lock (1 process)"
NOLOCK = "INCRBY alone (no lock)"
POSTGRES = "txrwlock.postgres"
BASE_COMMIT = "c593907"
_BASE_NEEDS = ("txredisapi==1.6.0", "six")
"""What the lock at L{BASE_COMMIT} needs, and this environment may not have."""
WORKLOADS = {"writers": 0.0, "readers": 1.0, "90/10": 0.9}
"""Each workload, and the share of its acquisitions that are reads."""


@dataclass(frozen=True)
class Cell:
    """
    One cell of the matrix: C{processes} processes of C{coroutines} coroutines each, on
    C{workload}.
    """

    workload: str
    processes: int
    coroutines: int


@dataclass
class CellResult:
    """
    What one subject did in one L{Cell}, over its rounds: pairs/s of each round, and of the best
    round, the waits (µs, from the acquire's call to its grant) and the pairs of each coroutine.
    """

    rates: list[float] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, seconds: float, counts: list[int], waits: list[int]) -> None:
        rate = sum(counts) / seconds
        if not self.rates or rate > max(self.rates):
            self.counts, self.waits = counts, waits
        self.rates.append(rate)

    def summary(self) -> dict[str, Any]:
        """
        @return: pairs/s (best round, and the lowest), p50 and p99 wait (µs) and fairness (the
            fewest pairs of any coroutine over the mean) of the best round.
        """
        waits = sorted(self.waits) or [0]
        mean = sum(self.counts) / len(self.counts) if self.counts else 0.0
        return {
            "pairsPerSecond": max(self.rates),
            "lowest": min(self.rates),
            "rounds": len(self.rates),
            "p50": waits[len(waits) // 2],
            "p99": waits[min(len(waits) - 1, len(waits) * 99 // 100)],
            "fairness": min(self.counts) / mean if mean else 0.0,
        }


def matrix(smoke: bool) -> list[Cell]:
    """
    @return: the cells measured: P = 1, 2, 4, 8 (smoke: 1, 2) times C = 1, 4, for each workload.
    """
    sizes = (1, 2) if smoke else (1, 2, 4, 8)
    return [Cell(w, p, c) for w in WORKLOADS for c in (1, 4) for p in sizes]


def subjectsOf(cell: Cell, subjects: list[str]) -> list[str]:
    """
    @return: which of C{subjects} C{cell} measures: redis-py's C{Lock} has no readers, the local
        lock lives in one process, the handoff floor passes one baton between writers, one per
        process, and the C{INCRBY}s alone are a reference for readers, whom no lock makes wait.
    """
    return [
        s
        for s in subjects
        if not (s == REDISPY and cell.workload != "writers")
        and not (s == LOCAL and cell.processes != 1)
        and not (s == HANDOFF and (cell.workload, cell.coroutines) != ("writers", 1))
        and not (s == NOLOCK and cell.workload != "readers")
    ]


def baseTree(cacheDir: Path) -> Path:
    """
    The lock at L{BASE_COMMIT}, for the children of that subject: its C{txrwlock} package, taken
    out of git, and txredisapi 1.6.0, which it needs, installed beside it by pip (never into this
    environment).  Made once in C{cacheDir}, reused after.

    @return: the folder to put first on those children's C{sys.path}.
    @raise SectionUnavailableError: if git or pip cannot make it.
    """
    tree = cacheDir / f"txrwlock-{BASE_COMMIT}"
    if (tree / "txredisapi.py").exists():
        return tree
    tree.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(
            ["git", "-C", str(_HERE.parent), "archive", BASE_COMMIT, "txrwlock"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(tree),
                *_BASE_NEEDS,
            ],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise SectionUnavailableError(f"cannot make {BASE_COMMIT}'s lock in {tree}: {e}") from e
    return tree


def contendMatrix(
    port: int,
    cells: list[Cell],
    subjects: list[str],
    seconds: float,
    rounds: int,
    base: Path | None,
    conninfo: str = "",
) -> dict[tuple[Cell, str], CellResult]:
    """
    Measure every subject in every cell, C{rounds} times, the subjects and cells taking turns.
    The critical section is an C{INCRBY} on the C{redis-server} at C{port}, whichever the lock:
    the subject L{POSTGRES} takes its lock on the PostgreSQL server at C{conninfo}.

    Each subject has its own worker processes, as many as the largest cell needs, started once
    and connected before the first cell; each gets a plan (for each of its slots: when to start,
    the workload, how many coroutines, a lock name of its own, its place among the processes of
    the slot) and answers, at the end, what each of its coroutines did in each slot.  A slot of
    a cell lasts C{seconds}, then a pause, so that the slots of different subjects never
    overlap.
    """
    workers = max(c.processes for c in cells)
    pause = 0.3
    slots = [
        (cell, subject)
        for _ in range(rounds)
        for cell in cells
        for subject in subjectsOf(cell, subjects)
    ]
    children: dict[str, list[subprocess.Popen[str]]] = {}
    try:
        for subject in subjects:
            count = 1 if subject == LOCAL else workers
            env = dict(os.environ)
            if subject == BASE and base is not None:
                env["TXRWLOCK_BENCH_PATH"] = str(base)
            command = [sys.executable, __file__, "--worker", subject, str(port), conninfo]
            children[subject] = [
                subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
                )
                for _ in range(count)
            ]
        for child in (c for cs in children.values() for c in cs):
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a worker of the contention benchmark failed: {child.args!r}")
        start = time.time() + 0.5
        plans: dict[str, list[list[dict[str, Any]]]] = {
            s: [[] for _ in cs] for s, cs in children.items()
        }
        for number, (cell, subject) in enumerate(slots):
            at = start + number * (seconds + pause)
            for index in range(cell.processes):
                plans[subject][index].append(
                    {
                        "slot": number,
                        "start": at,
                        "seconds": seconds,
                        "reads": WORKLOADS[cell.workload],
                        "coroutines": cell.coroutines,
                        "name": f"bench-contended-{number}",
                        "peer": index,
                        "peers": cell.processes,
                    }
                )
        for subject, cs in children.items():
            for child, plan in zip(cs, plans[subject], strict=True):
                assert child.stdin is not None
                child.stdin.write(json.dumps(plan) + "\n")
                child.stdin.flush()
        done: dict[int, tuple[list[int], list[int]]] = {}
        for child in (c for cs in children.values() for c in cs):
            out, _ = child.communicate(timeout=len(slots) * (seconds + pause) + 600)
            if child.returncode:
                raise RuntimeError(f"a worker of the contention benchmark failed: {child.args!r}")
            for slot in json.loads(out.strip().splitlines()[-1]):
                counts, waits = done.setdefault(slot["slot"], ([], []))
                counts += slot["counts"]
                waits += slot["waits"]
    finally:
        for child in (c for cs in children.values() for c in cs):
            if child.poll() is None:
                child.kill()
                child.wait()
    results: dict[tuple[Cell, str], CellResult] = {}
    for number, (cell, subject) in enumerate(slots):
        counts, waits = done[number]
        results.setdefault((cell, subject), CellResult()).add(seconds, counts, waits)
    return results


# The children, each on Twisted's reactor.


def _ignoreReply(reply: object, sent: float) -> None:
    pass


async def _pairs(reactor: Any, port: int, pairs: int, repeat: int) -> None:
    from txrwlock.redis import connect
    from txrwlock.redis._client import encode

    locks = await connect("127.0.0.1", port, reactor=reactor)
    lock = locks.lock("bench")
    client = locks._client
    sha = await client.execute("SCRIPT", "LOAD", EMPTY_SCRIPT)
    # Encoded once, and sent as the lock sends its commands: the cheapest EVALSHA there is.
    empty = encode("EVALSHA", sha, 1, "k", "a")

    async def floor() -> None:
        await client.run(empty, _ignoreReply)
        await client.run(empty, _ignoreReply)

    await printPairs(locks, lock, floor, pairs, repeat)


# The workers of the contention matrix: each reads its plan from stdin, and prints what each of
# its coroutines did in each slot, as JSON.


def _slotRun(
    plan: dict[str, Any], coroutine: int, now: Callable[[], float]
) -> tuple[Callable[[], bool], Callable[[], bool], list[int]]:
    """
    @return: for one coroutine of a slot: whether to go on, whether the next acquisition reads
        (a seeded draw, so that every subject sees the same sequence), and its list of waits.
    """
    end = plan["start"] + plan["seconds"]
    draw = random.Random(plan["slot"] * 1000 + coroutine).random
    reads = plan["reads"]
    return (lambda: now() < end), (lambda: draw() < reads), []


def _slotResult(slot: dict[str, Any], done: list[tuple[int, list[int]]]) -> dict[str, Any]:
    return {
        "slot": slot["slot"],
        "counts": [c for c, _ in done],
        "waits": [w for _, ws in done for w in ws],
    }


class _Incr(Protocol):
    """
    The critical section of the Twisted subjects: one C{INCRBY} on a connection of its own, with
    no client library, so that it costs every subject the same.
    """

    def __init__(self) -> None:
        self.waiting: deque[Deferred[None]] = deque()
        self.buffer = b""

    def incr(self) -> Deferred[None]:
        cast(Any, self.transport).write(b"*3\r\n$6\r\nINCRBY\r\n$5\r\nbench\r\n$1\r\n1\r\n")
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\r\n")
        for _ in lines:  # each reply is one line, ":<n>"
            self.waiting.popleft().callback(None)


class _Baton:
    """
    The subject L{HANDOFF}'s stand-in for a lock, in one slot: the processes of the slot pass a
    baton round a ring through Redis, and holding it is holding the lock.  L{writerAcquire} waits
    for it on this process's channel; L{writerRelease} passes it to the next process's channel,
    with one C{EVALSHA} of L{BATON_SCRIPT}, which only C{PUBLISH}es.  So a pair has the critical
    path of our lock's handoff (a message from Redis, the C{INCRBY}, one command to Redis) with
    no lock logic: its pairs/s are a floor for any lock that hands off through Redis, with our
    client.

    No baton is lost while a process waits, so every process ends its slot: the first process
    holds the baton at the start; every process makes at least one pair (see
    L{_twistedCoroutine}); a release does not wait for its reply (the next holder does not
    either, so the chain is the same), so that a process leaves its slot right after a pass,
    never holding a baton that came round meanwhile; and the message, how many times the baton
    has been passed, tells whether the next process has had it before: a pass nobody heard is
    made again if not (that process is late to subscribe), and is the last if so (it has left).
    """

    def __init__(self, client: Any, sha: str, slot: dict[str, Any]) -> None:
        from txrwlock.redis._client import bulk

        name, peer, self._peers = slot["name"], slot["peer"], slot["peers"]
        self._client = client
        self._bulk = bulk
        self._head = b"*5\r\n" + bulk("EVALSHA", sha, 0, f"{name}:{(peer + 1) % self._peers}")
        # While this process holds the baton (from when it hears it, which may be before it
        # acquires), how many times it had been passed; and the acquire waiting for it, if any.
        self._passes: int | None = 0 if peer == 0 else None
        self._waiter: Deferred[None] | None = None
        # The last pass, until answered (and made again, if need be).
        self.passing: Deferred[None] = succeed(None)
        self.subscribed: Deferred[_Baton] = Deferred()
        client.subscribe(f"{name}:{peer}", self._heard)

    def _heard(self, message: str | None) -> None:
        if message is None:  # subscribed
            if not self.subscribed.called:
                self.subscribed.callback(self)
            return
        self._passes = int(message)
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    def writerAcquire(self) -> Deferred[None]:
        if self._passes is not None:
            return succeed(None)
        self._waiter = Deferred()
        return self._waiter

    def writerRelease(self) -> Deferred[None]:
        assert self._passes is not None
        passes, self._passes = self._passes + 1, None
        self.passing = self._pass(passes)
        return succeed(None)

    def _pass(self, passes: int) -> Deferred[None]:
        command = self._head + self._bulk(passes)
        return cast(Deferred[None], self._client.run(command, self._passed, passes))

    def _passed(self, receivers: int, sent: float, passes: int) -> Deferred[None] | None:
        if receivers or passes >= self._peers:
            return None
        later = deferLater(self._client.reactor, 0.001, lambda: None)
        return later.addCallback(lambda _: self._pass(passes))


class _Batons:
    """
    The connections of a process of the subject L{HANDOFF}, our client's: one for commands, one
    for pub/sub, as a L{RedisLocks<txrwlock.redis.RedisLocks>} has; and the L{_Baton} of each slot.
    """

    def __init__(self, client: Any, sha: str) -> None:
        self._client = client
        self._sha = sha
        self._batons: list[_Baton] = []

    @classmethod
    async def connect(cls, reactor: Any, port: int) -> _Batons:
        from txrwlock.redis._client import openClient

        # The client loads the script on connecting.
        client = await openClient(
            reactor, [BATON_SCRIPT], "127.0.0.1", port, 0, None, None, None, None, 5, 5, 5
        )
        return cls(client, sha1(BATON_SCRIPT.encode()).hexdigest())

    def baton(self, slot: dict[str, Any]) -> Deferred[_Baton]:
        """
        @return: a L{Deferred} of the baton of C{slot}, once its channel is subscribed.
        """
        baton = _Baton(self._client, self._sha, slot)
        self._batons.append(baton)
        return baton.subscribed

    async def disconnect(self) -> None:
        """
        Disconnect once the last pass of each slot is answered.
        """
        await gatherResults([baton.passing for baton in self._batons])
        await self._client.close()


class _NoLock:
    """
    The subject L{NOLOCK}'s stand-in for a lock, for readers: each acquire and release done at
    once.  Its pairs/s are a ceiling for the readers cells; its fairness is what the machine's
    scheduling of the processes alone gives, with no lock making anyone wait (on 2 cores, 4
    processes and Redis do not get equal shares).
    """

    def readerAcquire(self) -> Deferred[None]:
        return succeed(None)

    def readerRelease(self) -> Deferred[None]:
        return succeed(None)


async def _twistedCoroutine(
    slot: dict[str, Any], number: int, lock: Any, incr: _Incr
) -> tuple[int, list[int]]:
    goOn, reads, waits = _slotRun(slot, number, time.time)
    # A process of the handoff floor's ring that made no pair (it came to its slot late) would
    # keep the baton, or drop it, and the others would wait for ever.
    once = isinstance(lock, _Baton)
    while goOn() or (once and not waits):
        reader = reads()
        began = time.perf_counter()
        await (lock.readerAcquire() if reader else lock.writerAcquire())
        waits.append(round((time.perf_counter() - began) * 1e6))
        await incr.incr()
        await (lock.readerRelease() if reader else lock.writerRelease())
    return len(waits), waits


async def _twistedWorker(reactor: Any, subject: str, port: int, conninfo: str) -> None:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    from txrwlock import TxReadersWriterLock

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    incr = await cast(Callable[..., Deferred[_Incr]], connectProtocol)(endpoint, _Incr())
    locks: Any = None
    if subject == POSTGRES:
        from txrwlock import postgres

        locks = await postgres.connect(conninfo, lease=10.0, reactor=reactor)
    elif subject == HANDOFF:
        locks = await _Batons.connect(reactor, port)
    elif subject not in (LOCAL, NOLOCK):
        from txrwlock.redis import connect

        locks = await connect("127.0.0.1", port, reactor=reactor)
    print("ready", flush=True)
    plan = json.loads(sys.stdin.readline())
    results = []
    for slot in plan:
        lock: Any = _NoLock() if subject == NOLOCK else TxReadersWriterLock()
        if subject == POSTGRES:
            lock = locks.lock(slot["name"])
            # Its session connects on first use: before the slot, so that the slot times the
            # lock and not PostgreSQL's connection set-up (a backend forked, a password checked).
            await lock._session.execute("SELECT 1")
        elif subject == HANDOFF:
            lock = await locks.baton(slot)
        elif locks is not None:
            lock = locks.lock(slot["name"], lease=10.0)
        await deferLater(reactor, max(0.0, slot["start"] - time.time()), lambda: None)
        coroutines = [_twistedCoroutine(slot, n, lock, incr) for n in range(slot["coroutines"])]
        done = await gatherResults(list(map(Deferred.fromCoroutine, coroutines)))
        results.append(_slotResult(slot, done))
    if locks is not None:
        await locks.disconnect()
    cast(Any, incr.transport).loseConnection()
    print(json.dumps(results))


async def _redisPyCoroutine(
    slot: dict[str, Any], number: int, client: Any
) -> tuple[int, list[int]]:
    # One Lock object per coroutine: a Lock keeps its token per thread, which the coroutines
    # share.  Polling every ms: the default, every 0.1 s, would make it look far slower.
    lock = client.lock(slot["name"], timeout=10, sleep=0.001)
    goOn, _, waits = _slotRun(slot, number, time.time)
    while goOn():
        began = time.perf_counter()
        await lock.acquire()
        waits.append(round((time.perf_counter() - began) * 1e6))
        await client.incrby("bench", 1)
        await lock.release()
    return len(waits), waits


def _redisPyWorker(port: int) -> None:
    from redis.asyncio import Redis

    async def work() -> None:
        client = Redis(host="127.0.0.1", port=port)
        await client.ping()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        plan = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        results = []
        for slot in plan:
            await asyncio.sleep(max(0.0, slot["start"] - time.time()))
            coroutines = [_redisPyCoroutine(slot, n, client) for n in range(slot["coroutines"])]
            results.append(_slotResult(slot, list(await asyncio.gather(*coroutines))))
        await client.aclose()
        print(json.dumps(results))

    asyncio.run(work())


def _childMain(argv: list[str]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    mode, port, *args = argv

    def main(reactor: Any) -> Deferred[None]:
        if mode == "--pairs":
            return Deferred.fromCoroutine(_pairs(reactor, int(port), int(args[0]), int(args[1])))
        # --worker SUBJECT PORT CONNINFO
        return Deferred.fromCoroutine(_twistedWorker(reactor, port, int(args[0]), args[1]))

    react(main)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run this section alone and print its tables: figures and goals.

    @return: the section's figures, as C{run.py} records them.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--only", type=_workloadAndC)
    args, rest = parser.parse_known_args(argv)
    return sectionMain(__doc__, lambda ctx: run(ctx, args.only), "redis", rest)


def _workloadAndC(text: str) -> tuple[str, int]:
    workload, _, coroutines = text.rpartition(":")
    if workload not in WORKLOADS or coroutines not in ("1", "4"):
        raise argparse.ArgumentTypeError(f"not WORKLOAD:C ({', '.join(WORKLOADS)}; 1 or 4)")
    return workload, int(coroutines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker" and sys.argv[2] == REDISPY:
        _redisPyWorker(int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] in ("--pairs", "--worker"):
        # The workers of c593907's lock import it first, from the tree made by baseTree().
        if "TXRWLOCK_BENCH_PATH" in os.environ:
            sys.path.insert(0, os.environ["TXRWLOCK_BENCH_PATH"])
        _childMain(sys.argv[1:])
    else:
        main()
