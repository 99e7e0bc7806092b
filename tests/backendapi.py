"""
The scenarios of a lock kept in a remote store, written once for each backend:
L{BackendApiMixin}'s with several clients of one lock in one process, L{ProcessesMixin}'s with
workers in separate processes.  L{tests.test_redis} and L{tests.test_postgres} run them against
a real server, each saying, in a few hooks and class attributes, how to reach its store and
where its backend's promises differ.  Also the helpers of every test that runs on the real
reactor, with bounded waits.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from twisted.internet import reactor as _reactor
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, gatherResults, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from txrwlock import LockNotHeldError, LockStatistics, TxTestCase
from txrwlock._remote import LockLostError

__all__ = ["BackendApiMixin", "ProcessesMixin"]

if TYPE_CHECKING:
    _Base = TxTestCase
else:
    _Base = object

_Case = TypeVar("_Case", bound=TxTestCase)

reactor: Any = _reactor
_ROOT = str(Path(__file__).resolve().parent.parent)


def _deferred(
    f: Callable[[_Case], Coroutine[Any, Any, None]],
) -> Callable[[_Case], Deferred[None]]:
    """
    Run an C{async def} test method as a Deferred, which trial waits for on every Twisted we
    support.
    """

    @wraps(f)
    def test(self: _Case) -> Deferred[None]:
        return Deferred.fromCoroutine(f(self))

    return test


def _holdersAndWaiters(stats: LockStatistics) -> tuple[int, bool, int, int]:
    """
    @return: the holders and waiters of C{stats}, without the counters (tested apart).
    """
    return stats.readers, stats.writing, stats.readersWaiting, stats.writersWaiting


def _sleep(seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """
    Wait until C{condition()} holds, checking every 20 ms; fail after C{seconds}.
    """
    deadline = reactor.seconds() + seconds
    while not condition():
        if reactor.seconds() > deadline:
            raise TimeoutError(f"still not true after {seconds} s: {condition}")
        await _sleep(0.02)


def _bounded(d: Deferred[Any], seconds: float = 10.0) -> Deferred[Any]:
    """
    C{d}, failing with L{defer.TimeoutError} if it has not fired within C{seconds}.
    """
    return d.addTimeout(seconds, IReactorTime(reactor))


async def _gather(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    await gatherResults([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)


def _loadedBy(module: str, names: set[str]) -> list[str]:
    """
    @return: which of C{names} a fresh interpreter has in C{sys.modules} once it has imported
        C{module}, in order.
    """
    code = f"import sys, {module}; print(sorted({sorted(names)!r} & sys.modules.keys()))"
    env = dict(os.environ, PYTHONPATH=_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return ast.literal_eval(out.stdout.strip())  # type: ignore[no-any-return]


class _Worker(ProcessProtocol):
    """
    A worker process (L{tests.redisworker}, L{tests.pgworker}): its output lines, and its end.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""
        self._waiting: list[tuple[str, Deferred[str]]] = []

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode()
            self.lines.append(line)
            for prefix, d in list(self._waiting):
                if line.startswith(prefix):
                    self._waiting.remove((prefix, d))
                    d.callback(line)

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode(errors="replace"))

    def line(self, prefix: str) -> Deferred[str]:
        """
        The first line starting with C{prefix}, when it comes.
        """
        for line in self.lines:
            if line.startswith(prefix):
                return succeed(line)
        d: Deferred[str] = Deferred()
        self._waiting.append((prefix, d))
        return d

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


def _spawn(case: TxTestCase, script: str, *args: str) -> _Worker:
    """
    Start C{script}, a worker of the tests, with C{args}: killed after C{case} if still running
    (resumed first, had the test paused it).
    """
    worker = _Worker()
    argv = [sys.executable, str(Path(__file__).with_name(script)), *args]
    env = dict(os.environ, PYTHONPATH=_ROOT)
    process = reactor.spawnProcess(worker, sys.executable, argv, env=env, path=_ROOT)

    def kill() -> Deferred[None]:
        if not worker.ended.called:
            with contextlib.suppress(ProcessExitedAlready):
                process.signalProcess(signal.SIGCONT)
                process.signalProcess("KILL")
        return worker.ended

    case.addCleanup(kill)
    return worker


