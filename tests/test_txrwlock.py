"""
Tests for L{txrwlock.txrwlock}: the lock's contract, rule by rule, under both policies.

Everything is deterministic: the lock needs no reactor, and time comes from a L{Clock}.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import weakref
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    ensureDeferred,
    gatherResults,
    inlineCallbacks,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater

from txrwlock import LockNotHeldError, LockSide, LockStatistics, TxReadersWriterLock, TxTestCase

__all__ = ["FairTests", "ModuleTests", "ReentryAndReferenceTests", "WriterPreferenceTests"]

if TYPE_CHECKING:
    _Base = TxTestCase
else:
    _Base = object

_Side = LockSide[TxReadersWriterLock]


def _isWriter(name: str) -> bool:
    """
    Waiters in these tests are named C{R...} (readers) and C{W...} (writers).
    """
    return name.startswith("W")


def _logGrant(lock: TxReadersWriterLock, name: str, log: list[str]) -> TxReadersWriterLock:
    """
    The callback of an acquire's grant: log the waiter's name, and pass the lock on.
    """
    log.append(name)
    return lock


def _acquire(lock: TxReadersWriterLock, name: str, log: list[str]) -> Deferred[TxReadersWriterLock]:
    """
    Acquire the side of C{lock} that C{name} says, appending C{name} to C{log} once granted.

    @return: the acquire's own Deferred (so cancelling it cancels the acquire).
    """
    acquire = lock.writerAcquire if _isWriter(name) else lock.readerAcquire
    return acquire().addCallback(_logGrant, name, log)


def _release(lock: TxReadersWriterLock, name: str) -> None:
    """
    Release the side of C{lock} that C{name} says, checking that the release has already fired.
    """
    release = lock.writerRelease if _isWriter(name) else lock.readerRelease
    if not release().called:
        raise AssertionError(f"the release of {name} returned an unfired Deferred")


def _logAndRelease(lock: TxReadersWriterLock, name: str, log: list[str]) -> None:
    """
    The callback of an acquire's grant: log the waiter's name, and release.
    """
    log.append(name)
    _release(lock, name)


def _passThrough(lock: TxReadersWriterLock, name: str, log: list[str]) -> Deferred[None]:
    """
    Acquire as L{_acquire}, and release from the grant's callback.
    """
    # One callback, not _acquire's and another: the chain of 10^5 waiters, whose time goes mostly
    # to the garbage collector, then takes 1.6 s instead of 2.7 s (measured).
    acquire = lock.writerAcquire if _isWriter(name) else lock.readerAcquire
    return acquire().addCallback(_logAndRelease, name, log)


@contextmanager
def _recursionLimit(headroom: int) -> Iterator[None]:
    """
    Allow only C{headroom} more frames than the caller's stack holds now.
    """
    depth = 0
    frame = sys._getframe()
    while frame.f_back is not None:
        depth += 1
        frame = frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + headroom)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class _BothPolicies(_Base):
    """
    The rules both policies share; the subclasses set L{fair} and add their own rules.
    """

    fair: ClassVar[bool]

    def makeLock(self) -> TxReadersWriterLock:
        return TxReadersWriterLock(fair=self.fair)

    def assertStatistics(
        self,
        lock: TxReadersWriterLock,
        readers: int = 0,
        writing: bool = False,
        readersWaiting: int = 0,
        writersWaiting: int = 0,
    ) -> None:
        self.assertEqual(
            lock.statistics(), LockStatistics(readers, writing, readersWaiting, writersWaiting)
        )

    # Grants and releases.

    def test_freeLockGrantsAtOnce(self) -> None:
        """
        An acquire of a free lock fires at once, with the lock; so does a reader's beside readers.
        """
        lock = self.makeLock()
        self.assertIs(self.successResultOf(lock.readerAcquire()), lock)
        self.assertIs(self.successResultOf(lock.readerAcquire()), lock)
        self.assertStatistics(lock, readers=2)
        self.assertIsNone(self.successResultOf(lock.readerRelease()))
        self.assertIsNone(self.successResultOf(lock.readerRelease()))
        self.assertIs(self.successResultOf(lock.writerAcquire()), lock)
        self.assertStatistics(lock, writing=True)
        self.assertIsNone(self.successResultOf(lock.writerRelease()))
        self.assertStatistics(lock)

    def test_inlineCallbacks(self) -> None:
        """
        C{yield} on acquires and releases works in C{inlineCallbacks}, and runs synchronously
        while the lock is free.
        """
        lock = self.makeLock()
        seen: list[tuple[bool, bool]] = []

        @inlineCallbacks
        def both() -> Generator[Deferred[Any], Any, str]:
            got = yield lock.readerAcquire()
            self.assertIs(got, lock)
            seen.append((lock.isReading, lock.isWriting))
            yield lock.readerRelease()
            yield lock.writerAcquire()
            seen.append((lock.isReading, lock.isWriting))
            yield lock.writerRelease()
            return "done"

        self.assertEqual(self.successResultOf(both()), "done")
        self.assertEqual(seen, [(True, False), (False, True)])
        self.assertStatistics(lock)

    def test_coroutines(self) -> None:
        """
        C{await} on acquires and releases works in coroutines run by C{ensureDeferred} and by
        C{Deferred.fromCoroutine}.
        """
        lock = self.makeLock()
        seen: list[tuple[bool, bool]] = []

        async def both() -> str:
            self.assertIs(await lock.writerAcquire(), lock)
            seen.append((lock.isReading, lock.isWriting))
            await lock.writerRelease()
            await lock.readerAcquire()
            seen.append((lock.isReading, lock.isWriting))
            await lock.readerRelease()
            return "done"

        self.assertEqual(self.successResultOf(ensureDeferred(both())), "done")
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(both())), "done")
        self.assertEqual(seen, [(False, True), (True, False)] * 2)
        self.assertStatistics(lock)

    def test_writerExcludesEveryone(self) -> None:
        """
        While a writer holds the lock, readers and writers wait; once it leaves they go in.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        r1 = _acquire(lock, "R1", log)
        self.assertNoResult(r1)
        self.assertStatistics(lock, writing=True, readersWaiting=1)
        _release(lock, "W1")
        self.assertIs(self.successResultOf(r1), lock)
        w2 = _acquire(lock, "W2", log)
        self.assertNoResult(w2)
        _release(lock, "R1")
        self.assertIs(self.successResultOf(w2), lock)
        self.assertEqual(log, ["W1", "R1", "W2"])

    def test_holdersOnly(self) -> None:
        """
        C{isReading} and C{isWriting} describe holders, never waiters.
        """
        lock = self.makeLock()
        self.assertEqual((lock.isReading, lock.isWriting), (False, False))
        lock.readerAcquire()
        w = lock.writerAcquire()
        self.assertNoResult(w)
        self.assertEqual((lock.isReading, lock.isWriting), (True, False))
        lock.readerRelease()
        self.successResultOf(w)
        r = lock.readerAcquire()
        self.assertNoResult(r)
        self.assertEqual((lock.isReading, lock.isWriting), (False, True))
        lock.writerRelease()
        self.successResultOf(r)
        self.assertEqual((lock.isReading, lock.isWriting), (True, False))

    def test_writersInArrivalOrder(self) -> None:
        """
        Waiting writers are served one at a time, in arrival order.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R0", log)
        ws = [_acquire(lock, f"W{i}", log) for i in range(1, 5)]
        _release(lock, "R0")
        for i in range(1, len(ws) + 1):
            self.assertEqual(log[-1], f"W{i}")
            for later in ws[i:]:
                self.assertNoResult(later)
            _release(lock, f"W{i}")
        self.assertEqual(log, ["R0", "W1", "W2", "W3", "W4"])
        self.assertStatistics(lock)

    def test_waitingReadersGoTogether(self) -> None:
        """
        When a writer leaves and only readers wait, they are all admitted together, their
        Deferreds fired in arrival order.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W", log)
        for i in range(5):
            _acquire(lock, f"R{i}", log)
        _release(lock, "W")
        self.assertEqual(log, ["W", "R0", "R1", "R2", "R3", "R4"])
        self.assertStatistics(lock, readers=5)

    def test_writerFromFirstReaderQueuesBehindBatch(self) -> None:
        """
        A writer that asks from the callback of the first reader of an admitted batch queues
        behind all of that batch: they were all granted before any was fired.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        late: list[Deferred[TxReadersWriterLock]] = []
        _acquire(lock, "R1", log).addCallback(lambda _: late.append(_acquire(lock, "W2", log)))
        _acquire(lock, "R2", log)
        _acquire(lock, "R3", log)
        _release(lock, "W1")
        self.assertEqual(log, ["W1", "R1", "R2", "R3"])
        self.assertStatistics(lock, readers=3, writersWaiting=1)
        _release(lock, "R1")
        _release(lock, "R2")
        self.assertNoResult(late[0])
        _release(lock, "R3")
        self.successResultOf(late[0])
        self.assertEqual(log, ["W1", "R1", "R2", "R3", "W2"])

    # No recursion.

    def test_longChainDoesNotRecurse(self) -> None:
        """
        10^4 waiters, readers and writers, each releasing from its grant's callback, are all
        served, in policy order, in constant stack depth.
        """
        lock = self.makeLock()
        log: list[str] = []
        # Under a recursion limit of 100, a frame per waiter would fail within 100 waiters:
        # 10^4 is a hundred times that, and takes 0.2 s where 10^5 took 2.4 (trial, both policies).
        n = 10**4
        _acquire(lock, "W", log)
        names = [("W" if i % 2 else "R") + str(i) for i in range(n)]
        for name in names:
            _passThrough(lock, name, log)
        with _recursionLimit(100):
            _release(lock, "W")
        expected = names if self.fair else names[1::2] + names[0::2]
        self.assertEqual(log, ["W", *expected])
        self.assertStatistics(lock)

    # Cancellation.

    def test_cancelWaiter(self) -> None:
        """
        Cancelling a waiting acquire errbacks it with L{CancelledError} and removes the waiter:
        it is not counted, and never gets the lock.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W0", log)
        r = _acquire(lock, "R1", log)
        w = _acquire(lock, "W1", log)
        self.assertStatistics(lock, writing=True, readersWaiting=1, writersWaiting=1)
        r.cancel()
        self.failureResultOf(r, CancelledError)
        self.assertStatistics(lock, writing=True, writersWaiting=1)
        w.cancel()
        self.failureResultOf(w, CancelledError)
        self.assertStatistics(lock, writing=True)
        _release(lock, "W0")
        self.assertEqual(log, ["W0"])
        self.assertStatistics(lock)

    def test_timeout(self) -> None:
        """
        C{addTimeout} on a waiting acquire, with a L{Clock}, gives up at the deadline with
        L{TimeoutError}, and the waiter is gone.
        """
        lock = self.makeLock()
        clock = Clock()
        lock.readerAcquire()
        w = lock.writerAcquire().addTimeout(5, IReactorTime(clock))
        clock.advance(4)
        self.assertNoResult(w)
        self.assertStatistics(lock, readers=1, writersWaiting=1)
        clock.advance(1)
        self.failureResultOf(w, TimeoutError)
        self.assertStatistics(lock, readers=1)
        lock.readerRelease()
        self.assertStatistics(lock)

    def test_timeoutAfterGrantDoesNothing(self) -> None:
        """
        A timeout on an acquire granted before its deadline does nothing.
        """
        lock = self.makeLock()
        clock = Clock()
        lock.writerAcquire()
        r = lock.readerAcquire().addTimeout(5, IReactorTime(clock))
        clock.advance(1)
        lock.writerRelease()
        self.assertIs(self.successResultOf(r), lock)
        clock.advance(10)
        self.assertStatistics(lock, readers=1)

    def test_cancelInlineCallbacks(self) -> None:
        """
        Cancelling an C{inlineCallbacks} Deferred waiting on an acquire cancels the acquire.
        """
        lock = self.makeLock()
        lock.writerAcquire()
        reached: list[bool] = []

        @inlineCallbacks
        def read() -> Generator[Deferred[Any], Any, None]:
            yield lock.readerAcquire()
            reached.append(True)

        d = read()
        self.assertStatistics(lock, writing=True, readersWaiting=1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertStatistics(lock, writing=True)
        lock.writerRelease()
        self.assertEqual(reached, [])
        self.assertStatistics(lock)

    def test_cancelCoroutine(self) -> None:
        """
        Cancelling a coroutine's Deferred waiting on an acquire cancels the acquire.
        """
        lock = self.makeLock()
        lock.readerAcquire()
        reached: list[bool] = []

        async def write() -> None:
            await lock.writerAcquire()
            reached.append(True)

        d = Deferred.fromCoroutine(write())
        self.assertStatistics(lock, readers=1, writersWaiting=1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertStatistics(lock, readers=1)
        lock.readerRelease()
        self.assertEqual(reached, [])
        self.assertStatistics(lock)

    def test_cancelWriterAdmitsReadersBehind(self) -> None:
        """
        Readers queued behind a cancelled writer are admitted at once.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        w = _acquire(lock, "W1", log)
        r2 = _acquire(lock, "R2", log)
        r3 = _acquire(lock, "R3", log)
        self.assertNoResult(r2)
        w.cancel()
        self.failureResultOf(w, CancelledError)
        self.assertIs(self.successResultOf(r2), lock)
        self.assertIs(self.successResultOf(r3), lock)
        self.assertEqual(log, ["R1", "R2", "R3"])
        self.assertStatistics(lock, readers=3)

    def test_cancelAfterGrantDoesNothing(self) -> None:
        """
        Cancelling an acquire whose Deferred has fired does nothing: its caller holds the lock.
        """
        lock = self.makeLock()
        r = lock.readerAcquire()
        r.cancel()
        self.assertIs(self.successResultOf(r), lock)
        self.assertStatistics(lock, readers=1)
        w = lock.writerAcquire()
        lock.readerRelease()
        w.cancel()
        self.assertIs(self.successResultOf(w), lock)
        self.assertStatistics(lock, writing=True)
        lock.writerRelease()
        self.assertStatistics(lock)

    def test_readerCancelledWithinBatch(self) -> None:
        """
        A reader cancelled by the callback of an earlier reader of the same admitted batch never
        holds the lock: its Deferred ends in L{CancelledError} and its grant is taken back.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W", log)
        r1 = _acquire(lock, "R1", log)
        r2 = _acquire(lock, "R2", log)
        r3 = _acquire(lock, "R3", log)
        r1.addCallback(lambda _: r2.cancel())
        _release(lock, "W")
        self.assertStatistics(lock, readers=2)
        self.failureResultOf(r2, CancelledError)
        self.successResultOf(r3)
        self.assertEqual(log, ["W", "R1", "R3"])
        _release(lock, "R1")
        _release(lock, "R3")
        self.assertStatistics(lock)
        self.assertRaises(LockNotHeldError, lock.readerRelease)

    def test_writerCancelledBetweenGrantAndFiring(self) -> None:
        """
        A writer granted, while an earlier waiter's callback runs, then cancelled by that callback
        before its Deferred fires, never holds the lock: its grant is taken back and whoever can
        go next goes.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        w2 = _acquire(lock, "W2", log)
        w3 = _acquire(lock, "W3", log)
        r4 = _acquire(lock, "R4", log)

        def releaseThenCancel(_: object) -> None:
            _release(lock, "W2")  # grants W3, whose Deferred waits for this callback to end
            w3.cancel()

        w2.addCallback(releaseThenCancel)
        _release(lock, "W1")
        self.failureResultOf(w3, CancelledError)
        self.successResultOf(r4)
        self.assertEqual(log, ["W1", "W2", "R4"])
        self.assertStatistics(lock, readers=1)

    def test_waiterFiredByCaller(self) -> None:
        """
        A waiter whose Deferred its caller fires (a misuse) is no longer counted, and gets nothing
        when its turn comes, at the head of a queue or behind it: the lock goes on to the next.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W0", log)
        head = lock.writerAcquire()
        _acquire(lock, "W1", log)
        behind = lock.writerAcquire()
        _acquire(lock, "R1", log)
        head.callback(lock)
        behind.callback(lock)
        self.assertStatistics(lock, writing=True, readersWaiting=1, writersWaiting=1)
        _release(lock, "W0")
        self.assertEqual(log, ["W0", "W1"])
        _release(lock, "W1")
        self.assertEqual(log, ["W0", "W1", "R1"])
        _release(lock, "R1")
        self.assertStatistics(lock)

    def test_grantedWaiterFiredByCaller(self) -> None:
        """
        A reader granted in a batch, whose Deferred the callback of an earlier reader fires before
        the lock does (a misuse), holds nothing: its grant is taken back.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W", log)
        r1 = _acquire(lock, "R1", log)
        r2 = lock.readerAcquire()

        def fireR2(held: TxReadersWriterLock) -> TxReadersWriterLock:
            r2.callback(held)
            return held

        r1.addCallback(fireR2)
        _release(lock, "W")
        self.assertStatistics(lock, readers=1)
        _release(lock, "R1")
        self.assertStatistics(lock)
        self.assertRaises(LockNotHeldError, lock.readerRelease)

    def test_massCancellation(self) -> None:
        """
        Cancelling most waiters, heads and middles (enough for the lock to compact its queues
        several times), leaves the count exact and everyone else served in policy order.
        """
        lock = self.makeLock()
        log: list[str] = []
        n = 200
        _acquire(lock, "W", log)
        names = [("W" if i % 2 else "R") + str(i) for i in range(n)]
        ds = dict(zip(names, (_passThrough(lock, name, log) for name in names), strict=True))
        cancelled = [name for i, name in enumerate(names) if i % 8 not in (0, 3)]
        # All but the survivors first, then the first two survivors, heads by then: their leaving
        # skips the dead behind them.
        for name in cancelled:
            ds[name].cancel()
        for name in names[:8]:
            if name not in cancelled:
                ds[name].cancel()
                cancelled.append(name)
        for name in cancelled:
            self.failureResultOf(ds[name], CancelledError)
        live = [name for name in names if name not in cancelled]
        self.assertStatistics(
            lock,
            writing=True,
            readersWaiting=sum(not _isWriter(name) for name in live),
            writersWaiting=sum(_isWriter(name) for name in live),
        )
        _release(lock, "W")
        writers = [name for name in live if _isWriter(name)]
        readers = [name for name in live if not _isWriter(name)]
        self.assertEqual(log, ["W", *(live if self.fair else writers + readers)])
        self.assertStatistics(lock)

    def test_cancelledBehindLiveWaiters(self) -> None:
        """
        Waiters cancelled behind live ones are skipped when the queue reaches them.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W0", log)
        ds = {name: _acquire(lock, name, log) for name in ["W1", "W2", "W3", "R1", "R2", "R3"]}
        for name in ["W2", "R2"]:
            ds[name].cancel()
            self.failureResultOf(ds[name], CancelledError)
        self.assertStatistics(lock, writing=True, readersWaiting=2, writersWaiting=2)
        _release(lock, "W0")
        self.assertEqual(log, ["W0", "W1"])
        _release(lock, "W1")
        self.assertEqual(log, ["W0", "W1", "W3"])
        _release(lock, "W3")
        self.assertEqual(log, ["W0", "W1", "W3", "R1", "R3"])
        self.assertStatistics(lock, readers=2)

    def test_cancelHeadSkipsCancelledBehind(self) -> None:
        """
        When the waiter at the head of the queue is cancelled, and those behind it were cancelled
        before, nobody waits any more: a new reader goes in at once.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        ws = [_acquire(lock, name, log) for name in ["W1", "W2", "W3"]]
        for w in reversed(ws):
            w.cancel()
            self.failureResultOf(w, CancelledError)
        self.assertStatistics(lock, readers=1)
        self.assertTrue(lock.tryReaderAcquire())
        self.successResultOf(_acquire(lock, "R2", log))
        self.assertStatistics(lock, readers=3)

    def test_cancelledWaitersAreForgotten(self) -> None:
        """
        The lock does not keep the waiters cancelled behind live ones: no more of them than live
        waiters, however many come and go while the lock stays held.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W0", log)
        _acquire(lock, "W1", log)
        _acquire(lock, "R1", log)
        kept: list[weakref.ref[Deferred[TxReadersWriterLock]]] = []
        for i in range(1000):
            d = _acquire(lock, ("W" if i % 2 else "R") + str(i), log)
            d.cancel()
            self.failureResultOf(d, CancelledError)
            kept.append(weakref.ref(d))
        del d
        gc.collect()
        self.assertStatistics(lock, writing=True, readersWaiting=1, writersWaiting=1)
        self.assertLessEqual(sum(ref() is not None for ref in kept), 2)  # the live waiters
        _release(lock, "W0")
        self.assertEqual(log, ["W0", "W1"])

    def assertDeadCounted(self, lock: TxReadersWriterLock) -> None:
        """
        Assert, looking inside the lock, that the cancelled waiters still queued are exactly the
        ones it counts, and no more than the live ones.
        """
        queued = [d for queue in lock._waiters._queues() for d in queue]
        dead = sum(d.called for d in queued)
        self.assertEqual(lock._waiters._dead, dead)
        self.assertLessEqual(dead, len(queued) - dead)

    def test_deadCountedExactly(self) -> None:
        """
        Waiters cancelled in random order, while heads leave the queue, are counted exactly as
        long as they stay queued, and compaction keeps them no more numerous than the live.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W0", log)
        waiters = [_acquire(lock, ("W" if i % 3 else "R") + str(i), log) for i in range(60)]
        for d in waiters:
            d.addErrback(lambda f: f.trap(CancelledError))
        order = random.Random(7).sample(waiters, len(waiters))
        for i, d in enumerate(order):
            if i == 30:
                _release(lock, "W0")  # the heads go; a writer or readers then hold the lock
                self.assertDeadCounted(lock)
            d.cancel()
            self.assertDeadCounted(lock)

    # Misuse.

    def assertMisuse(self, lock: TxReadersWriterLock, f: Callable[[], object], call: str) -> None:
        """
        Assert that C{f()} raises L{LockNotHeldError} naming C{call} and the state, and changes
        nothing.
        """
        side = "writer" if call.startswith("writer") else "reader"
        before = lock.statistics()
        state = repr(lock)
        e = self.assertRaisesWithMessage(
            LockNotHeldError, f"{call}() called, but no {side} holds the lock: {state}", f
        )
        self.assertIsInstance(e, RuntimeError)
        self.assertEqual(lock.statistics(), before)

    def test_misuseOnFreeLock(self) -> None:
        """
        Releasing or downgrading a free lock raises L{LockNotHeldError}; the lock still works.
        """
        lock = self.makeLock()
        self.assertMisuse(lock, lock.readerRelease, "readerRelease")
        self.assertMisuse(lock, lock.writerRelease, "writerRelease")
        self.assertMisuse(lock, lock.writerDowngrade, "writerDowngrade")
        self.assertMisuse(lock, lock.reader.release, "readerRelease")
        self.assertMisuse(lock, lock.writer.release, "writerRelease")
        self.successResultOf(lock.writerAcquire())
        lock.writerRelease()
        self.successResultOf(lock.readerAcquire())
        lock.readerRelease()
        self.assertStatistics(lock)

    def test_misuseWrongSide(self) -> None:
        """
        Releasing the side not held, or downgrading readers, raises and changes nothing, waiters
        included; the lock still works.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        _acquire(lock, "W1", log)
        _acquire(lock, "R2", log)
        self.assertMisuse(lock, lock.writerRelease, "writerRelease")
        self.assertMisuse(lock, lock.writer.release, "writerRelease")
        self.assertMisuse(lock, lock.writerDowngrade, "writerDowngrade")
        _release(lock, "R1")
        self.assertEqual(log, ["R1", "W1"])
        self.assertMisuse(lock, lock.readerRelease, "readerRelease")
        self.assertMisuse(lock, lock.reader.release, "readerRelease")
        _release(lock, "W1")
        self.assertEqual(log, ["R1", "W1", "R2"])
        self.assertStatistics(lock, readers=1)

    def test_misuseDoubleRelease(self) -> None:
        """
        A second release of a side held once raises; the lock's count stays right.
        """
        lock = self.makeLock()
        lock.readerAcquire()
        lock.readerAcquire()
        lock.readerRelease()
        lock.readerRelease()
        self.assertMisuse(lock, lock.readerRelease, "readerRelease")
        w = lock.writerAcquire()
        self.successResultOf(w)
        r = lock.readerAcquire()
        lock.writerRelease()
        self.assertMisuse(lock, lock.writerRelease, "writerRelease")
        self.successResultOf(r)
        self.assertStatistics(lock, readers=1)

    # The reader and writer sides.

    def test_sidesMadeOnce(self) -> None:
        """
        C{lock.reader} and C{lock.writer} are the same objects each time, one pair per lock.
        """
        lock = self.makeLock()
        self.assertIs(lock.reader, lock.reader)
        self.assertIs(lock.writer, lock.writer)
        self.assertIsNot(lock.reader, lock.writer)
        self.assertIsNot(self.makeLock().reader, lock.reader)

    def test_sides(self) -> None:
        """
        Each side acquires, releases, try-acquires and tells whether it is held, for its side.
        """
        lock = self.makeLock()
        self.assertIs(self.successResultOf(lock.reader.acquire()), lock)
        self.assertEqual((lock.reader.locked, lock.writer.locked), (True, False))
        w = lock.writer.acquire()
        self.assertNoResult(w)
        self.assertFalse(lock.writer.tryAcquire())
        self.assertIsNone(self.successResultOf(lock.reader.release()))
        self.assertIs(self.successResultOf(w), lock)
        self.assertEqual((lock.reader.locked, lock.writer.locked), (False, True))
        self.assertFalse(lock.reader.tryAcquire())
        self.assertIsNone(self.successResultOf(lock.writer.release()))
        self.assertTrue(lock.reader.tryAcquire())
        self.assertStatistics(lock, readers=1)
        lock.reader.release()
        self.assertTrue(lock.writer.tryAcquire())
        self.assertStatistics(lock, writing=True)

    def test_sideRepr(self) -> None:
        """
        A side's repr names the side and shows the lock.
        """
        lock = self.makeLock()
        self.assertEqual(repr(lock.reader), f"<reader side of {lock!r}>")
        self.assertEqual(repr(lock.writer), f"<writer side of {lock!r}>")

    def _runEachSide(self, check: Callable[[TxReadersWriterLock, _Side], None]) -> None:
        """
        Run C{check(lock, side)} for each side of a new lock, then check that the lock is free.
        """
        for writer in (False, True):
            lock = self.makeLock()
            check(lock, lock.writer if writer else lock.reader)
            self.assertStatistics(lock)

    def test_runPlainValue(self) -> None:
        """
        C{run} holds the side while C{f} runs, passes the arguments, returns a Deferred of a plain
        result, and releases.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            def f(a: int, b: int) -> tuple[bool, int]:
                return side.locked, a - b

            self.assertEqual(self.successResultOf(side.run(f, 5, b=2)), (True, 3))

        self._runEachSide(check)

    def test_runDeferred(self) -> None:
        """
        C{run} holds the side until the Deferred that C{f} returns fires, and passes its result.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            inner: Deferred[str] = Deferred()
            d = side.run(lambda: inner)
            self.assertNoResult(d)
            self.assertTrue(side.locked)
            inner.callback("result")
            self.assertEqual(self.successResultOf(d), "result")

        self._runEachSide(check)

    def test_runCoroutine(self) -> None:
        """
        C{run} calls a coroutine function, holds the side until the coroutine ends, and passes its
        result.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            inner: Deferred[str] = Deferred()

            async def f(suffix: str) -> str:
                return await inner + suffix

            d = side.run(f, "!")
            self.assertNoResult(d)
            self.assertTrue(side.locked)
            inner.callback("result")
            self.assertEqual(self.successResultOf(d), "result!")

        self._runEachSide(check)

    def test_runRaises(self) -> None:
        """
        When C{f} raises, C{run}'s Deferred fails with the exception, and the side is released.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            def f() -> None:
                raise ValueError("boom")

            self.failureResultOf(side.run(f), ValueError)

        self._runEachSide(check)

    def test_runFailingDeferred(self) -> None:
        """
        When C{f}'s Deferred fails, or its coroutine raises, C{run}'s Deferred fails with the
        same error, and the side is released.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            inner: Deferred[None] = Deferred()
            d = side.run(lambda: inner)
            inner.errback(ValueError("boom"))
            self.failureResultOf(d, ValueError)
            self.assertFalse(side.locked)

            async def f() -> None:
                raise KeyError("boom")

            self.failureResultOf(side.run(f), KeyError)

        self._runEachSide(check)

    def test_runWaitsForTheLock(self) -> None:
        """
        C{run} calls C{f} only once the side is granted.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            calls: list[bool] = []
            lock.writerAcquire()
            d = side.run(lambda: calls.append(side.locked))
            self.assertEqual(calls, [])
            lock.writerRelease()
            self.successResultOf(d)
            self.assertEqual(calls, [True])

        self._runEachSide(check)

    def test_runCancelledWhileWaiting(self) -> None:
        """
        Cancelling C{run}'s Deferred while it waits for the lock gives up the acquire; C{f} is
        never called.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            calls: list[None] = []
            lock.writerAcquire()
            d = side.run(lambda: calls.append(None))
            d.cancel()
            self.failureResultOf(d, CancelledError)
            self.assertStatistics(lock, writing=True)
            lock.writerRelease()
            self.assertEqual(calls, [])

        self._runEachSide(check)

    def test_runCancelledWhileRunning(self) -> None:
        """
        Cancelling C{run}'s Deferred while C{f}'s Deferred or coroutine runs cancels it; the side
        is released.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            inner: Deferred[None] = Deferred()
            d = side.run(lambda: inner)
            d.cancel()
            self.failureResultOf(d, CancelledError)
            self.assertTrue(inner.called)
            self.assertFalse(side.locked)

            awaited: Deferred[None] = Deferred()

            async def f() -> None:
                await awaited

            d = side.run(f)
            self.assertTrue(side.locked)
            d.cancel()
            self.failureResultOf(d, CancelledError)

        self._runEachSide(check)

    def test_asyncWith(self) -> None:
        """
        C{async with} a side holds it in the block (waiting for it if need be), and releases it
        on normal exit.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            seen: list[object] = []

            async def body() -> str:
                async with side as held:
                    seen.append((held, side.locked))
                return "done"

            lock.writerAcquire()
            d = Deferred.fromCoroutine(body())
            self.assertEqual(seen, [])
            lock.writerRelease()
            self.assertEqual(self.successResultOf(d), "done")
            self.assertEqual(seen, [(lock, True)])

        self._runEachSide(check)

    def test_asyncWithException(self) -> None:
        """
        C{async with} a side releases it when the block raises, and lets the exception through.
        """

        def check(lock: TxReadersWriterLock, side: _Side) -> None:
            async def body() -> None:
                async with side:
                    raise ValueError("boom")

            self.failureResultOf(Deferred.fromCoroutine(body()), ValueError)

        self._runEachSide(check)

    # Try-acquires.

    def test_tryAcquire(self) -> None:
        """
        The try-acquires take the lock when it is free of the other side and nobody waits, else
        fail without queueing.
        """
        lock = self.makeLock()
        self.assertTrue(lock.tryReaderAcquire())
        self.assertTrue(lock.tryReaderAcquire())
        self.assertFalse(lock.tryWriterAcquire())
        self.assertStatistics(lock, readers=2)
        lock.readerRelease()
        lock.readerRelease()
        self.assertTrue(lock.tryWriterAcquire())
        self.assertFalse(lock.tryWriterAcquire())
        self.assertFalse(lock.tryReaderAcquire())
        self.assertStatistics(lock, writing=True)
        lock.writerRelease()
        self.assertStatistics(lock)

    def test_tryReaderFailsWhileWriterWaits(self) -> None:
        """
        A reader's try fails while a writer waits, though readers hold the lock: it would jump
        the queue.
        """
        lock = self.makeLock()
        lock.readerAcquire()
        w = lock.writerAcquire()
        self.assertFalse(lock.tryReaderAcquire())
        self.assertFalse(lock.tryWriterAcquire())
        self.assertStatistics(lock, readers=1, writersWaiting=1)
        lock.readerRelease()
        self.successResultOf(w)

    # Downgrade.

    def test_downgrade(self) -> None:
        """
        C{writerDowngrade} turns the write hold into a read hold, released by C{readerRelease};
        waiting readers come in when no writer waits.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W", log)
        _acquire(lock, "R1", log)
        self.assertIs(self.successResultOf(lock.writerDowngrade()), lock)
        self.assertEqual(log, ["W", "R1"])
        self.assertStatistics(lock, readers=2)
        self.assertRaises(LockNotHeldError, lock.writerRelease)
        lock.readerRelease()
        lock.readerRelease()
        self.assertStatistics(lock)

    def test_downgradeIsAtomic(self) -> None:
        """
        No writer gets in at the downgrade: a waiting writer waits for the downgraded reader.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        _acquire(lock, "W2", log)
        lock.writerDowngrade()
        self.assertEqual(log, ["W1"])
        self.assertStatistics(lock, readers=1, writersWaiting=1)
        self.assertFalse(lock.tryWriterAcquire())
        lock.readerRelease()
        self.assertEqual(log, ["W1", "W2"])

    # Statistics and repr.

    def test_statistics(self) -> None:
        """
        C{statistics()} is a frozen snapshot of holders and live waiters.
        """
        lock = self.makeLock()
        lock.readerAcquire()
        lock.readerAcquire()
        lock.writerAcquire()
        cancelled = lock.writerAcquire()
        lock.readerAcquire()
        stats = lock.statistics()
        self.assertEqual(stats, LockStatistics(2, False, 1, 2))
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        self.assertEqual(stats, LockStatistics(2, False, 1, 2))
        self.assertStatistics(lock, readers=2, readersWaiting=1, writersWaiting=1)
        with self.assertRaises(FrozenInstanceError):
            stats.readers = 0  # type: ignore[misc]

    def test_repr(self) -> None:
        """
        The repr shows holders, live waiters and the policy.
        """
        lock = self.makeLock()
        policy = "fair" if self.fair else "writer-preferring"
        self.assertEqual(
            repr(lock), f"<TxReadersWriterLock readers=0 writing=False waiting=0r/0w {policy}>"
        )
        lock.readerAcquire()
        lock.readerAcquire()
        lock.writerAcquire()
        lock.readerAcquire()
        cancelled = lock.writerAcquire()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        self.assertEqual(
            repr(lock), f"<TxReadersWriterLock readers=2 writing=False waiting=1r/1w {policy}>"
        )
        lock2 = self.makeLock()
        lock2.writerAcquire()
        self.assertEqual(
            repr(lock2), f"<TxReadersWriterLock readers=0 writing=True waiting=0r/0w {policy}>"
        )
        self.assertEqual(lock.fair, self.fair)

    # The scenarios of txrwlock 1.1.4's own suite, on a Clock instead of the reactor.

    def test_originalReaderLock(self) -> None:
        """
        Two readers hold the lock together (testReaderLock).
        """
        lock = self.makeLock()

        @inlineCallbacks
        def scenario() -> Generator[Deferred[Any], Any, None]:
            yield lock.readerAcquire()
            yield lock.readerAcquire()
            self.assertFalse(lock.isWriting)
            self.assertTrue(lock.isReading)
            yield lock.readerRelease()
            yield lock.readerRelease()

        self.successResultOf(scenario())
        self.assertFalse(lock.isReading)

    def test_originalWriterLock(self) -> None:
        """
        A writer holds the lock alone (testWriterLock).
        """
        lock = self.makeLock()

        @inlineCallbacks
        def scenario() -> Generator[Deferred[Any], Any, None]:
            self.assertFalse(lock.isWriting)
            self.assertFalse(lock.isReading)
            yield lock.writerAcquire()
            self.assertTrue(lock.isWriting)
            self.assertFalse(lock.isReading)
            yield lock.writerRelease()
            self.assertFalse(lock.isWriting)

        self.successResultOf(scenario())

    def test_originalWriterBlocksReaders(self) -> None:
        """
        The timed schedule of testWriterBlocksReaders, in hundredths of a second on a L{Clock}:
        two readers, then two writers that wait for them and for each other, and three readers
        that arrive while writers hold or wait and so read the second writer's value.
        """
        lock = self.makeLock()
        clock = Clock()
        shared = [10]
        events: list[tuple[float, str, int]] = []

        def sleep(delay: float) -> Deferred[None]:
            return deferLater(IReactorTime(clock), delay, lambda: None)

        @inlineCallbacks
        def read(name: str, delay: float, duration: float) -> Generator[Deferred[Any], Any, None]:
            yield sleep(delay)
            yield lock.readerAcquire()
            if duration:
                yield sleep(duration)
            events.append((clock.seconds(), name, shared[0]))
            yield lock.readerRelease()

        @inlineCallbacks
        def write(
            name: str, delay: float, duration: float, value: int
        ) -> Generator[Deferred[Any], Any, None]:
            yield sleep(delay)
            yield lock.writerAcquire()
            yield sleep(duration)
            events.append((clock.seconds(), name, value))
            shared[0] = value
            yield lock.writerRelease()

        d = gatherResults(
            [
                read("R1", 10, 10),
                read("R2", 10, 10),
                write("W1", 15, 10, 15),
                write("W2", 17, 10, 20),
                read("R3", 20, 0),
                read("R4", 26, 0),
                read("R5", 30, 0),
            ]
        )
        clock.pump([1] * 39)
        self.assertNoResult(d)
        clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(
            events,
            [
                (20, "R1", 10),
                (20, "R2", 10),
                (30, "W1", 15),
                (40, "W2", 20),
                (40, "R3", 20),
                (40, "R4", 20),
                (40, "R5", 20),
            ],
        )
        self.assertStatistics(lock)

    def test_originalReaderFailure(self) -> None:
        """
        A reader that fails while holding the lock releases it in its C{finally}
        (testReaderFailure), here after holding it for a while on a L{Clock}.
        """
        lock = self.makeLock()
        clock = Clock()

        @inlineCallbacks
        def raiseAfterReadAcquire() -> Generator[Deferred[Any], Any, None]:
            try:
                yield lock.readerAcquire()
                yield deferLater(IReactorTime(clock), 1, lambda: None)
                raise Exception("Any exception")
            finally:
                yield lock.readerRelease()

        d = self.assertInlineCbRaises(Exception, raiseAfterReadAcquire)
        self.assertNoResult(d)
        self.assertTrue(lock.isReading)
        clock.advance(1)
        self.successResultOf(d)
        self.assertFalse(lock.isReading)

    # Scenarios whose outcome is the policy's; the subclasses check them.

    def writerStream(self) -> list[str]:
        """
        A reader waits behind a writer; then, each time a writer gets the lock, another asks.

        @return: the order of the grants, in the first eight.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W0", log)
        _acquire(lock, "R", log)
        holder = "W0"
        for i in range(1, 8):
            _acquire(lock, f"W{i}", log)
            _release(lock, holder)
            holder = log[-1]
        return log[:8]

    def readerBetweenWriters(self) -> list[list[str]]:
        """
        W1, R2, W3 wait behind a reader R1 that leaves; each then leaves in turn.

        @return: the order of the grants, as lists of those let in together.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        for name in ["W1", "R2", "W3", "R4"]:
            _acquire(lock, name, log)
        batches = [log[:]]
        while log:
            granted = log[:]
            del log[:]
            for name in granted:
                _release(lock, name)
            if log:
                batches.append(log[:])
        return batches


class WriterPreferenceTests(_BothPolicies, TxTestCase):
    """
    The default policy: writers go before every waiting reader.
    """

    fair = False

    def test_default(self) -> None:
        """
        The lock prefers writers unless told otherwise.
        """
        self.assertFalse(TxReadersWriterLock().fair)

    def test_newReaderQueuesWhileWriterWaits(self) -> None:
        """
        A new reader queues while a writer waits, even though readers hold the lock.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        _acquire(lock, "W1", log)
        r2 = _acquire(lock, "R2", log)
        self.assertNoResult(r2)
        self.assertStatistics(lock, readers=1, readersWaiting=1, writersWaiting=1)

    def test_writersBeforeReaders(self) -> None:
        """
        Writers go first, in arrival order; the readers go after them, together.
        """
        self.assertEqual(self.readerBetweenWriters(), [["R1"], ["W1"], ["W3"], ["R2", "R4"]])

    def test_readersStarve(self) -> None:
        """
        A steady stream of writers keeps a waiting reader out.
        """
        self.assertEqual(self.writerStream(), [f"W{i}" for i in range(8)])

    def test_cancelWriterWhileAnotherWaits(self) -> None:
        """
        Readers behind a cancelled writer still wait while another writer waits, wherever it
        stands in arrival order.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        w1 = _acquire(lock, "W1", log)
        r2 = _acquire(lock, "R2", log)
        _acquire(lock, "W2", log)
        w1.cancel()
        self.failureResultOf(w1, CancelledError)
        self.assertNoResult(r2)
        self.assertStatistics(lock, readers=1, readersWaiting=1, writersWaiting=1)
        _release(lock, "R1")
        self.assertEqual(log, ["R1", "W2"])

    def test_downgradeAdmitsNoReaderWhileWriterWaits(self) -> None:
        """
        A downgrade admits no waiting reader while a writer waits, even one that came first.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        _acquire(lock, "R1", log)
        _acquire(lock, "W2", log)
        lock.writerDowngrade()
        self.assertEqual(log, ["W1"])
        self.assertStatistics(lock, readers=1, readersWaiting=1, writersWaiting=1)
        lock.readerRelease()
        self.assertEqual(log, ["W1", "W2"])


class FairTests(_BothPolicies, TxTestCase):
    """
    The fair policy: strict arrival order.
    """

    fair = True

    def test_newReaderQueuesWhileAnyoneWaits(self) -> None:
        """
        A new reader queues while anyone waits, and its try fails.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        _acquire(lock, "R1", log)
        r2 = _acquire(lock, "R2", log)
        self.assertNoResult(r2)
        lock.writerDowngrade()
        self.assertEqual(log, ["W1", "R1", "R2"])
        _acquire(lock, "W2", log)
        self.assertFalse(lock.tryReaderAcquire())
        r3 = _acquire(lock, "R3", log)
        self.assertNoResult(r3)
        self.assertStatistics(lock, readers=3, readersWaiting=1, writersWaiting=1)

    def test_arrivalOrder(self) -> None:
        """
        Waiters go in arrival order: consecutive readers at the head together, a reader behind a
        writer after it.
        """
        self.assertEqual(self.readerBetweenWriters(), [["R1"], ["W1"], ["R2"], ["W3"], ["R4"]])

    def test_consecutiveReadersTogether(self) -> None:
        """
        The readers at the head of the queue go in together, up to the first writer.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        for name in ["R1", "R2", "W2", "R3"]:
            _acquire(lock, name, log)
        _release(lock, "W1")
        self.assertEqual(log, ["W1", "R1", "R2"])
        self.assertStatistics(lock, readers=2, readersWaiting=1, writersWaiting=1)

    def test_noStarvation(self) -> None:
        """
        A stream of writers does not keep out a reader that came before them.
        """
        self.assertEqual(self.writerStream(), ["W0", "R", "W1", "W2", "W3", "W4", "W5", "W6"])

    def test_cancelWriterAdmitsReaderAhead(self) -> None:
        """
        A reader behind a cancelled writer goes in when the next writer came after it.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "R1", log)
        w1 = _acquire(lock, "W1", log)
        _acquire(lock, "R2", log)
        _acquire(lock, "W2", log)
        w1.cancel()
        self.failureResultOf(w1, CancelledError)
        self.assertEqual(log, ["R1", "R2"])
        self.assertStatistics(lock, readers=2, writersWaiting=1)

    def test_downgradeAdmitsReadersAhead(self) -> None:
        """
        A downgrade admits the readers at the head of the queue, up to the first writer.
        """
        lock = self.makeLock()
        log: list[str] = []
        _acquire(lock, "W1", log)
        for name in ["R1", "R2", "W2", "R3"]:
            _acquire(lock, name, log)
        lock.writerDowngrade()
        self.assertEqual(log, ["W1", "R1", "R2"])
        self.assertStatistics(lock, readers=3, readersWaiting=1, writersWaiting=1)


class ModuleTests(TxTestCase):
    """
    The package's names and imports.
    """

    def test_originalModulePaths(self) -> None:
        """
        The module paths of txrwlock 1.1 name the same classes as the package.
        """
        import txrwlock
        from txrwlock.txrwlock import TxReadersWriterLock as OriginalLock
        from txrwlock.txtestcase import TxTestCase as OriginalTestCase

        self.assertIs(OriginalLock, txrwlock.TxReadersWriterLock)
        self.assertIs(OriginalTestCase, txrwlock.TxTestCase)
        self.assertTrue(issubclass(txrwlock.LockNotHeldError, RuntimeError))

    def test_importsNoReactor(self) -> None:
        """
        Importing the package, in a fresh interpreter, imports no reactor.
        """
        code = (
            "import sys, txrwlock, txrwlock.txrwlock, txrwlock.txtestcase\n"
            "print(sorted(m for m in sys.modules if m.startswith('twisted.internet.')))\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        modules, imported = out.splitlines()
        self.assertIn("twisted.internet.defer", modules)
        self.assertEqual(imported, "False")


class ReentryAndReferenceTests(TxTestCase):
    """
    Edge cases found by running other projects' lock suites against this lock, under both
    policies: sides can be weakly referenced, a waiter cancelled again from a callback that its
    own cancel fired is cancelled once, and cancelled waiters are kept only as long as the
    policies page says.
    """

    def test_sidesWeaklyReferenceable(self) -> None:
        """
        C{lock.reader} and C{lock.writer} can be weakly referenced, as trio requires of every
        primitive (trio gh-331), and the lock too.
        """
        lock = TxReadersWriterLock()
        for obj in (lock, lock.reader, lock.writer):
            self.assertIs(weakref.ref(obj)(), obj)

    def cancelAgainFromAdmittedReader(
        self, fair: bool
    ) -> tuple[TxReadersWriterLock, Deferred[None]]:
        """
        A reader holds; a task waits to write, with a timeout; a reader queues behind it and,
        once admitted by the writer's timing out, queues two writers and cancels the task: the
        writer's acquire, whose cancel is still running, is cancelled again.  (The two writers
        keep the queue from being compacted, which would hide a miscount.)

        @return: the lock, and the task's Deferred.
        """
        clock = Clock()
        lock = TxReadersWriterLock(fair=fair)
        self.successResultOf(lock.readerAcquire())

        async def write() -> None:
            await lock.writerAcquire().addTimeout(1, IReactorTime(clock))
            self.fail("the writer got the lock")

        task = Deferred.fromCoroutine(write())

        def queueWritersAndCancel(_: object) -> None:
            lock.writerAcquire()
            lock.writerAcquire()
            task.cancel()

        reader = lock.readerAcquire()
        reader.addCallback(queueWritersAndCancel)
        clock.advance(1)
        self.successResultOf(reader)
        return lock, task

    def test_cancelHandlerEnteredOnce(self) -> None:
        """
        The second cancel of a waiter whose cancel is running changes nothing: no cancelled
        waiter is left counted (there is none queued), under either policy.
        """
        for fair in (False, True):
            lock, task = self.cancelAgainFromAdmittedReader(fair)
            self.assertEqual(lock.statistics(), LockStatistics(2, False, 0, 2))
            self.assertEqual(lock._waiters._dead, 0)
            self.assertEqual(sum(map(len, lock._waiters._queues())), 2)
            self.failureResultOf(task)

    def test_timeoutWinsOverCancelDuringIt(self) -> None:
        """
        In that interleaving the task sees the L{TimeoutError} of C{addTimeout}, not
        L{CancelledError}: the timeout cancelled the acquire first, and C{addTimeout} turns
        every L{CancelledError} into L{TimeoutError} once its timer fired.  The policies page
        says so, with a recipe for tasks that retry on timeouts.
        """
        for fair in (False, True):
            _, task = self.cancelAgainFromAdmittedReader(fair)
            self.failureResultOf(task, TimeoutError)

    def test_cancelledWaiterRetainedUntilCompaction(self) -> None:
        """
        As the policies page says: a waiter cancelled behind live ones stays referenced, as a
        dead entry, until dead entries outnumber the live; the compaction then drops them all.
        A waiter cancelled at the head of the queue is dropped at once.
        """
        for fair in (False, True):
            lock = TxReadersWriterLock(fair=fair)
            self.successResultOf(lock.writerAcquire())
            live = [lock.writerAcquire(), lock.writerAcquire()]
            cancelled = []
            for _ in range(3):
                d = lock.writerAcquire()
                d.addErrback(lambda f: f.trap(CancelledError))
                d.cancel()
                cancelled.append(weakref.ref(d))
                del d
                gc.collect()
                if len(cancelled) <= len(live):
                    self.assertTrue(all(ref() is not None for ref in cancelled))
            self.assertEqual([ref() for ref in cancelled], [None, None, None])
            head = weakref.ref(live[0])
            live[0].addErrback(lambda f: f.trap(CancelledError))
            live.pop(0).cancel()
            gc.collect()
            self.assertIsNone(head())
            self.assertEqual(lock.statistics(), LockStatistics(0, True, 0, 1))
