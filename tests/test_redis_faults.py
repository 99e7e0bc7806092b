"""
Tests for L{txrwlock.redis} under the faults production brings: a holder or Redis paused past a
lease, a release cut off by a dropped connection, Redis losing its data, a replica that does not
acknowledge.  Each against real C{redis-server}s (and worker processes), as in
L{tests.test_redis}, whose fixtures these tests share; where only time matters, the locks' clock
is a L{task.Clock}, moved by hand.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred

from tests.redisserver import RedisServer, requireRedis
from tests.test_redis import _bounded, _deferred, _RedisTestCase, _sleep, _until, reactor
from txrwlock import LockNotHeldError
from txrwlock.redis import (
    LockLostError,
    RedisConnectionError,
    RedisLocks,
    RedisReadersWriterLock,
    connect,
)

# Redis's clock, in µs, in one integer reply.
_TIME_US = "local t = redis.call('TIME') return t[1] * 1000000 + t[2]"


def _serverTime(server: RedisServer) -> int:
    """
    @return: C{server}'s clock (C{TIME}), in µs.
    """
    return int(server.command("EVAL", _TIME_US, "0")[1:])


def _resume(server: RedisServer) -> None:
    """
    Let a server paused by L{RedisServer.pause} run again.
    """
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGCONT)


async def _writeToken(lock: RedisReadersWriterLock, seconds: float = 20.0) -> int:
    """
    Take the write hold and give it back, trying again while Redis is away (it restarts).

    @return: its fencing token.
    """
    deadline = reactor.seconds() + seconds
    while True:
        try:
            await lock.writerAcquire()
        except RedisConnectionError:
            if reactor.seconds() > deadline:
                raise
            await _sleep(0.1)
            continue
        token = lock.fencingToken
        assert token is not None
        await lock.writerRelease()
        return token


class ClockTests(_RedisTestCase):
    """
    A lock whose clock is a L{task.Clock} (a real Redis, fake time): what a hold past its lease,
    or a grant that comes back too late, looks like to the holder.
    """

    async def clocked(
        self, name: str, lease: float, lost: Any = None
    ) -> tuple[task.Clock, RedisReadersWriterLock]:
        """
        The lock C{name} of a new client whose clock, for its commands' send times and its
        timers, is a L{task.Clock} set to the real time.
        """
        locks: RedisLocks = await self.connect()
        clock = task.Clock()
        clock.advance(reactor.seconds())
        locks._reactor = locks._client.reactor = clock
        return clock, locks.lock(name, lease=lease, lost=lost)

    @_deferred
    async def test_holdPastLeaseNotHeld(self) -> None:
        """
        Once a hold's lease has run out by the clock, it is not reported as held, though no
        timer has run yet (the process was paused): not by C{isWriting}, C{fencingToken},
        C{isReading} nor the sides' C{locked}.
        """
        clock, lock = await self.clocked("x", 1.0)
        await lock.writerAcquire()
        self.assertEqual((lock.isWriting, lock.writer.locked), (True, True))
        self.assertIsNotNone(lock.fencingToken)
        clock.rightNow += 1.0
        self.assertEqual(
            (lock.isWriting, lock.fencingToken, lock.writer.locked), (False, None, False)
        )
        await lock.writerRelease()
        await lock.readerAcquire()
        await lock.readerAcquire()
        self.assertEqual((lock.isReading, lock.reader.locked), (True, True))
        clock.rightNow += 1.0
        self.assertEqual((lock.isReading, lock.reader.locked), (False, False))
        # The first release leaves the shared hold to the second, so the store is not asked:
        # lost, by the clock.  The second asks, and Redis, which has not dropped it, says held.
        await self.assertInlineCbRaises(LockLostError, lock.readerRelease)
        await lock.readerRelease()

    @_deferred
    async def test_lostCallbackReleases(self) -> None:
        """
        A lost callback may release another hold whose lease ran out at the same time: the
        expiry gives up the others and goes on watching (it raised KeyError on the released
        one, and watched the leases no more).
        """
        releases: list[Deferred[None]] = []

        def lost(lock: RedisReadersWriterLock, writer: bool) -> None:
            if not releases:
                releases.append(lock.readerRelease())

        clock, lock = await self.clocked("x", 1.0, lost)
        await lock.readerAcquire()
        await lock.readerAcquire()
        clock.advance(1.0)
        self.assertEqual((lock._holds, len(releases)), ({}, 1))
        await _bounded(releases[0])  # the last hold of the object: Redis still had it
        await lock.readerAcquire()  # and the leases are watched again
        self.assertIsNotNone(lock._expiry)
        await lock.readerRelease()

    @_deferred
    async def test_lateGrantAskedAgain(self) -> None:
        """
        A grant whose reply comes when its lease could have run out (Redis may have run the
        command that late) is not handed over as it is: the acquire asks again, and fires with
        a hold whose lease is fresh, and the same fencing token.
        """
        clock, lock = await self.clocked("x", 1.0)
        seen: list[tuple[bool, bool]] = []

        def see(lock: RedisReadersWriterLock) -> None:
            seen.append((lock.isWriting, lock.isReading))

        for acquire in (lock.writerAcquire, lock.readerAcquire):
            seen.clear()
            acquiring: Deferred[Any] = acquire()
            clock.rightNow += 1.0  # the reply comes after the lease, by the clock
            await _bounded(acquiring.addCallback(see))
            self.assertEqual(
                seen, [(True, False)] if acquire == lock.writerAcquire else [(False, True)]
            )
            if lock.isWriting:
                token = self.server.command("HGET", "txrwlock:{0:x}:w", "token")
                self.assertEqual(lock.fencingToken, int(token))
                await lock.writerRelease()
            else:
                await lock.readerRelease()

    @_deferred
    async def test_lateReleaseCutOff(self) -> None:
        """
        A release made after the lease ran out by the clock, cut off by a dropped connection,
        fails with L{LockLostError}: only Redis could have told that nobody held the lock since.
        """
        clock, lock = await self.clocked("x", 1.0)
        await lock.writerAcquire()
        clock.rightNow += 1.0
        self.server.command("CLIENT", "PAUSE", "10000", "WRITE")
        releasing = lock.writerRelease()
        await _sleep(0.1)
        self.server.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        self.server.command("CLIENT", "UNPAUSE")
        await self.assertInlineCbRaisesWithMsg(LockLostError, "was lost", lambda: releasing)

    @_deferred
    async def test_leaseRoundedUpInMicroseconds(self) -> None:
        """
        Redis keeps a hold for at least its lease from when it grants it: the deadline is in
        µs, the lease rounded up to the ms (10.1 ms: 11 ms), so that Redis never drops a hold
        before its holder, which counts the lease from before it sent the command, gives up.
        """
        _, lock = await self.clocked("x", 0.0101)
        before = _serverTime(self.server)
        await lock.writerAcquire()
        after = _serverTime(self.server)
        deadline = int(self.server.command("HGET", "txrwlock:{0:x}:w", "deadline"))
        self.assertTrue(before + 11000 <= deadline <= after + 11000, (before, deadline, after))
        await lock.writerRelease()


class PauseTests(_RedisTestCase):
    """
    A holder, or Redis, frozen (SIGSTOP) for longer than a lease.
    """

    timeout = 120

    @_deferred
    async def test_pausedHolder(self) -> None:
        """
        A worker paused past its lease, resumed, sees that it does not write: its timer due
        half-way through the lease runs before the one that loses the hold, due at its end, and
        finds C{isWriting} false.
        """
        holder = self.spawn("check", "x", 2.0, 0)
        await _bounded(holder.line("HOLDING"), 30)
        assert holder.transport is not None
        pid = holder.transport.pid
        os.kill(pid, signal.SIGSTOP)
        await _sleep(2.5)
        os.kill(pid, signal.SIGCONT)
        self.assertEqual(await _bounded(holder.line("WRITING"), 30), "WRITING False")

    @_deferred
    async def test_stalledRedis(self) -> None:
        """
        A waiter whose try is in flight while Redis stalls past the lease is not handed the
        grant Redis gives it once it runs again (its reply comes too late to trust): it asks
        again, and keeps the lock.
        """
        lost: list[bool] = []
        a, b = await self.clients(2, "x", lease=0.5)
        b._lost = lambda lock, writer: lost.append(writer)
        await a.writerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        seen: list[bool] = []
        writing.addCallback(lambda lock: seen.append(lock.isWriting))
        self.server.pause()
        b._retry()  # as if told to: its try is in flight while Redis stalls
        await _sleep(1.0)
        _resume(self.server)
        await _bounded(writing)
        self.assertEqual(seen, [True])
        await _sleep(0.3)
        self.assertEqual((b.isWriting, lost), (True, []))
        await b.writerRelease()


class ReleaseTests(_RedisTestCase):
    """
    A release whose connection drops before Redis answers.
    """

    @_deferred
    async def test_cutOffRelease(self) -> None:
        """
        A release cut off by a dropped connection is sent again once reconnected: the waiter
        gets the lock long before the 30 s lease would have freed it.  Locally the side is free
        at once, and a second release raises L{LockNotHeldError}.
        """
        a, b = await self.clients(2, "x")
        await a.writerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        # Scripts that write wait while Redis is paused for writes; then the connections drop.
        self.server.command("CLIENT", "PAUSE", "10000", "WRITE")
        releasing = a.writerRelease()
        self.assertFalse(a.isWriting)
        self.assertRaises(LockNotHeldError, a.writerRelease)
        await _sleep(0.1)
        self.assertFalse(releasing.called)
        self.server.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        self.server.command("CLIENT", "UNPAUSE")
        await _bounded(releasing, 10)
        await _bounded(writing, 10)
        self.assertTrue(b.isWriting)
        await b.writerRelease()

    @_deferred
    async def test_cutOffCancel(self) -> None:
        """
        A waiting writer cancelled while its connection drops gives up its place once
        reconnected: the reader waiting behind it goes in long before the 30 s lease.
        """
        a, b, c = await self.clients(3, "x")
        await a.readerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        reading = c.readerAcquire()
        await self.settle(a)
        self.server.command("CLIENT", "PAUSE", "10000", "WRITE")
        writing.cancel()
        self.assertIsInstance(await writing.addErrback(lambda f: f.value), CancelledError)
        await _sleep(0.1)
        self.server.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        self.server.command("CLIENT", "UNPAUSE")
        await _bounded(reading, 10)
        self.assertTrue(c.isReading)
        await c.readerRelease()
        await a.readerRelease()


class DataLossTests(_RedisTestCase):
    """
    Redis losing data: restarted without persistence, or crashed back to an older snapshot.
    Fencing tokens still only grow.
    """

    timeout = 120

    @_deferred
    async def test_restartWithoutData(self) -> None:
        """
        After a restart that lost everything, the next writer's token is larger than every
        token handed out before.
        """
        (a,) = await self.clients(1, "x")
        before = [await _writeToken(a) for _ in range(3)]
        self.server.stop()
        (self.server.directory / "dump.rdb").unlink(missing_ok=True)  # an earlier test's SAVE
        self.server.start()
        self.assertEqual(self.server.command("EXISTS", "txrwlock:{0:x}:n"), b":0")
        after = await _writeToken(a)
        self.assertGreater(after, max(before))

    @_deferred
    async def test_olderSnapshot(self) -> None:
        """
        After a crash back to a snapshot older than the last grants, the next writer's token is
        larger than every token handed out before the crash.
        """
        (a,) = await self.clients(1, "x")
        await _writeToken(a)
        self.server.command("SAVE")
        later = [await _writeToken(a) for _ in range(3)]
        self.server.stop(signal.SIGKILL)
        self.server.start()
        after = await _writeToken(a)
        self.assertGreater(after, max(later))


class ReplicaTests(_RedisTestCase):
    """
    A lock with C{minReplicas}, on a Redis with one replica.
    """

    # The replica's first sync starts at once, not after the default 5 s wait for others.
    options = ("--repl-diskless-sync-delay", "0")

    def setUp(self) -> None:
        super().setUp()
        self.replica = RedisServer(
            requireRedis(self), self.mktemp(), "--replicaof", "127.0.0.1", str(self.server.port)
        )
        self.replica.start()
        self.addCleanup(self.replica.stop)

    def synced(self) -> bool:
        return b"master_link_status:up" in self.replica.command("INFO", "replication")

    @_deferred
    async def test_minReplicas(self) -> None:
        """
        With C{minReplicas=1}, grants go through while the replica acknowledges them; while it
        is paused they are given back (a try says no, a waiter waits), and the waiter gets the
        lock once the replica is back.
        """
        await _until(self.synced)
        locks = await self.connect()
        lock = locks.lock("x", lease=0.6, minReplicas=1)
        (other,) = await self.clients(1, "x")
        await _bounded(lock.writerAcquire())
        await lock.writerRelease()
        self.assertTrue(await lock.tryReaderAcquire())
        await lock.readerRelease()
        self.replica.pause()
        self.assertFalse(await lock.tryWriterAcquire())
        self.assertFalse(lock.isWriting)
        writing = lock.writerAcquire()
        await _sleep(1.0)
        self.assertFalse(writing.called)
        _resume(self.replica)
        await _bounded(writing)
        self.assertTrue(lock.isWriting)
        self.assertFalse(await other.tryReaderAcquire())
        await lock.writerRelease()

    @_deferred
    async def test_handoffNeedsReplicas(self) -> None:
        """
        With C{minReplicas=1}, a grant handed off to a waiting writer by a release is handed over
        only once the replica acknowledges it: while the replica is paused, the writer waits.
        """
        await _until(self.synced)
        locks = await self.connect()
        lock = locks.lock("x", lease=0.6, minReplicas=1)
        (other,) = await self.clients(1, "x")
        await other.writerAcquire()
        writing = lock.writerAcquire()
        await _until(lambda: lock._listening)
        self.replica.pause()
        await other.writerRelease()
        await _sleep(1.0)
        self.assertFalse(writing.called)
        _resume(self.replica)
        await _bounded(writing)
        self.assertTrue(lock.isWriting)
        await lock.writerRelease()

    @_deferred
    async def test_renewalsNeedReplicas(self) -> None:
        """
        With C{minReplicas=1}, a renewal or a downgrade the paused replica does not acknowledge
        extends no lease: the holder loses its hold when the lease it last saw acknowledged runs
        out, as a failover would have it.
        """
        await _until(self.synced)
        lost: list[bool] = []
        locks = await self.connect()
        lock = locks.lock("x", lease=0.6, lost=lambda lock, w: lost.append(w), minReplicas=1)
        await _bounded(lock.writerAcquire())
        self.replica.pause()
        deadlines = dict(lock._deadlines)
        await lock.writerDowngrade()
        self.assertEqual(lock._deadlines, deadlines)
        await _until(lambda: bool(lost), 5)
        self.assertEqual((lost, lock.isReading), ([False], False))
        _resume(self.replica)

    @_deferred
    async def test_failoverToLaggingReplica(self) -> None:
        """
        After a failover to a replica that missed the last grants (cut off from its primary
        before them), the next writer's token, granted by the replica, is larger than every
        token the primary handed out.
        """
        await _until(self.synced)
        (a,) = await self.clients(1, "x")
        await _writeToken(a)
        await _until(lambda: self.replica.command("EXISTS", "txrwlock:{0:x}:n") == b":1")
        self.replica.command("REPLICAOF", "NO", "ONE")  # lags from now on, then takes over
        later = [await _writeToken(a) for _ in range(3)]
        promoted = await connect("127.0.0.1", self.replica.port)
        self.addCleanup(promoted.disconnect)
        self.assertGreater(await _writeToken(promoted.lock("x")), max(later))

    @_deferred
    async def test_badMinReplicas(self) -> None:
        """
        C{lock()} refuses a C{minReplicas} that is not a non-negative integer.
        """
        locks = await self.connect()
        self.assertRaisesWithMessage(TypeError, "minReplicas", locks.lock, "x", minReplicas=1.0)
        self.assertRaisesWithMessage(TypeError, "minReplicas", locks.lock, "x", minReplicas=True)
        self.assertRaisesWithMessage(ValueError, "minReplicas", locks.lock, "x", minReplicas=-1)
