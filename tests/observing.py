"""
The tests of watching a lock kept in a remote store (its counters, events, C{describe()} and
logs, through what every remote lock shares: L{txrwlock._remote}), written once for each backend:
L{tests.test_redis_observe} and L{tests.test_postgres_observe} run them against a real server.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import CancelledError
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher

from tests.backendapi import _ClientsHooks
from tests.test_observe import _thisLine, _Told
from tests.test_redis import _bounded, _deferred, _sleep
from txrwlock import LockEvent

__all__ = ["ObservingMixin"]


class ObservingMixin(_ClientsHooks):
    """
    One client's lock, watched, beside others.  A backend's test case provides the locks
    (L{lockObjects}, L{losingLock}), takes holds away in its store (L{loseHolds}), and waits
    for what was sent to reach it (L{settle}); it comes first among the bases, so that its
    methods are those called.
    """

    async def lockObjects(self, n: int, debug: bool = False) -> list[Any]:
        """
        @return: one lock, of a name of the test's own, in C{n} new clients.
        """
        raise NotImplementedError()

    async def losingLock(self) -> Any:
        """
        @return: a lock object with a lease short enough for a test to see it lost.
        """
        raise NotImplementedError()

    def observe(self, lock: Any) -> list[_Told]:
        """
        @return: what C{lock}'s observers are told from now on, as (kind, writer, waited).
        """
        told: list[_Told] = []

        def observer(event: LockEvent) -> None:
            assert event.lock is lock, event
            told.append((event.kind, event.writer, event.waited))

        lock.addObserver(observer)
        return told

    def logged(self) -> list[LogEvent]:
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    @_deferred
    async def test_countersAndEvents(self) -> None:
        """
        A lock counts the holds granted to it, its acquires that queued and those cancelled,
        and tells its observers of each grant (with the time waited: C{0.0} at the first try),
        release and cancellation; C{longestWait} and C{oldestWaiting} are on the reactor's
        clock.
        """
        a, other = await self.lockObjects(2)
        told = self.observe(a)
        await a.readerAcquire()
        await a.readerRelease()
        await other.writerAcquire()
        waiting = a.readerAcquire()
        await self.settle(a)
        self.assertGreater((await a.statistics()).oldestWaiting, 0.0)
        await _sleep(0.1)
        await other.writerRelease()
        await _bounded(waiting)
        await a.readerRelease()
        await other.writerAcquire()
        cancelled = a.writerAcquire()
        await self.settle(a)
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        stats = await a.statistics()
        self.assertEqual(
            (stats.readerGrants, stats.writerGrants, stats.waits, stats.cancellations),
            (2, 0, 2, 1),
        )
        self.assertEqual(stats.oldestWaiting, 0.0)
        assert stats.longestWait is not None
        self.assertGreaterEqual(stats.longestWait, 0.1)
        self.assertEqual(
            [(kind, writer) for kind, writer, _ in told],
            [
                ("granted", False),
                ("released", False),
                ("granted", False),
                ("released", False),
                ("cancelled", True),
            ],
        )
        waits = [waited for _, _, waited in told]
        self.assertEqual((waits[0], waits[1], waits[3]), (0.0, None, None))
        assert waits[2] is not None and waits[4] is not None
        self.assertGreaterEqual(waits[2], 0.1)
        self.assertGreater(waits[4], 0.0)

    @_deferred
    async def test_downgradeAndTries(self) -> None:
        """
        A downgrade is told as a write hold released and a read hold granted, and counted; a
        try that takes the lock as a grant at once; one refused is not told, and leaves no
        waiter behind.
        """
        a, other = await self.lockObjects(2)
        told = self.observe(a)
        self.assertTrue(await a.tryWriterAcquire())
        await a.writerDowngrade()
        self.assertFalse(await other.tryWriterAcquire())
        self.assertFalse(await a.tryWriterAcquire())
        await a.readerRelease()
        self.assertEqual(
            told,
            [
                ("granted", True, 0.0),
                ("released", True, None),
                ("granted", False, 0.0),
                ("released", False, None),
            ],
        )
        stats = await a.statistics()
        self.assertEqual((stats.readerGrants, stats.writerGrants, stats.waits), (1, 1, 0))
        self.assertEqual(a.describe().splitlines()[-1], "waiting, in queue order: nobody")

    @_deferred
    async def test_describe(self) -> None:
        """
        C{describe()} lists this object's holds and waiting acquires, with their ages and, with
        C{debug=True}, the lines that acquired.
        """
        a, b = await self.lockObjects(2, debug=True)
        line = _thisLine() + 1
        await a.writerAcquire()
        waitingLine = _thisLine() + 1
        waiting = b.reader.acquire()
        await self.settle(b)
        (holding,) = [x for x in a.describe().splitlines() if x.startswith("  ")]
        self.assertTrue(holding.startswith("  writer for "), holding)
        self.assertTrue(holding.endswith(f", from {__file__}:{line}"), holding)
        described = b.describe().splitlines()
        self.assertEqual(described[0], repr(b))
        self.assertEqual(described[1], "holding: nobody")
        self.assertTrue(described[3].endswith(f", from {__file__}:{waitingLine}"), described)
        await a.writerRelease()
        await _bounded(waiting)

    @_deferred
    async def test_lostHoldLoggedAndTold(self) -> None:
        """
        A hold lost (the store no longer has it when this object renews it) is logged at warn
        level, with the lock's name and the kind of hold, and told to observers as released.
        """
        logged = self.logged()
        a = await self.losingLock()
        told = self.observe(a)
        await a.writerAcquire()
        self.loseHolds(a)
        for _ in range(100):
            if len(told) > 1:
                break
            await _sleep(0.05)
        self.assertEqual(told, [("granted", True, 0.0), ("released", True, None)])
        (event,) = [e for e in logged if e.get("log_level") == LogLevel.warn]
        self.assertEqual((event["lockName"], event["kind"]), (a.name, "write"))
        self.assertIs(event["lock"], a)

    @_deferred
    async def test_observerRaises(self) -> None:
        """
        An observer that raises is logged at error level and does not disturb the lock.
        """
        (a,) = await self.lockObjects(1)

        def fail(event: LockEvent) -> Any:
            raise ZeroDivisionError(event.kind)

        a.addObserver(fail)
        await a.writerAcquire()
        await a.writerRelease()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        a.removeObserver(fail)
        self.assertRaises(ValueError, a.removeObserver, fail)
        self.assertFalse(a.isWriting)
