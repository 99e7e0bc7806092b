"""
Tests for watching a L{TxReadersWriterLock}: its name, counters, events, C{describe()}, and the
L{txrwlock._observe} they share with the remote locks, under both policies.

Time comes from a L{Clock}; nothing sleeps.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Generator
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, ClassVar, cast

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher

from tests.test_txrwlock import _passThrough
from txrwlock import LockEvent, LockNotHeldError, LockStatistics, TxReadersWriterLock, TxTestCase

__all__ = ["FairObservingTests", "WriterPreferenceObservingTests"]

if TYPE_CHECKING:
    _Base = TxTestCase
else:
    _Base = object

_Told = tuple[str, bool, float | None]


def _thisLine() -> int:
    """
    @return: the line of the caller that is running now.
    """
    return sys._getframe(1).f_lineno


class _Recorder:
    """
    An observer that keeps what it is told, as (kind, writer, waited), and checks the lock.
    """

    def __init__(self, lock: TxReadersWriterLock) -> None:
        self.lock = lock
        self.told: list[_Told] = []

    def __call__(self, event: LockEvent) -> None:
        assert event.lock is self.lock, event
        self.told.append((event.kind, event.writer, event.waited))

    def take(self) -> list[_Told]:
        told, self.told = self.told, []
        return told


class _BothPolicies(_Base):
    fair: ClassVar[bool]

    def makeLock(self, **kwargs: Any) -> TxReadersWriterLock:
        return TxReadersWriterLock(self.fair, **kwargs)

    def observed(self, **kwargs: Any) -> tuple[TxReadersWriterLock, _Recorder]:
        lock = self.makeLock(**kwargs)
        recorder = _Recorder(lock)
        lock.addObserver(recorder)
        return lock, recorder

    # Names.

    def test_name(self) -> None:
        """
        A lock has the name it was given, or L{None}; the C{repr} shows it.
        """
        self.assertIsNone(self.makeLock().name)
        lock = self.makeLock(name="cache")
        self.assertEqual(lock.name, "cache")
        policy = "fair" if self.fair else "writer-preferring"
        self.assertEqual(
            repr(lock),
            f"<TxReadersWriterLock 'cache' readers=0 writing=False waiting=0r/0w {policy}>",
        )

    def test_nameInErrors(self) -> None:
        """
        Every L{LockNotHeldError} names the lock, watched or not; a misuse tells observers
        nothing.
        """
        for lock in (self.makeLock(name="cache"), self.observed(name="cache")[0]):
            for call in (lock.readerRelease, lock.writerRelease, lock.writerDowngrade):
                e = self.assertRaises(LockNotHeldError, call)
                self.assertIn("'cache'", str(e))
        self.assertEqual(self.observed()[1].told, [])

    # Counters.

    def test_counters(self) -> None:
        """
        C{statistics()} counts the holds granted (at once, after a wait, by a try-acquire or a
        downgrade), the acquires that waited, and those cancelled or timed out; a grant taken
        back by a cancel is a cancellation, not a grant.  Plain or watched, the counts agree.
        """
        for lock in (self.makeLock(), self.makeLock(clock=Clock(), debug=True)):
            clock = Clock()
            lock.writerAcquire()  # writer 1, at once
            timedOut = lock.readerAcquire().addTimeout(1, IReactorTime(clock))
            cancelled = lock.writerAcquire()
            waiting = lock.writerAcquire()
            clock.advance(1)
            self.failureResultOf(timedOut)
            cancelled.cancel()
            self.failureResultOf(cancelled, CancelledError)
            lock.writerRelease()  # writer 2, after its wait
            self.successResultOf(waiting)
            lock.writerDowngrade()  # reader 1
            self.assertTrue(lock.tryReaderAcquire())  # reader 2
            lock.readerAcquire()  # reader 3
            lock.readerAcquire()  # reader 4
            lock.readerRelease()
            lock.readerRelease()
            lock.readerRelease()
            lock.readerRelease()
            self.assertEqual(
                lock.statistics(),
                LockStatistics(
                    0,
                    False,
                    0,
                    0,
                    readerGrants=4,
                    writerGrants=2,
                    waits=3,
                    cancellations=2,
                    longestWait=lock.statistics().longestWait,
                    oldestWaiting=lock.statistics().oldestWaiting,
                ),
            )

    def test_countersPastTheirTicks(self) -> None:
        """
        The release counters count on, exactly, past the small ints they count in.
        """
        lock = self.makeLock()
        for n in range(1, 1001):
            lock.readerAcquire()
            lock.readerRelease()
            lock.writerAcquire()
            if n % 2:
                lock.writerDowngrade()
                lock.readerRelease()
            else:
                lock.writerRelease()
            stats = lock.statistics()
            readers = n + (n + 1) // 2
            self.assertEqual((stats.readerGrants, stats.writerGrants), (readers, n))

    def test_grantTakenBack(self) -> None:
        """
        A reader cancelled by the callback of a reader let in with it, before its own Deferred
        fired, counts as a cancellation and is told as one, with its wait; never as a grant.
        """
        clock = Clock()
        lock, recorder = self.observed(clock=clock)
        lock.writerAcquire()
        second: Deferred[TxReadersWriterLock] = Deferred()
        lock.readerAcquire().addCallback(lambda _: second.cancel())
        second = lock.readerAcquire()
        second.addErrback(lambda f: f.trap(CancelledError))
        clock.advance(2)
        recorder.take()
        lock.writerRelease()
        self.assertEqual(
            recorder.take(),
            [("released", True, None), ("granted", False, 2.0), ("cancelled", False, 2.0)],
        )
        stats = lock.statistics()
        self.assertEqual((stats.readerGrants, stats.cancellations, stats.readers), (1, 1, 1))

    def test_waitTimes(self) -> None:
        """
        With a clock, C{longestWait} is the longest wait that ended (granted or cancelled) and
        C{oldestWaiting} how long the oldest waiter has waited now (C{0.0} if nobody waits);
        both are L{None} without a clock.
        """
        stats = self.makeLock().statistics()
        self.assertEqual((stats.longestWait, stats.oldestWaiting), (None, None))
        clock = Clock()
        lock = self.makeLock(clock=clock)
        self.assertEqual(lock.statistics().longestWait, 0.0)
        self.assertEqual(lock.statistics().oldestWaiting, 0.0)
        lock.writerAcquire()
        first = lock.readerAcquire()
        clock.advance(3)
        second = lock.writerAcquire()
        clock.advance(1)
        self.assertEqual(lock.statistics().oldestWaiting, 4.0)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(lock.statistics().longestWait, 4.0)
        self.assertEqual(lock.statistics().oldestWaiting, 1.0)
        clock.advance(5)
        lock.writerRelease()
        self.successResultOf(second)
        self.assertEqual(lock.statistics().longestWait, 6.0)
        self.assertEqual(lock.statistics().oldestWaiting, 0.0)

    # Events.

    def test_events(self) -> None:
        """
        Observers hear of each grant (at once, or after its wait, timed on the clock), release
        and cancellation, with the side; C{waited} is L{None} for releases.
        """
        clock = Clock()
        lock, recorder = self.observed(clock=clock)
        lock.readerAcquire()
        writer = lock.writerAcquire()
        timedOut = lock.writerAcquire().addTimeout(5, IReactorTime(clock))
        clock.advance(2)
        lock.readerRelease()
        self.successResultOf(writer)
        clock.advance(3)
        self.failureResultOf(timedOut)
        lock.writerRelease()
        self.assertEqual(
            recorder.take(),
            [
                ("granted", False, 0.0),
                ("released", False, None),
                ("granted", True, 2.0),
                ("cancelled", True, 5.0),
                ("released", True, None),
            ],
        )

    def test_eventsWithoutClock(self) -> None:
        """
        Without a clock, C{waited} is L{None}; the event carries the lock and is frozen.
        """
        lock = self.makeLock()
        events: list[LockEvent] = []
        lock.addObserver(events.append)
        lock.writerAcquire()
        self.assertEqual(events, [LockEvent("granted", True, lock, None)])
        with self.assertRaises(FrozenInstanceError):
            events[0].waited = 1.0  # type: ignore[misc]

    def test_releaseToldBeforeTheGrantsItAllows(self) -> None:
        """
        A release is told after the lock's state has changed and before the waiters it lets in.
        """
        lock = self.makeLock()
        seen: list[tuple[str, bool, bool]] = []
        lock.addObserver(lambda e: seen.append((e.kind, lock.isReading, lock.isWriting)))
        lock.writerAcquire()
        lock.readerAcquire()
        lock.writerRelease()
        self.assertEqual(
            seen, [("granted", False, True), ("released", False, False), ("granted", True, False)]
        )

    def test_downgradeAndTryEvents(self) -> None:
        """
        A downgrade is told as a write hold released and a read hold granted at once, before
        the readers it lets in; a try-acquire that takes the lock as a grant at once, and one
        that fails is not told.
        """
        clock = Clock()
        lock, recorder = self.observed(clock=clock)
        self.assertTrue(lock.tryWriterAcquire())
        self.assertFalse(lock.tryReaderAcquire())
        lock.readerAcquire()
        clock.advance(1)
        lock.writerDowngrade()
        self.assertTrue(lock.tryReaderAcquire())
        self.assertEqual(
            recorder.take(),
            [
                ("granted", True, 0.0),
                ("released", True, None),
                ("granted", False, 0.0),
                ("granted", False, 1.0),
                ("granted", False, 0.0),
            ],
        )

    def test_sidesTell(self) -> None:
        """
        The sides' acquire, release and try-acquire are told, even on a lock that began to be
        watched after its sides were made.
        """
        lock = self.makeLock()
        reader, writer = lock.reader, lock.writer
        recorder = _Recorder(lock)
        lock.addObserver(recorder)
        reader.acquire()
        reader.release()
        self.assertTrue(writer.tryAcquire())
        writer.release()
        self.assertEqual(
            [(kind, w) for kind, w, _ in recorder.take()],
            [("granted", False), ("released", False), ("granted", True), ("released", True)],
        )
        self.assertIs(lock.reader, reader)

    def test_removeObserver(self) -> None:
        """
        A removed observer hears nothing more; an observer added twice is called twice until
        removed once.  Once nothing watches it, the lock is plain again, and so are its sides.
        """
        lock = self.makeLock()
        recorder = _Recorder(lock)
        lock.addObserver(recorder)
        lock.addObserver(recorder)
        lock.writerAcquire()
        lock.removeObserver(recorder)
        lock.writerRelease()
        lock.removeObserver(recorder)
        lock.writerAcquire()
        self.assertEqual(
            recorder.take(), [("granted", True, None)] * 2 + [("released", True, None)]
        )
        self.assertIs(type(lock), TxReadersWriterLock)
        self.assertEqual(lock.writer.release, lock.writerRelease)

    def test_removeUnknownObserver(self) -> None:
        """
        Removing an observer that does not observe the lock raises L{ValueError} naming the call
        and the lock, and changes nothing.
        """
        lock, recorder = self.observed(name="cache")
        e = self.assertRaises(ValueError, lock.removeObserver, print)
        self.assertIn("removeObserver(", str(e))
        self.assertIn("'cache'", str(e))
        self.assertRaises(ValueError, self.makeLock().removeObserver, print)
        lock.readerAcquire()
        self.assertEqual(recorder.take(), [("granted", False, None)])

    def test_observerAddedWhileWaitersWait(self) -> None:
        """
        An observer added while acquires wait hears of their grants and cancellations.
        """
        lock = self.makeLock()
        lock.writerAcquire()
        reader, writer = lock.readerAcquire(), lock.writerAcquire()
        recorder = _Recorder(lock)
        lock.addObserver(recorder)
        writer.cancel()
        self.failureResultOf(writer, CancelledError)
        lock.writerRelease()
        self.successResultOf(reader)
        self.assertEqual(
            recorder.take(),
            [("cancelled", True, None), ("released", True, None), ("granted", False, None)],
        )

    def test_plainUntilWatched(self) -> None:
        """
        A lock that nothing watches is of the plain class, whose fast paths test nothing; a
        clock, C{debug} or an observer make it its watched twin, of the same name.
        """
        self.assertIs(type(self.makeLock(name="x")), TxReadersWriterLock)
        for watched in (
            self.makeLock(clock=Clock()),
            self.makeLock(debug=True),
            self.observed()[0],
        ):
            self.assertIsNot(type(watched), TxReadersWriterLock)
            self.assertIsInstance(watched, TxReadersWriterLock)
            self.assertEqual(type(watched).__name__, "TxReadersWriterLock")

    def test_subclassWatched(self) -> None:
        """
        A subclass of the lock keeps its own methods while watched, and its class once not.
        """

        acquires: list[None] = []

        class Counting(TxReadersWriterLock):
            def readerAcquire(self) -> Deferred[Any]:
                acquires.append(None)
                return super().readerAcquire()

        lock = Counting(self.fair)
        recorder = _Recorder(lock)
        lock.addObserver(recorder)
        lock.reader.acquire()
        self.assertEqual((len(acquires), len(recorder.take())), (1, 1))
        self.assertTrue(repr(lock).startswith("<Counting "))
        lock.removeObserver(recorder)
        self.assertIs(type(lock), Counting)

    def test_subclassCollected(self) -> None:
        """
        A lock subclass made at run time, and its watched twin, are collected once dropped.
        """

        class Temporary(TxReadersWriterLock):
            pass

        lock = Temporary(self.fair, clock=Clock())
        self.assertIsNot(type(lock), Temporary)
        ref = weakref.ref(Temporary)
        del lock, Temporary
        gc.collect()
        self.assertIsNone(ref())

    # Observers that fail.

    def logged(self) -> list[LogEvent]:
        """
        @return: the events logged from now on, to the end of the test.
        """
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    def test_observerRaises(self) -> None:
        """
        An observer that raises is logged at error level, with the lock and its name, and
        disturbs neither the lock nor the observers after it.
        """
        logged = self.logged()
        lock = self.makeLock(name="cache")
        lock.addObserver(lambda e: 1 / 0)
        recorder = _Recorder(lock)
        lock.addObserver(recorder)
        self.assertIs(self.successResultOf(lock.writerAcquire()), lock)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        (event,) = [e for e in logged if "log_failure" in e]
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIs(event["lock"], lock)
        self.assertEqual(event["lockName"], "cache")
        self.assertEqual(recorder.take(), [("granted", True, None)])

    def test_observerRaisesMidDrain(self) -> None:
        """
        An observer that raises at every event of a long chain of waiters, each releasing in
        its callback, leaves every waiter served, and each failure logged.
        """
        lock = self.makeLock()

        def fail(event: LockEvent) -> None:
            raise ZeroDivisionError(event.kind)

        lock.writerAcquire()
        lock.addObserver(fail)
        n = 1000
        served: list[str] = []
        for i in range(n):
            _passThrough(lock, ("W" if i % 3 == 2 else "R") + str(i), served)
        lock.writerRelease()
        self.assertEqual(len(served), n)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2 * n + 1)
        self.assertEqual(lock.statistics().readers + lock.statistics().writing, 0)

    # describe().

    def test_describeUnwatched(self) -> None:
        """
        Without a clock or C{debug}, C{describe()} lists the holds and the waiters in queue order
        (under writer preference the writers first), without ages or sites.
        """
        lock = self.makeLock(name="cache")
        lock.readerAcquire()
        lock.readerAcquire()
        lock.readerAcquire()
        lock.writerAcquire()
        lock.readerAcquire()
        lock.writerAcquire()
        waiting = ["writer", "reader", "writer"] if self.fair else ["writer", "writer", "reader"]
        self.assertEqual(
            lock.describe().splitlines(),
            [repr(lock), "holding: 3", *["  reader"] * 3, "waiting, in queue order: 3"]
            + ["  " + w for w in waiting],
        )
        free = self.makeLock()
        self.assertEqual(
            free.describe().splitlines(),
            [repr(free), "holding: nobody", "waiting, in queue order: nobody"],
        )

    def test_describeAges(self) -> None:
        """
        With a clock, C{describe()} says how long each hold and waiter has lasted.  Read holds
        are anonymous: the newest is taken as released first.
        """
        clock = Clock()
        lock = self.makeLock(clock=clock)
        lock.readerAcquire()
        clock.advance(10)
        lock.readerAcquire()
        clock.advance(1)
        lock.readerRelease()
        lock.writerAcquire()
        clock.advance(2.5)
        self.assertEqual(
            lock.describe().splitlines()[1:],
            [
                "holding: 1",
                "  reader for 13.500 s",
                "waiting, in queue order: 1",
                "  writer for 2.500 s",
            ],
        )

    def test_describeSites(self) -> None:
        """
        With C{debug=True}, C{describe()} gives the file and line of the user code behind each
        hold and waiter, whether it called C{readerAcquire}, C{writerAcquire}, a side's
        C{acquire} or C{run}, C{async with}, or yielded an acquire in C{inlineCallbacks}.
        """
        lock = self.makeLock(debug=True)
        lines = [_thisLine() + 1]
        lock.readerAcquire()
        lines.append(_thisLine() + 1)
        lock.reader.acquire()
        lines.append(_thisLine() + 1)
        lock.reader.run(lambda: None).addCallback(lambda _: lock.readerAcquire())
        lines.append(_thisLine() + 1)
        lock.writerAcquire()
        lines.append(_thisLine() + 1)
        lock.writer.acquire()

        async def viaAsyncWith() -> None:
            lines.append(_thisLine() + 1)
            async with lock.writer:
                pass

        Deferred.fromCoroutine(viaAsyncWith())

        @inlineCallbacks
        def viaInlineCallbacks() -> Generator[Deferred[Any], Any, None]:
            lines.append(_thisLine() + 1)
            yield lock.writerAcquire()

        viaInlineCallbacks()
        described = lock.describe().splitlines()
        sites = [int(line.rpartition(":")[2]) for line in described if ", from " in line]
        # The run's own hold is gone; its callback's readerAcquire is on the run's line.
        holds = lines[:3]
        waiters = lines[3:]
        self.assertEqual(sites, holds + waiters)
        self.assertTrue(all(f", from {__file__}:" in line for line in described[2:5]))


class WriterPreferenceObservingTests(_BothPolicies, TxTestCase):
    fair = False


class FairObservingTests(_BothPolicies, TxTestCase):
    fair = True
