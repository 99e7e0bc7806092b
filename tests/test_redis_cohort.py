"""
Tests for cohorting in L{txrwlock.redis}: the coroutines of one lock object share one Redis hold,
readers together and writers passing it on, until Redis says another client waits; against a
real C{redis-server}.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred

from tests.backendapi import _writerThenReader
from tests.test_redis import _bounded, _deferred, _RedisTestCase, _sleep, _until
from txrwlock import LockEvent
from txrwlock.redis import LockLostError, RedisReadersWriterLock

_KEYS = "txrwlock:{0:inventory}:"


class CohortTests(_RedisTestCase):
    """
    One Redis hold per lock object, shared by its coroutines.
    """

    def holder(self) -> Any:
        """
        @return: the ids of the read holds in Redis, or of the write hold.
        """
        writer = self.server.query("HGET", _KEYS + "w", "id")
        return writer or self.server.query("ZRANGE", _KEYS + "h", "0", "-1")

    async def listening(self, lock: RedisReadersWriterLock) -> None:
        """
        Wait until C{lock} listens on its channel, and has asked Redis who waits.
        """
        channel = lock._channel
        await _until(lambda: self.server.query("PUBSUB", "NUMSUB", channel)[1] == 1)
        await lock.statistics()  # after the subscription's own round trips

    @_deferred
    async def test_readersShareOneHold(self) -> None:
        """
        Readers of one object share one read hold in Redis: the first takes it, the last gives
        it back; each is a hold of the object's own (statistics count them one by one).
        """
        (a,) = await self.clients(1)
        for _ in range(3):
            await _bounded(a.readerAcquire())
        self.assertEqual(len(self.holder()), 1)
        self.assertEqual((await a.statistics()).readers, 3)
        await a.readerRelease()
        await a.readerRelease()
        self.assertEqual(len(self.holder()), 1)
        self.assertTrue(a.isReading)
        await a.readerRelease()
        self.assertEqual(self.holder(), [])
        self.assertFalse(a.isReading)

    @_deferred
    async def test_joinersSetNoTimer(self) -> None:
        """
        A coroutine joining the object's read hold sets no timer: the lease timers of the hold
        already watch its deadline.  (Each join used to cancel the expiry timer and set another:
        the time it was due was read back from the timer, later than the deadline since
        C{callLater} reads the clock again; and finding the earliest deadline went over every
        hold.)
        """
        (a,) = await self.clients(1)
        await _bounded(a.readerAcquire())
        clock = a._clock
        timers: list[float] = []

        class Counting:
            seconds = clock.seconds

            def callLater(self, delay: float, f: Any, *args: Any) -> Any:
                timers.append(delay)
                return clock.callLater(delay, f, *args)

        self.patch(a, "_clock", Counting())
        for _ in range(100):
            a.readerAcquire()
        self.assertEqual(timers, [])
        for _ in range(101):
            a.readerRelease()
        await _until(lambda: self.holder() == [])

    @_deferred
    async def test_observerAcquires(self) -> None:
        """
        An observer told of a grant may acquire again at once: its hold is a hold of its own,
        and both releases give the remote hold back.
        """
        (a,) = await self.clients(1)
        joined: list[Deferred[Any]] = []

        def observer(event: LockEvent) -> None:
            if event.kind == "granted" and not joined:
                a.removeObserver(observer)  # once
                joined.append(a.readerAcquire())  # joins the hold being granted, at once

        a.addObserver(observer)
        await _bounded(a.readerAcquire())
        self.assertTrue(joined[0].called)
        self.assertEqual((await a.statistics()).readers, 2)
        await a.readerRelease()
        await a.readerRelease()
        self.assertEqual(self.holder(), [])

    @_deferred
    async def test_writersPassOn(self) -> None:
        """
        Writers of one object, with no other client waiting, pass the write hold on: Redis
        grants it once per 16 writers, and every write acquisition has its own token, larger
        than the last; another client's next token is larger still.
        """
        a, b = await self.clients(2)
        tokens: list[int] = []
        holders: set[str] = set()

        async def write() -> None:
            await a.writerAcquire()
            tokens.append(a.fencingToken)
            holders.add(self.holder())
            # A turn of the reactor, as a critical section with I/O takes: a release within the
            # grant's callback is within the local lock's firing loop, and passes nothing on.
            await _sleep(0)
            await a.writerRelease()

        writes = [Deferred.fromCoroutine(write()) for _ in range(20)]
        for d in writes:
            await _bounded(d)
        self.assertEqual(tokens, sorted(set(tokens)))
        self.assertEqual(len(holders), 2)  # 16, then 4
        self.assertEqual(tokens[1:16], [tokens[0] + i for i in range(1, 16)])
        await b.writerAcquire()
        self.assertGreater(b.fencingToken, tokens[-1] + 11)  # past the second block
        await b.writerRelease()

    @_deferred
    async def test_waitingWriterStopsPassing(self) -> None:
        """
        Once another client's writer waits, the object's write hold is not passed on: the
        other client goes first, in arrival order at Redis, then the object's next writer.
        """
        a, b = await self.clients(2)
        await a.writerAcquire()
        first = a.fencingToken
        second = a.writerAcquire()
        await self.listening(a)
        writing = b.writerAcquire()
        await _until(lambda: a._hold._contended)
        await a.writerRelease()
        await _bounded(writing)
        self.assertFalse(second.called)
        other = b.fencingToken
        self.assertGreater(other, first)
        await b.writerRelease()
        await _bounded(second)
        self.assertGreater(a.fencingToken, other)
        await a.writerRelease()

    @_deferred
    async def test_missedWaiterAsked(self) -> None:
        """
        A waiter that Redis told of while the object was not listening is found when it starts
        listening (it asks Redis): later readers wait.
        """
        a, b = await self.clients(2)
        await a.readerAcquire()
        writing = b.writerAcquire()
        await _until(lambda: b._listening)
        await self.settle(b)
        self.assertFalse(a._hold._contended)  # told, but not listening
        await a.readerAcquire()  # the second acquire: a listens, and asks
        await _until(lambda: a._hold._contended)
        await _writerThenReader(self, a, b, writing)

    @_deferred
    async def test_sharedHoldLost(self) -> None:
        """
        Readers sharing a hold Redis has lost lose it all: C{lost} is called for each, and each
        release fails with L{LockLostError}.
        """
        lost: list[bool] = []
        a = (await self.connect()).lock("inventory", lost=lambda lock, writer: lost.append(writer))
        await a.readerAcquire()
        await a.readerAcquire()
        self.server.command("DEL", _KEYS + "h")
        await cast(Deferred[None], a._renewLeases(list(a._holds)))
        self.assertEqual(lost, [False, False])
        self.assertFalse(a.isReading)
        for _ in range(2):
            error = await a.readerRelease().addErrback(lambda f: f.value)
            self.assertIsInstance(error, LockLostError)