async def _writerThenReader(test: TxTestCase, a: Any, b: Any, writing: Deferred[Any]) -> None:
    """
    C{a} holds two read holds, and knows that C{b}'s writer (C{writing}) waits: a new reader of
    C{a} waits; the writer goes in once both read holds are released, the reader after it.
    """
    reading = a.readerAcquire()
    await a.readerRelease()
    test.assertFalse(writing.called)
    await a.readerRelease()
    await _bounded(writing)
    test.assertFalse(reading.called)
    await b.writerRelease()
    await _bounded(reading)
    await a.readerRelease()


async def _writingAndWaiting(
    case: Any, a: Any, b: Any, c: Any
) -> tuple[int, Deferred[Any], Deferred[Any]]:
    """
    Make C{a} write, then C{b} wait to write and C{c} to read, behind it in the store, in that
    order; C{case} waits for each to reach it (C{settle}).

    @return: C{a}'s fencing token, and the acquires of C{b} and C{c}.
    """
    await a.writerAcquire()
    before = a.fencingToken
    assert before is not None
    writing = b.writerAcquire()
    await case.settle(a)
    reading = c.readerAcquire()
    await case.settle(a)
    return before, writing, reading


class _ClientsHooks(_Base):
    """
    What the scenarios ask of a backend's test case, which comes first among the bases, so
    that its methods are those called.
    """

    def name(self) -> str:
        """
        @return: a lock name of this test's own.
        """
        raise NotImplementedError()

    async def connect(self) -> Any:
        """
        @return: a new client, disconnected after the test.
        """
        raise NotImplementedError()

    async def clients(self, n: int, name: str, lease: float = 30.0) -> list[Any]:
        """
        @return: the lock C{name} in C{n} new clients.
        """
        raise NotImplementedError()

    async def shortLeased(self, name: str, lost: Any) -> Any:
        """
        @return: the lock C{name} in a new client, with a lease short enough for a test to see
            it renewed, and C{lost} as its C{lost} callback.
        """
        raise NotImplementedError()

    def loseHolds(self, lock: Any) -> None:
        """
        Make the store forget the holds of C{lock}, which learns of it at its next renewal.
        """
        raise NotImplementedError()

    async def settle(self, lock: Any) -> LockStatistics:
        """
        Wait until what was sent so far has reached the store: a statistics round trip.
        """
        raise NotImplementedError()

    async def queued(self, waiter: Any, waiters: int) -> None:
        """
        Wait until the acquires of C{waiter} wait in the store, C{waiters} acquires of its name
        waiting in all: this counts them in C{waiter}'s L{LockStatistics}, which show those of
        every client.  An acquire's first command may open a connection first, which takes a
        while under load.
        """
        deadline = reactor.seconds() + 10
        while True:
            stats = await waiter.statistics()
            if stats.readersWaiting + stats.writersWaiting >= waiters:
                return
            if reactor.seconds() > deadline:
                raise TimeoutError(f"{waiters} waiters never queued: {stats}")
            await _sleep(0.02)

    async def toldWhoWaits(self, lock: Any) -> None:
        """
        Wait until C{lock}, whose coroutines share a hold, knows that another client waits.
        """
        raise NotImplementedError()


