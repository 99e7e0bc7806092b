"""
Tests for watching a L{PostgresReadersWriterLock}: its counters, events, C{describe()} and logs,
through what it shares with every remote lock (L{txrwlock._remote}), against a real PostgreSQL
(see L{tests.test_postgres}); the tests are L{tests.observing}'s.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError

from tests.observing import ObservingMixin
from tests.test_postgres import _PostgresTestCase
from tests.test_redis import _bounded, _deferred, _sleep
from txrwlock.postgres import PostgresReadersWriterLock

__all__ = ["ObservingTests"]


class ObservingTests(_PostgresTestCase, ObservingMixin):
    """
    One client's lock, watched, beside others.
    """

    async def lockObjects(self, n: int, debug: bool = False) -> list[Any]:
        name = self.name()
        return [(await self.connect()).lock(name, debug=debug) for _ in range(n)]

    async def losingLock(self) -> PostgresReadersWriterLock:
        return (await self.connect(lease=0.9)).lock(self.name())

    @_deferred
    async def test_localWaits(self) -> None:
        """
        The acquires of one lock object also wait in its local lock, in front of PostgreSQL:
        those waits are counted, timed, told and described as the others; a reader that shares
        the object's read hold is granted at once.
        """
        (a,) = await self.lockObjects(1)
        told = self.observe(a)
        await a.writerAcquire()
        reading = a.readerAcquire()
        cancelled = a.writerAcquire()
        described = [line.split(" for ")[0] for line in a.describe().splitlines()[1:]]
        self.assertEqual(
            described,
            ["holding: 1", "  writer", "waiting, in queue order: 2", "  reader", "  writer"],
        )
        await _sleep(0.1)
        self.assertGreaterEqual((await a.statistics()).oldestWaiting, 0.1)
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        await a.writerRelease()
        await _bounded(reading)
        await a.readerAcquire()
        await a.readerRelease()
        await a.readerRelease()
        stats = await a.statistics()
        self.assertEqual(
            (stats.readerGrants, stats.writerGrants, stats.waits, stats.cancellations),
            (2, 1, 2, 1),
        )
        self.assertEqual(
            [(kind, writer) for kind, writer, _ in told],
            [
                ("granted", True),
                ("cancelled", True),
                ("released", True),
                ("granted", False),
                ("granted", False),
                ("released", False),
                ("released", False),
            ],
        )
        waits = [waited for _, _, waited in told]
        self.assertEqual((waits[0], waits[4]), (0.0, 0.0))
        assert waits[1] is not None and waits[3] is not None
        self.assertGreaterEqual(min(waits[1], waits[3]), 0.1)
