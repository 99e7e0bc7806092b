"""
The in-process lock against its peers: Twisted's C{DeferredLock}, the floor of plain Deferreds,
txrwlock 1.1.4 and aiorwlock (asyncio).

Subjects (the table's columns) are named by the constants below.  Every scenario is built for
each subject by a small function, timed the same way, and judged against the goals of issue 5.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import time
import timeit
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import aiorwlock
from _common import (
    Context,
    Curve,
    HeapClock,
    Report,
    Row,
    Value,
    asReactor,
    atLeast,
    atMost,
    cpuTime,
    gcOff,
)
from _peers import OLD_VERSION, loadOldTxrwlock
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    TimeoutError,
    ensureDeferred,
    succeed,
)
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure

from txrwlock import LockEvent, TxReadersWriterLock

__all__ = ["AIO", "DL", "FAIR", "FLOOR", "OLD", "SUBJECTS", "WP", "run"]

WP = "ours (writer-pref)"
FAIR = "ours (fair)"
DL = "DeferredLock"
FLOOR = "floor"
OLD = f"txrwlock {OLD_VERSION}"
AIO = "aiorwlock"
SUBJECTS = (WP, FAIR, DL, FLOOR, OLD, AIO)
OURS = (WP, FAIR)
# What watching a lock costs: each is timed, on both policies, with the plain pairs.
WATCHED = ("a clock", "one observer", "debug=True")

# A run function does the timed part of a scenario, already built, and returns its duration in
# seconds; it raises _BrokeDownError if the subject did not serve everyone.
_Run = Callable[[], float]
_Prepare = Callable[[int], _Run]
_K = TypeVar("_K")


class _BrokeDownError(Exception):
    """
    The subject broke down in a scenario: the message says how ("RecursionError", "served 37 of
    100").
    """


@dataclass
class _Tally:
    """
    What became of the waiters of one scenario.
    """

    served: int = 0
    timedOut: int = 0
    failure: str | None = None

    def fail(self, failure: Failure) -> None:
        if isinstance(failure.value, TimeoutError):
            self.timedOut += 1
        elif self.failure is None:
            self.failure = failure.type.__name__ if failure.type else repr(failure)

    def verdict(self, served: int = 0, timedOut: int = 0) -> None:
        if self.failure is not None:
            raise _BrokeDownError(self.failure)
        if (self.served, self.timedOut) != (served, timedOut):
            raise _BrokeDownError(
                f"served {self.served} of {served}, timed out {self.timedOut} of {timedOut}"
            )


def _timed(work: Callable[[], object]) -> float:
    start = cpuTime()
    work()
    return cpuTime() - start


def _isWriter(i: int) -> bool:
    # Two readers to one writer, interleaved.
    return i % 3 == 2


# --- uncontended pairs ------------------------------------------------------------------------


def _pairs(ctx: Context, old: ModuleType) -> dict[str, dict[str, Value]]:
    """
    Time the uncontended pairs, all together (L{_timeStatements}): of each subject, and of our
    lock watched in each way of L{WATCHED}.

    @return: by side ("reader", "writer", or a side and a way of watching, "reader, a clock"),
        by subject, microseconds per pair (DeferredLock and the floor, which have no sides,
        under both plain sides).
    """
    oldLock = old.TxReadersWriterLock()
    statements: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
        ("", DL): ("dl.acquire(); dl.release()", {"dl": DeferredLock()}),
        ("", FLOOR): ("succeed(None); succeed(None)", {"succeed": succeed}),
    }
    for side in ("reader", "writer"):
        stmt = f"lock.{side}Acquire(); lock.{side}Release()"
        statements[side, OLD] = (stmt, {"lock": oldLock})
        for subject, fair in ((WP, False), (FAIR, True)):
            statements[side, subject] = (stmt, {"lock": TxReadersWriterLock(fair)})
            for way in WATCHED:
                statements[f"{side}, {way}", subject] = (stmt, {"lock": _watched(fair, way)})
    seconds = _timeStatements(ctx, statements)
    return {
        side: {
            subject: seconds[key] * 1e6
            for subject in SUBJECTS
            for key in ((side, subject), ("", subject) if "," not in side else ())
            if key in seconds
        }
        for side in {side for side, _ in statements if side}
    }


def _watched(fair: bool, way: str) -> TxReadersWriterLock:
    """
    @return: a lock watched in the way C{way}, one of L{WATCHED}.
    """
    if way == "a clock":
        return TxReadersWriterLock(fair, clock=Clock())
    if way == "debug=True":
        return TxReadersWriterLock(fair, debug=True)
    lock = TxReadersWriterLock(fair)
    lock.addObserver(_ignore)
    return lock


def _ignore(event: LockEvent) -> None:
    pass


def _calibrate(timer: timeit.Timer, target: float) -> int:
    number = 1
    while timer.timeit(number) < target:
        number *= 2
    return number


def _timeStatements(
    ctx: Context, statements: Mapping[_K, tuple[str, dict[str, Any]]]
) -> dict[_K, float]:
    """
    Time each statement, best of twice C{ctx.repeat} short rounds.  Within a round every
    statement takes its turn, in a new order each round, so that a change in the machine's load
    hits them all alike.

    @return: seconds per execution, by key.
    """
    timers = {
        k: timeit.Timer(stmt, timer=cpuTime, globals=g) for k, (stmt, g) in statements.items()
    }
    target = 0.005 if ctx.smoke else 0.05
    numbers = {k: _calibrate(t, target) for k, t in timers.items()}
    best = dict.fromkeys(timers, float("inf"))
    order = list(timers)
    shuffle = random.Random(0).shuffle
    for _ in range(2 * ctx.repeat):
        shuffle(order)
        for k in order:
            best[k] = min(best[k], timers[k].timeit(numbers[k]) / numbers[k])
    return best


# --- async with -------------------------------------------------------------------------------


async def _ourReaderLoop(lock: TxReadersWriterLock, n: int) -> float:
    start = cpuTime()
    for _ in range(n):
        async with lock.reader:
            pass
    return cpuTime() - start


async def _deferredLockLoop(lock: DeferredLock, n: int) -> float:
    start = cpuTime()
    for _ in range(n):
        async with lock:
            pass
    return cpuTime() - start


async def _floorLoop(n: int) -> float:
    start = cpuTime()
    for _ in range(n):
        await succeed(None)
        await succeed(None)
    return cpuTime() - start


async def _aioReaderLoop(lock: aiorwlock.RWLock, n: int) -> float:
    start = cpuTime()
    for _ in range(n):
        async with lock.reader_lock:
            pass
    return cpuTime() - start


def _result(d: Deferred[float]) -> float:
    """
    @return: the result of C{d}, which must have fired: every scenario here runs synchronously.
    """
    results: list[float | Failure] = []
    d.addBoth(results.append)
    (result,) = results
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, float)
    return result


def _timeAsyncWith(ctx: Context) -> dict[str, float]:
    """
    @return: seconds per C{async with ...: pass}, in a coroutine, by subject.
    """
    loop = asyncio.new_event_loop()
    try:
        loops: dict[str, Callable[[int], float]] = {
            WP: lambda n: _result(ensureDeferred(_ourReaderLoop(TxReadersWriterLock(), n))),
            FAIR: lambda n: _result(
                ensureDeferred(_ourReaderLoop(TxReadersWriterLock(fair=True), n))
            ),
            DL: lambda n: _result(ensureDeferred(_deferredLockLoop(DeferredLock(), n))),
            FLOOR: lambda n: _result(ensureDeferred(_floorLoop(n))),
            AIO: lambda n: loop.run_until_complete(_aioReaderLoop(aiorwlock.RWLock(), n)),
        }
        target = 0.005 if ctx.smoke else 0.05
        best = dict.fromkeys(loops, float("inf"))
        numbers = {}
        for s, f in loops.items():
            n = 64
            while f(n) < target:
                n *= 2
            numbers[s] = n
        order = list(loops)
        shuffle = random.Random(0).shuffle
        for _ in range(2 * ctx.repeat):  # as _timeStatements
            shuffle(order)
            for s in order:
                with gcOff():
                    best[s] = min(best[s], loops[s](numbers[s]) / numbers[s])
        return best
    finally:
        loop.close()


# --- drains -----------------------------------------------------------------------------------


def _drainRW(makeLock: Callable[[], Any]) -> _Prepare:
    """
    The drain of a readers/writer lock with txrwlock's API: ours, or txrwlock 1.1.4, whose
    releases are Deferreds that can fail.
    """

    def prepare(n: int) -> _Run:
        lock = makeLock()
        lock.writerAcquire()
        tally = _Tally()

        def readerIn(_: object) -> None:
            tally.served += 1
            lock.readerRelease().addErrback(tally.fail)

        def writerIn(_: object) -> None:
            tally.served += 1
            lock.writerRelease().addErrback(tally.fail)

        for i in range(n):
            if _isWriter(i):
                lock.writerAcquire().addCallback(writerIn).addErrback(tally.fail)
            else:
                lock.readerAcquire().addCallback(readerIn).addErrback(tally.fail)

        def drain() -> float:
            elapsed = _timed(lock.writerRelease)
            tally.verdict(served=n)
            return elapsed

        return drain

    return prepare


def _drainOurs(fair: bool) -> _Prepare:
    return _drainRW(lambda: TxReadersWriterLock(fair=fair))


def _drainOld(old: ModuleType) -> _Prepare:
    return _drainRW(old.TxReadersWriterLock)


def _drainDeferredLock(n: int) -> _Run:
    lock = DeferredLock()
    lock.acquire()
    tally = _Tally()

    def locked(lock: DeferredLock) -> None:
        tally.served += 1
        lock.release()

    for _ in range(n):
        lock.acquire().addCallback(locked).addErrback(tally.fail)

    def drain() -> float:
        elapsed = _timed(lock.release)
        tally.verdict(served=n)
        return elapsed

    return drain


def _drainFloor(n: int) -> _Run:
    tally = _Tally()

    def fired(result: None) -> None:
        tally.served += 1

    waiters: list[Deferred[None]] = [Deferred() for _ in range(n)]
    for d in waiters:
        d.addCallback(fired).addErrback(tally.fail)

    def fire() -> None:
        for d in waiters:
            d.callback(None)

    def drain() -> float:
        elapsed = _timed(fire)
        tally.verdict(served=n)
        return elapsed

    return drain


def _drainAio(n: int) -> _Run:
    # aiorwlock only lets the task that took a hold release it, so one coroutine holds the lock,
    # queues the waiters, and times the drain itself.
    lock = aiorwlock.RWLock()
    served = 0

    async def reader() -> None:
        nonlocal served
        async with lock.reader_lock:
            served += 1

    async def writer() -> None:
        nonlocal served
        async with lock.writer_lock:
            served += 1

    async def scenario() -> float:
        await lock.writer_lock.acquire()
        tasks = [asyncio.ensure_future(writer() if _isWriter(i) else reader()) for i in range(n)]
        await asyncio.sleep(0)  # every task runs up to its wait
        start = cpuTime()
        lock.writer_lock.release()
        await asyncio.gather(*tasks)
        return cpuTime() - start

    def drain() -> float:
        loop = asyncio.new_event_loop()
        try:
            elapsed = loop.run_until_complete(scenario())
        finally:
            loop.close()
        if served != n:
            raise _BrokeDownError(f"served {served} of {n}")
        return elapsed

    return drain


# --- cancellations ----------------------------------------------------------------------------


def _timeouts(n: int) -> list[int]:
    """
    @return: a timeout for each of C{n} waiters, all different, in random (but repeatable) order.
    """
    order = list(range(1, n + 1))
    random.Random(n).shuffle(order)
    return order


def _cancelAll(
    n: int, acquire: Callable[[int], Deferred[Any]], tally: _Tally, clock: HeapClock
) -> _Run:
    for i, timeout in enumerate(_timeouts(n)):
        acquire(i).addTimeout(timeout, asReactor(clock)).addErrback(tally.fail)

    def cancel() -> float:
        elapsed = _timed(lambda: clock.advance(n + 1))
        tally.verdict(timedOut=n)
        return elapsed

    return cancel


def _cancelRW(makeLock: Callable[[], Any]) -> _Prepare:
    """
    The cancellation of waiters on a readers/writer lock with txrwlock's API: ours, or 1.1.4.
    """

    def prepare(n: int) -> _Run:
        lock = makeLock()
        lock.writerAcquire()
        return _cancelAll(
            n,
            lambda i: lock.writerAcquire() if _isWriter(i) else lock.readerAcquire(),
            _Tally(),
            HeapClock(),
        )

    return prepare


def _cancelOurs(fair: bool) -> _Prepare:
    return _cancelRW(lambda: TxReadersWriterLock(fair=fair))


def _cancelOld(old: ModuleType) -> _Prepare:
    return _cancelRW(old.TxReadersWriterLock)


def _cancelDeferredLock(n: int) -> _Run:
    lock = DeferredLock()
    lock.acquire()
    return _cancelAll(n, lambda i: lock.acquire(), _Tally(), HeapClock())


def _cancelFloor(n: int) -> _Run:
    return _cancelAll(n, lambda i: Deferred(), _Tally(), HeapClock())


# --- series -----------------------------------------------------------------------------------


def _attempt(run: _Run) -> float:
    try:
        with gcOff():
            return run()
    except RecursionError:
        raise _BrokeDownError("RecursionError") from None


def _firstFailure(prepare: _Prepare, good: int, bad: int, why: str) -> tuple[int, str]:
    """
    @return: the smallest size in (C{good}, C{bad}] at which C{prepare} fails, by bisection, and
        how it fails there.
    """
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            _attempt(prepare(middle))
        except _BrokeDownError as e:
            bad, why = middle, str(e)
        else:
            good = middle
    return bad, why


def _series(
    ctx: Context, figure: str, prepares: Mapping[str, _Prepare], sizes: Sequence[int]
) -> dict[str, Curve]:
    """
    Time C{prepare(n)} of each subject at each size, for as long as the subject serves everyone
    and keeps within the point budget.

    At each size the subjects take turns, round after round, each round in a new order: so that
    a change in the machine's load hits them alike, and the ratios between them hold even when
    their absolute times drift.  A point is the best of C{ctx.repeat} rounds; of 3 once a round
    takes over 0.3 s, of 1 once it takes over 3 s: noise matters less the longer a round.  A
    subject stops before a size that, at its growth so far (at least linear, at most quadratic),
    would take over three budgets.

    @return: a curve by subject.
    """
    curves = {s: Curve(figure, s) for s in prepares}
    running = list(prepares)
    shuffle = random.Random(0).shuffle
    for i, n in enumerate(sizes):
        best = dict.fromkeys(running, float("inf"))
        rounds = dict.fromkeys(running, ctx.repeat)
        for round in range(ctx.repeat):
            order = [s for s in running if round < rounds[s]]
            shuffle(order)
            for subject in order:
                try:
                    elapsed = _attempt(prepares[subject](n))
                except _BrokeDownError as e:
                    good = curves[subject].points[-1][0] if curves[subject].points else 0
                    at, why = _firstFailure(prepares[subject], good, n, str(e))
                    curves[subject].end = f"{why} at N={at}"
                    running.remove(subject)
                    continue
                best[subject] = min(best[subject], elapsed)
                if elapsed > 3:
                    rounds[subject] = round + 1
                elif elapsed > 0.3:
                    rounds[subject] = min(rounds[subject], 3)
        for subject in list(running):
            curve = curves[subject]
            curve.points.append((n, best[subject]))
            if i + 1 < len(sizes) and (
                best[subject] > ctx.pointBudget
                or _project(curve, sizes[i + 1]) > 3 * ctx.pointBudget
            ):
                curve.end = f"stopped after N={n:,} ({best[subject]:.2g} s)"
                running.remove(subject)
    return curves


def _project(curve: Curve, n: int) -> float:
    """
    @return: how long size C{n} would take, extrapolating the last two points of C{curve} by a
        power law whose exponent is held between 1 and 2.
    """
    n2, t2 = curve.points[-1]
    exponent = 1.0
    if len(curve.points) > 1:
        n1, t1 = curve.points[-2]
        if t1 > 0 and t2 > 0:
            exponent = min(2.0, max(1.0, math.log(t2 / t1) / math.log(n2 / n1)))
    return float(t2 * (n / n2) ** exponent)


def _growth(curve: Curve, small: int, large: int) -> Value:
    """
    @return: how many times longer the size C{large} took than C{small}, or why there is no
        figure.
    """
    points = dict(curve.points)
    if small in points and large in points:
        return points[large] / points[small]
    return curve.end or "not measured"


def _atSize(curve: Curve, n: int, perItem: bool = True) -> Value:
    points = dict(curve.points)
    if n in points:
        return points[n] / n if perItem else points[n]
    return curve.end or "not measured"


# --- memory -----------------------------------------------------------------------------------


def _bytesPerWaiter(n: int, setUp: Callable[[], Callable[[], object]]) -> float:
    """
    @param setUp: makes a held lock and returns the call that queues one more waiter on it.
    @return: bytes allocated, and still held, per waiter queued.
    """
    kept: list[object] = [None] * n
    wait = setUp()
    wait()  # allocations made once per lock, not per waiter
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            kept[i] = wait()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n


def _heldOurs(fair: bool) -> Callable[[], Callable[[], object]]:
    def setUp() -> Callable[[], object]:
        lock = TxReadersWriterLock(fair=fair)
        lock.writerAcquire()
        return lock.readerAcquire

    return setUp


def _heldDeferredLock() -> Callable[[], object]:
    lock = DeferredLock()
    lock.acquire()
    return lock.acquire


def _heldOld(old: ModuleType) -> Callable[[], Callable[[], object]]:
    def setUp() -> Callable[[], object]:
        lock = old.TxReadersWriterLock()
        lock.writerAcquire()
        acquire: Callable[[], object] = lock.readerAcquire
        return acquire

    return setUp


# --- mixed workload ---------------------------------------------------------------------------


@dataclass
class _Mixed:
    sections: int
    cpu: float
    simulated: float
    longestReaderWait: float
    longestWriterWait: float


_AcquireRelease = tuple[Callable[[], Deferred[Any]], Callable[[], object]]


def _mixed(sides: tuple[_AcquireRelease, _AcquireRelease], workers: int, rounds: int) -> _Mixed:
    """
    C{workers} coroutines, one in ten a writer, each C{rounds} times: think (exponential, mean
    1 s), acquire its side, hold it (uniform, 1 to 5 ms), release.  Time is a L{HeapClock},
    advanced from one due call to the next.

    @param sides: acquire and release of the reader side, then of the writer side.
    """
    clock = HeapClock()
    reactor = asReactor(clock)
    rng = random.Random(7)
    longest = [0.0, 0.0]
    done = 0

    async def worker(writer: bool) -> None:
        nonlocal done
        acquire, release = sides[writer]
        for _ in range(rounds):
            await deferLater(reactor, rng.expovariate(1.0))
            asked = clock.seconds()
            await acquire()
            longest[writer] = max(longest[writer], clock.seconds() - asked)
            await deferLater(reactor, rng.uniform(0.001, 0.005))
            released = release()
            if isinstance(released, Deferred):
                await released
            done += 1

    roles = [i % 10 == 0 for i in range(workers)]
    rng.shuffle(roles)
    tally = _Tally()
    start = cpuTime()
    for writer in roles:
        ensureDeferred(worker(writer)).addErrback(tally.fail)
    while (due := clock.nextCall()) is not None:
        clock.advance(due - clock.seconds())
    cpu = cpuTime() - start
    tally.verdict()
    if done != workers * rounds:
        raise _BrokeDownError(f"{done} of {workers * rounds} critical sections done")
    return _Mixed(done, cpu, clock.seconds(), longest[False], longest[True])


def _mixedSides(old: ModuleType) -> dict[str, tuple[_AcquireRelease, _AcquireRelease]]:
    wp, fair, dl, oldLock = (
        TxReadersWriterLock(),
        TxReadersWriterLock(fair=True),
        DeferredLock(),
        old.TxReadersWriterLock(),
    )
    return {
        WP: ((wp.readerAcquire, wp.readerRelease), (wp.writerAcquire, wp.writerRelease)),
        FAIR: ((fair.readerAcquire, fair.readerRelease), (fair.writerAcquire, fair.writerRelease)),
        DL: ((dl.acquire, dl.release), (dl.acquire, dl.release)),
        OLD: (
            (oldLock.readerAcquire, oldLock.readerRelease),
            (oldLock.writerAcquire, oldLock.writerRelease),
        ),
    }


# --- the section ------------------------------------------------------------------------------


def _goalRow(figure: str, unit: str, values: dict[str, Value], judged: Row) -> Row:
    return Row(figure, unit, values, judged.goal, judged.measured, judged.met)


def _us(seconds: Mapping[str, Value]) -> dict[str, Value]:
    return {s: t * 1e6 if isinstance(t, float) else t for s, t in seconds.items()}


def run(ctx: Context) -> Report:
    """
    Measure every figure of issue 5 for the local lock and its peers.
    """
    old = loadOldTxrwlock(ctx.cacheDir)
    report = Report()
    rows = report.rows
    say = _progress()

    say("uncontended pairs")
    pairs = _pairs(ctx, old)
    reader, writer = pairs["reader"], pairs["writer"]
    rows.append(_goalRow("reader pair, uncontended", "µs", reader, atMost(reader, OURS, DL, 0.8)))
    rows.append(_goalRow("writer pair, uncontended", "µs", writer, atMost(writer, OURS, DL, 0.8)))
    rows.append(
        _goalRow("reader pair vs the floor", "µs", reader, atMost(reader, OURS, FLOOR, 1.3))
    )
    rows.append(_goalRow("reader pair, speed-up", "µs", reader, atLeast(reader, OURS, OLD, 25)))
    rows.append(_goalRow("writer pair, speed-up", "µs", writer, atLeast(writer, OURS, OLD, 25)))
    for way in WATCHED:
        for side, plain in (("reader", reader), ("writer", writer)):
            watched = pairs[f"{side}, {way}"]
            extra = {s: _minus(watched[s], plain[s]) for s in OURS}
            rows.append(Row(f"{side} pair, with {way}: cost over the plain pair", "µs", extra))

    say("async with")
    asyncWith = _us(_timeAsyncWith(ctx))
    rows.append(
        _goalRow("async with reader: pass", "µs", asyncWith, atMost(asyncWith, OURS, DL, 1.0))
    )
    rows.append(
        _goalRow("async with reader, speed-up", "µs", asyncWith, atLeast(asyncWith, OURS, AIO, 3))
    )

    say("drains")
    small, large = (500, 5_000) if ctx.smoke else (20_000, 200_000)
    sizes = [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000]
    if not ctx.smoke:
        sizes += [10_000, 20_000, 50_000, 100_000, 200_000]
    drains = {
        WP: _drainOurs(False),
        FAIR: _drainOurs(True),
        DL: _drainDeferredLock,
        FLOOR: _drainFloor,
        OLD: _drainOld(old),
        AIO: _drainAio,
    }
    drainCurves = _series(ctx, "drain", drains, sizes)
    report.curves += drainCurves.values()
    for n in (small, large):
        values = {s: _atSize(c, n) for s, c in drainCurves.items()}
        rows.append(Row(f"drain of {n:,} waiters, per waiter", "µs", _us(values)))
    growth = {s: _growth(c, small, large) for s, c in drainCurves.items()}
    rows.append(
        _goalRow(
            f"drain growth, {small:,} → {large:,}", "x", growth, atMost(growth, OURS, FLOOR, 1.5)
        )
    )

    say("cancellations")
    small, large = (100, 1_000) if ctx.smoke else (5_000, 50_000)
    sizes = [100, 200, 500, 1_000]
    if not ctx.smoke:
        sizes += [2_000, 5_000, 10_000, 20_000, 50_000]
    cancels = {
        WP: _cancelOurs(False),
        FAIR: _cancelOurs(True),
        DL: _cancelDeferredLock,
        FLOOR: _cancelFloor,
        OLD: _cancelOld(old),
    }
    cancelCurves = _series(ctx, "cancel", cancels, sizes)
    report.curves += cancelCurves.values()
    values = {s: _atSize(c, large, perItem=False) for s, c in cancelCurves.items()}
    rows.append(Row(f"cancel {large:,} waiters by timeouts", "s", values))
    growth = {s: _growth(c, small, large) for s, c in cancelCurves.items()}
    rows.append(
        _goalRow(
            f"cancel growth, {small:,} → {large:,}",
            "x",
            growth,
            atMost(growth, OURS, FLOOR, 1.5),
        )
    )

    say("a long queue")
    huge = 10_000 if ctx.smoke else 1_000_000
    hugeValues: dict[str, Value] = {}
    served = True
    for subject, fair in ((WP, False), (FAIR, True)):
        try:
            elapsed = _attempt(_drainOurs(fair)(huge))
        except _BrokeDownError as e:
            hugeValues[subject] = str(e)
            served = False
        else:
            hugeValues[subject] = elapsed
            drainCurves[subject].points.append((huge, elapsed))
    for subject in (DL, OLD, AIO):
        curve = drainCurves[subject]
        hugeValues[subject] = curve.end
    rows.append(
        Row(
            f"drain of {huge:,} waiters",
            "s",
            hugeValues,
            "all served, no RecursionError",
            "all served" if served else "NOT all served",
            served,
        )
    )

    say("memory")
    n = 2_000 if ctx.smoke else 100_000
    memory: dict[str, Value] = {
        WP: _bytesPerWaiter(n, _heldOurs(False)),
        FAIR: _bytesPerWaiter(n, _heldOurs(True)),
        DL: _bytesPerWaiter(n, _heldDeferredLock),
        FLOOR: _bytesPerWaiter(n, lambda: Deferred),
        OLD: _bytesPerWaiter(n, _heldOld(old)),
    }
    rows.append(_goalRow("memory per waiting acquire", "B", memory, atMost(memory, OURS, DL, 1.5)))

    say("mixed workload")
    workers, rounds = (200, 3) if ctx.smoke else (1_000, 20)
    mixed: dict[str, _Mixed | str] = {}
    for subject, sides in _mixedSides(old).items():
        try:
            mixed[subject] = _mixed(sides, workers, rounds)
        except (_BrokeDownError, RecursionError) as e:
            mixed[subject] = f"{type(e).__name__}: {e}"
    label = f"mixed, {workers:,} coroutines 90% readers"
    rows.append(
        Row(
            f"{label}: throughput",
            "k sections/CPU s",
            _pick(mixed, lambda m: m.sections / m.cpu / 1e3),
        )
    )
    rows.append(
        Row(
            f"{label}: longest reader wait",
            "simulated ms",
            _pick(mixed, lambda m: m.longestReaderWait * 1e3),
        )
    )
    rows.append(
        Row(
            f"{label}: longest writer wait",
            "simulated ms",
            _pick(mixed, lambda m: m.longestWriterWait * 1e3),
        )
    )
    report.extra["mixed"] = {s: m if isinstance(m, str) else m.__dict__ for s, m in mixed.items()}
    report.extra["versions"] = {OLD: OLD_VERSION, AIO: aiorwlock.__version__}
    return report


def _minus(a: Value, b: Value) -> Value:
    return a - b if isinstance(a, float) and isinstance(b, float) else "not measured"


def _pick(results: dict[str, _Mixed | str], figure: Callable[[_Mixed], float]) -> dict[str, Value]:
    return {s: r if isinstance(r, str) else figure(r) for s, r in results.items()}


def _progress() -> Callable[[str], None]:
    started = time.perf_counter()

    def say(what: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f} s] {what}", flush=True)

    return say