class BackendApiMixin(_ClientsHooks):
    """
    Several clients of one lock in one process: the policy and API of the local lock, across
    clients.  A backend's test case makes the clients (L{connect}, L{clients}) and the lock
    names (L{name}), waits for what was sent to reach the store (L{settle}, L{queued}), and
    says where its backend's promises differ.

    @cvar fair: whether waiters go in in arrival order, as the local lock's C{fair=True}; else
        waiting writers go before readers.
    @cvar oneReadHold: whether the readers of one lock object share one read hold in the store
        (counted once in L{LockStatistics.readers}), taken by the first and given back by the
        last.
    @cvar tokensAcrossNames: whether fencing tokens grow across the locks of every name, not
        only within each.
    @cvar crossingDelays: the delays after which L{test_cancelCrossingGrant} cancels an
        acquire: a backend whose grant takes several steps tries a cancel within them.
    """

    fair: ClassVar[bool]
    oneReadHold: ClassVar[bool]
    tokensAcrossNames: ClassVar[bool]
    crossingDelays: ClassVar[tuple[float, ...]] = (0.0,)

    @_deferred
    async def test_misuse(self) -> None:
        """
        Releasing or downgrading what this object does not hold raises L{LockNotHeldError} and
        changes nothing; bad names are refused at once.
        """
        locks = await self.connect()
        name = self.name()
        a, b = locks.lock(name), locks.lock(name)
        await a.readerAcquire()
        self.assertRaisesWithMessage(LockNotHeldError, "holds no write hold", a.writerRelease)
        self.assertRaisesWithMessage(LockNotHeldError, "does not write", a.writerDowngrade)
        self.assertRaisesWithMessage(LockNotHeldError, "holds no read hold", b.readerRelease)
        self.assertRaisesWithMessage(LockNotHeldError, "readerRelease()", b.reader.release)
        await a.readerRelease()
        self.assertRaisesWithMessage(LockNotHeldError, "holds no read hold", a.readerRelease)
        self.assertTrue(await b.tryWriterAcquire())
        await b.writerRelease()
        self.assertRaisesWithMessage(TypeError, "must be a string", locks.lock, b"x")
        self.assertRaisesWithMessage(ValueError, "must not be empty", locks.lock, "")

    @_deferred
    async def test_tryAcquire(self) -> None:
        """
        A try takes the lock only when it can now without jumping the queue, and never waits.
        """
        a, b, c = await self.clients(3, self.name())
        self.assertTrue(await a.tryReaderAcquire())
        self.assertTrue(await b.reader.tryAcquire())
        self.assertFalse(await b.tryWriterAcquire())
        writing = c.writerAcquire()
        await self.queued(c, 1)
        self.assertFalse(await c.tryReaderAcquire())  # behind the waiting writer
        await a.readerRelease()
        await b.readerRelease()
        await _bounded(writing)
        self.assertFalse(await b.tryReaderAcquire())
        self.assertFalse(await b.tryWriterAcquire())
        self.assertEqual(_holdersAndWaiters(await a.statistics()), (0, True, 0, 0))
        await c.writerRelease()
        self.assertTrue(await a.writer.tryAcquire())
        self.assertFalse(await b.tryReaderAcquire())
        self.assertFalse(await b.tryWriterAcquire())
        self.assertEqual(_holdersAndWaiters(await a.statistics()), (0, True, 0, 0))
        await a.writerRelease()

    @_deferred
    async def test_sides(self) -> None:
        """
        C{async with} and C{run} on both sides release once the store has, exception or not.
        """
        a, b = await self.clients(2, self.name())
        async with a.writer as lock:
            self.assertIs(lock, a)
            self.assertTrue(a.writer.locked)
        self.assertFalse(a.writer.locked)
        self.assertTrue(await b.tryWriterAcquire())
        await b.writerRelease()
        with self.assertRaises(ZeroDivisionError):
            async with a.reader:
                self.assertTrue(a.reader.locked)
                1 / 0  # noqa: B018
        self.assertFalse(a.reader.locked)

        async def work(x: int) -> int:
            await _sleep(0.01)
            self.assertTrue(a.isWriting)
            return x * 2

        self.assertEqual(await a.writer.run(work, 21), 42)
        self.assertEqual(await a.writer.run(lambda x: x * 2, 21), 42)
        self.assertEqual(await a.reader.run(lambda: a.isReading), True)

        def broken() -> None:
            raise ZeroDivisionError()

        await self.assertInlineCbRaises(ZeroDivisionError, a.writer.run, broken)
        self.assertTrue(await b.tryWriterAcquire())
        await b.writerRelease()

    @_deferred
    async def test_cancelWaitingWriter(self) -> None:
        """
        Cancelling a waiting writer, or timing it out, fails it with L{CancelledError}, takes it
        out of the store's queue, and lets in the readers waiting behind it.
        """
        a, b, c = await self.clients(3, self.name())
        await a.readerAcquire()
        for giveUp in ("cancel", "timeout"):
            writing = b.writerAcquire()
            if giveUp == "timeout":
                writing.addTimeout(0.5, IReactorTime(reactor))
            await self.queued(b, 1)
            reading = c.readerAcquire()
            await self.queued(c, 2)
            self.assertFalse(reading.called)
            self.assertEqual(_holdersAndWaiters(await c.statistics()), (1, False, 1, 1))
            if giveUp == "cancel":
                writing.cancel()
            failures: list[Failure] = []
            await writing.addErrback(failures.append)
            self.assertTrue(failures[0].check(CancelledError, TimeoutError))
            await _bounded(reading, 5)
            self.assertFalse(b.isWriting)
            self.assertEqual(_holdersAndWaiters(await self.settle(a)), (2, False, 0, 0))
            await c.readerRelease()

    @_deferred
    async def test_cancelCrossingGrant(self) -> None:
        """
        An acquire cancelled while the store grants it ends in L{CancelledError} and holds
        nothing: the grant is given back.  Cancelled at once, it always ends so; later, after
        one of L{crossingDelays}, it may have fired before.
        """
        a, b = await self.clients(2, self.name())
        for acquire in (a.writerAcquire, a.readerAcquire, a.tryWriterAcquire):
            for delay in self.crossingDelays:
                d = acquire()
                if delay:
                    await _sleep(delay)
                d.cancel()
                result = await d.addErrback(lambda f: f.value)
                if not delay:
                    self.assertIsInstance(result, CancelledError)
                elif not isinstance(result, CancelledError):
                    # It fired before the cancel: it holds.
                    await (a.readerRelease() if acquire == a.readerAcquire else a.writerRelease())
                self.assertEqual((a.isReading, a.isWriting), (False, False))
                self.assertEqual(_holdersAndWaiters(await self.settle(b)), (0, False, 0, 0))
                self.assertTrue(await b.tryWriterAcquire())
                await b.writerRelease()

    @_deferred
    async def test_exclusion(self) -> None:
        """
        A writer holds the lock alone; readers of different clients hold it together; a waiter
        goes in when the holder releases (told by the store, not a timer: the lease is 30 s):
        the first to arrive where L{fair}, else the writer.
        """
        a, b, c = await self.clients(3, self.name())
        await a.writerAcquire()
        self.assertTrue(a.isWriting)
        reading = b.readerAcquire()
        await self.queued(b, 1)
        writing = c.writerAcquire()
        await self.queued(c, 2)
        self.assertEqual(_holdersAndWaiters(await b.statistics()), (0, True, 1, 1))
        self.assertFalse(reading.called)
        self.assertFalse(writing.called)
        self.assertFalse(b.isReading)
        self.assertFalse(c.isWriting)
        await a.writerRelease()
        self.assertFalse(a.isWriting)
        if self.fair:
            await _bounded(reading)
            self.assertFalse(c.isWriting)
            self.assertFalse(await a.tryReaderAcquire())  # behind the waiting writer
            await b.readerRelease()
            await _bounded(writing)
            self.assertTrue(c.isWriting)
            await c.writerRelease()
            reading = b.readerAcquire()
        else:
            await _bounded(writing)
            self.assertTrue(c.isWriting)
            self.assertFalse(reading.called)
            await c.writerRelease()
        await _bounded(reading)
        await _bounded(a.readerAcquire())
        self.assertEqual((a.isReading, b.isReading), (True, True))
        self.assertEqual(_holdersAndWaiters(await a.statistics()), (2, False, 0, 0))
        await a.readerRelease()
        await b.readerRelease()
        self.assertEqual(_holdersAndWaiters(await a.statistics()), (0, False, 0, 0))

    @_deferred
    async def test_fencingTokens(self) -> None:
        """
        Each write acquisition of a name, by any client, waiting or tried, gets a larger fencing
        token (and of any name, where L{tokensAcrossNames}); there is none while not writing,
        nor after a downgrade.
        """
        name = self.name()
        a, b = await self.clients(2, name)
        (other,) = await self.clients(1, self.name())
        order = (a, b, a, other, b, a)
        tokens = []
        for lock in order:
            self.assertIsNone(lock.fencingToken)
            await lock.writerAcquire()
            tokens.append(lock.fencingToken)
            await lock.writerRelease()
            self.assertIsNone(lock.fencingToken)
            self.assertTrue(await lock.tryWriterAcquire())
            tokens.append(lock.fencingToken)
            await lock.writerRelease()
        self.assertTrue(all(isinstance(t, int) for t in tokens))
        mine = [t for i, t in enumerate(tokens) if order[i // 2] is not other]
        self.assertEqual(mine, sorted(set(mine)))
        if self.tokensAcrossNames:
            self.assertEqual(tokens, sorted(set(tokens)))
        await a.writerAcquire()
        await a.writerDowngrade()
        self.assertIsNone(a.fencingToken)
        await a.readerRelease()

    @_deferred
    async def test_downgrade(self) -> None:
        """
        A downgraded writer reads, no writer coming in between; the readers waiting go in with
        it, of every client, and those of this object too (sharing its hold, where
        L{oneReadHold}), unless a writer waits.
        """
        a, b, c, d = await self.clients(4, self.name())
        await a.writerAcquire()
        reading = b.readerAcquire()
        local = a.readerAcquire()
        await self.queued(b, 1)
        await self.queued(a, 2)
        self.assertIs(await a.writerDowngrade(), a)
        self.assertEqual((a.isReading, a.isWriting), (True, False))
        await _bounded(reading)
        await _bounded(local)
        readers = 2 if self.oneReadHold else 3
        self.assertEqual(_holdersAndWaiters(await a.statistics()), (readers, False, 0, 0))
        self.assertFalse(await c.tryWriterAcquire())
        await a.readerRelease()
        await a.readerRelease()
        await b.readerRelease()

        await a.writerAcquire()
        writing = c.writerAcquire()
        await self.queued(c, 1)
        reading = b.readerAcquire()
        await self.queued(b, 2)
        await a.writerDowngrade()
        self.assertEqual(_holdersAndWaiters(await self.settle(b)), (1, False, 1, 1))
        self.assertFalse(reading.called)
        self.assertFalse(await d.tryReaderAcquire())
        await a.readerRelease()
        await _bounded(writing)
        await c.writerRelease()
        await _bounded(reading)
        await b.readerRelease()

    @_deferred
    async def test_concurrentCoroutines(self) -> None:
        """
        Many coroutines may use one lock object at once: its readers hold together (sharing one
        hold in the store where L{oneReadHold}, taken by the first and given back by the last);
        a writer of the same object waits for them, and its writers exclude each other.
        """
        name = self.name()
        lock = (await self.connect()).lock(name)
        (other,) = await self.clients(1, name)
        first, second = lock.readerAcquire(), lock.readerAcquire()
        await _bounded(first)
        await _bounded(second)
        readers = 1 if self.oneReadHold else 2
        self.assertEqual(_holdersAndWaiters(await lock.statistics()), (readers, False, 0, 0))
        writing = lock.writerAcquire()
        self.assertFalse(await other.tryWriterAcquire())
        await lock.readerRelease()
        self.assertTrue(lock.isReading)
        self.assertFalse(await other.tryWriterAcquire())
        self.assertFalse(writing.called)
        await lock.readerRelease()
        self.assertFalse(lock.isReading)
        await _bounded(writing)
        self.assertEqual(_holdersAndWaiters(await lock.statistics()), (0, True, 0, 0))
        inside = []

        async def write(i: int) -> None:
            async with lock.writer:
                inside.append(i)
                self.assertEqual(len(inside), 1)
                await _sleep(0.005)
                inside.remove(i)

        more = [Deferred.fromCoroutine(write(i)) for i in range(5)]
        await lock.writerRelease()
        for d in more:
            await _bounded(d)
        await _bounded(Deferred.fromCoroutine(_gather([write(i) for i in range(10)])), 30)
        self.assertTrue(await other.tryWriterAcquire())
        await other.writerRelease()

    @_deferred
    async def test_waitingWriterStopsReaders(self) -> None:
        """
        Once an object whose coroutines share a read hold knows that another client's writer
        waits, the hold takes no new reader: the writer goes in when the readers inside leave,
        the new reader after it (so that readers joining one after another cannot keep it out).
        """
        a, b = await self.clients(2, self.name())
        await a.readerAcquire()
        await a.readerAcquire()
        writing = b.writerAcquire()
        await self.queued(b, 1)
        await self.toldWhoWaits(a)
        await _writerThenReader(self, a, b, writing)

    @_deferred
    async def test_leaseLostOnRenewal(self) -> None:
        """
        A holder whose hold vanished from the store learns it at its next renewal: C{lost} is
        called, it no longer writes, and its release fails with L{LockLostError}.
        """
        lost: list[tuple[Any, bool]] = []
        a = await self.shortLeased(self.name(), lambda lock, writer: lost.append((lock, writer)))
        await a.writerAcquire()
        self.loseHolds(a)
        await _until(lambda: bool(lost))
        self.assertEqual(lost, [(a, True)])
        self.assertFalse(a.isWriting)
        self.assertIsNone(a.fencingToken)
        await self.assertInlineCbRaisesWithMsg(LockLostError, "was lost", a.writerRelease)
        self.assertRaises(LockNotHeldError, a.writerRelease)

    @_deferred
    async def test_lostUnnoticed(self) -> None:
        """
        A hold that vanished from the store before the holder's next renewal makes its release,
        or downgrade, fail with L{LockLostError}; the holder can acquire again.
        """
        (lock,) = await self.clients(1, self.name())
        for giveBack in (lock.writerRelease, lock.writerDowngrade):
            await lock.writerAcquire()
            self.loseHolds(lock)
            await self.assertInlineCbRaisesWithMsg(LockLostError, "was lost", giveBack)
            self.assertEqual((lock.isReading, lock.isWriting), (False, False))
            self.assertRaises(LockNotHeldError, lock.readerRelease)
        await _bounded(lock.writerAcquire())
        await lock.writerRelease()

    @_deferred
    async def test_watchdog(self) -> None:
        """
        A holder with a short lease keeps the lock for several leases, and is not told it lost
        it: its watchdog renews its hold (and its session, for PostgreSQL, which would end it
        idle), and a waiting writer's place too.
        """
        lost: list[bool] = []
        name = self.name()
        a, b = [await self.shortLeased(name, lambda lock, w: lost.append(w)) for _ in range(2)]
        (c,) = await self.clients(1, name)
        await a.writerAcquire()
        writing = b.writerAcquire()
        await self.queued(b, 1)
        await _sleep(4 * a.lease)
        self.assertEqual((lost, a.isWriting), ([], True))
        self.assertFalse(writing.called)
        self.assertEqual((await a.statistics()).writersWaiting, 1)
        self.assertFalse(await c.tryReaderAcquire())
        await a.writerRelease()
        await _bounded(writing)
        await b.writerRelease()


class ProcessesMixin(_ClientsHooks):
    """
    Workers in separate OS processes sharing one lock.  A backend's test case starts them
    (L{spawn}), keeps the counter they share (L{makeCounter}, L{counted}), and says how its
    backend's timings differ.

    @cvar counterRun: in L{test_counter}, how many workers, how many read-modify-writes each,
        and their lease.
    @cvar killedHolder: in L{test_killedHolder}, the killed holder's lease, and how soon after
        its end its waiters have the lock.
    @cvar shortLease: the lease of L{test_watchdog}'s holder.
    """

    counterRun: ClassVar[tuple[int, int, float]]
    killedHolder: ClassVar[tuple[float, float]]
    shortLease: ClassVar[float]

    def spawn(self, mode: str, name: str, lease: float, arg: float) -> _Worker:
        """
        @return: a worker, started, killed after the test if still running.
        """
        raise NotImplementedError()

    def makeCounter(self) -> None:
        """
        Make the counter of L{test_counter}'s workers, at zero, and their list of tokens, empty.
        """
        raise NotImplementedError()

    def counted(self) -> tuple[int, int, list[int]]:
        """
        @return: the counter's two halves, and the tokens written to the list, in order.
        """
        raise NotImplementedError()

    @_deferred
    async def test_counter(self) -> None:
        """
        Several workers (L{counterRun}) each do many non-atomic read-modify-writes of a counter
        under the write lock, and check under the read lock that it is never half-written: no
        update is lost, no read torn, and the fencing tokens the store saw only grow.
        """
        workers, times, lease = self.counterRun
        self.makeCounter()
        name = self.name()
        running = [self.spawn("counter", name, lease, times) for _ in range(workers)]
        results = []
        for worker in running:
            line = await _bounded(worker.line("DONE "), 100)
            results.append(json.loads(line.split(" ", 1)[1]))
        self.assertEqual(results, [{"torn": 0, "lost": 0}] * workers)
        a, b, tokens = self.counted()
        self.assertEqual((a, b), (workers * times, workers * times))
        self.assertEqual(len(tokens), workers * times)
        self.assertEqual(tokens, sorted(set(tokens)))

    @_deferred
    async def test_killedHolder(self) -> None:
        """
        When a holder is killed (SIGKILL: it releases nothing), the waiters, a writer or a
        reader, get the lock soon (L{killedHolder}), though their own leases are longer.
        """
        lease, within = self.killedHolder
        for writer in (True, False):
            name = self.name()
            holder = self.spawn("hold", name, lease, 3600)
            await _bounded(holder.line("HOLDING"), 30)
            (lock,) = await self.clients(1, name, lease=30.0)
            side = lock.writer if writer else lock.reader
            waiting = side.acquire()
            await self.queued(lock, 1)
            self.assertFalse(waiting.called)
            start = reactor.seconds()
            os.kill(holder.transport.pid, signal.SIGKILL)  # type: ignore[union-attr]
            await _bounded(waiting, 30)
            self.assertLess(reactor.seconds() - start, within)
            await side.release()

    @_deferred
    async def test_watchdog(self) -> None:
        """
        A worker holding with a short lease for several leases keeps the lock throughout: others
        cannot take it, and it releases it cleanly; the next writer's fencing token is larger.
        """
        lease = self.shortLease
        name = self.name()
        holder = self.spawn("hold", name, lease, 4 * lease)
        token = int((await _bounded(holder.line("HOLDING"), 30)).split()[1])
        # Three leases of the four it holds: the end stays clear of its release.
        end = reactor.seconds() + 3 * lease
        (lock,) = await self.clients(1, name)
        while reactor.seconds() < end:
            self.assertFalse(await lock.tryWriterAcquire())
            await _sleep(0.1)
        self.assertEqual(await _bounded(holder.line("RELEASED"), 30), "RELEASED")
        self.assertIn("KEPT", holder.lines)
        await _bounded(lock.writerAcquire())
        self.assertGreater(lock.fencingToken, token)
        await lock.writerRelease()
