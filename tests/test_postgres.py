"""
Tests for L{txrwlock.postgres}, against a real PostgreSQL 15 started for each test class (see
L{tests.pgserver}); skipped, with a line saying how to enable them, where it is not installed,
except under C{CI=true}, where they fail instead.

Several L{PostgresLocks} in this process stand for clients; worker processes
(L{tests.pgworker}) for the tests across processes.  They run on the real reactor, with short
leases and bounded waits.  Each test uses lock names of its own, as the server is shared.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import signal
from typing import Any, ClassVar, cast

import psycopg
from twisted.internet import reactor as _reactor
from twisted.internet.defer import CancelledError, Deferred

from tests.backendapi import (
    BackendApiMixin,
    ProcessesMixin,
    _bounded,
    _deferred,
    _holdersAndWaiters,
    _loadedBy,
    _sleep,
    _spawn,
    _until,
    _Worker,
    _writingAndWaiting,
)
from tests.pgserver import PostgresServer, requirePostgres
from txrwlock import LockStatistics, TxTestCase
from txrwlock._ports import freeLoopbackPort
from txrwlock.postgres import (
    LockLostError,
    PostgresLocks,
    PostgresReadersWriterLock,
    connect,
    lockKey,
)

reactor: Any = _reactor


class ImportTests(TxTestCase):
    """
    Importing L{txrwlock.postgres} imports neither a reactor nor psycopg.
    """

    def test_noReactor(self) -> None:
        """
        In a fresh interpreter, after the import, neither module is loaded.
        """
        self.assertEqual(
            _loadedBy("txrwlock.postgres", {"twisted.internet.reactor", "psycopg"}), []
        )


class KeyTests(TxTestCase):
    """
    Names map to advisory-lock keys as documented.
    """

    def test_key(self) -> None:
        """
        The key is the first 8 bytes of the SHA-256 of C{"txrwlock:" + name}, signed.
        """
        digest = hashlib.sha256("txrwlock:caf\u00e9".encode()).digest()
        self.assertEqual(lockKey("caf\u00e9"), int.from_bytes(digest[:8], "big", signed=True))
        self.assertNotEqual(lockKey("a"), lockKey("b"))


class _PostgresTestCase(TxTestCase):
    """
    A test against the PostgreSQL server of its class, started by its first test.
    """

    server: ClassVar[PostgresServer | None] = None
    timeout = 60

    def setUp(self) -> None:
        cls = type(self)
        if cls.server is None:
            cls.server = PostgresServer(requirePostgres(self))
            cls.server.start()
            # Trial calls no tearDownClass: the server goes when the process (a worker) exits.
            atexit.register(cls.server.destroy)
        elif cls.server.process is None:
            cls.server.start()  # a test stopped it
        self.names = 0

    @property
    def pg(self) -> PostgresServer:
        assert self.server is not None
        return self.server

    def name(self) -> str:
        """
        A lock name of this test's own.
        """
        self.names += 1
        return f"{self.id()}:{self.names}"

    async def connect(self, lease: float = 30.0) -> PostgresLocks:
        """
        A new client, disconnected after the test.
        """
        locks = await connect(self.pg.conninfo(), lease=lease)
        self.addCleanup(locks.disconnect)
        return locks

    async def clients(
        self, n: int, name: str, lease: float = 30.0, lost: Any = None
    ) -> list[PostgresReadersWriterLock]:
        """
        The lock C{name} in C{n} new clients.
        """
        return [(await self.connect(lease)).lock(name, lost=lost) for _ in range(n)]

    async def shortLeased(self, name: str, lost: Any) -> PostgresReadersWriterLock:
        return (await self.connect(lease=0.9)).lock(name, lost=lost)

    def loseHolds(self, lock: PostgresReadersWriterLock) -> None:
        # Its session ended, the server released its advisory locks; the next heartbeat fails.
        self.pg.sql(f"SELECT pg_terminate_backend({lock._session.pid})", dbname="app")

    async def toldWhoWaits(self, lock: PostgresReadersWriterLock) -> None:
        # The heartbeat asks PostgreSQL.
        await cast(Deferred[None], lock._renewLeases(list(lock._holds)))

    async def settle(self, lock: PostgresReadersWriterLock) -> LockStatistics:
        """
        Wait until the statements sent so far have reached PostgreSQL: a statistics round trip
        after a short pause.
        """
        await _sleep(0.1)
        return await lock.statistics()

    def spawn(self, mode: str, name: str, lease: float, arg: float) -> _Worker:
        """
        Start a worker, killed after the test if still running.
        """
        return _spawn(self, "pgworker.py", mode, self.pg.conninfo(), name, str(lease), str(arg))


class ClientsTests(_PostgresTestCase, BackendApiMixin):
    """
    Several clients of one lock in one process: L{BackendApiMixin}'s scenarios, in arrival
    order, and PostgreSQL's own: its queue, a session ended or disconnected, a statement
    cancelled before it is sent.
    """

    fair = True
    oneReadHold = True
    tokensAcrossNames = True
    # A grant is a round trip on a session that may still be opening: a cancel may cross either.
    crossingDelays = (0.0, 0.002, 0.01)

    @_deferred
    async def test_fifo(self) -> None:
        """
        Waiters of different clients are served in arrival order: while R1 reads, W1, R2, W2 and
        R3 arrive, and go in in that order, R2 alone, as the local lock's C{fair=True}.
        """
        r1, w1, r2, w2, r3 = await self.clients(5, self.name())
        await r1.readerAcquire()
        order: list[str] = []
        waiting = []
        for label, side in (("W1", w1.writer), ("R2", r2.reader), ("W2", w2.writer)):
            waiting.append(side.acquire().addCallback(lambda _, x: order.append(x), label))
            await self.queued(r1, len(waiting))  # in PostgreSQL's queue before the next comes
        waiting.append(r3.readerAcquire().addCallback(lambda _: order.append("R3")))
        await self.queued(r1, 4)
        self.assertEqual(_holdersAndWaiters(await r1.statistics()), (1, False, 2, 2))
        self.assertEqual(order, [])
        await r1.readerRelease()
        for i, lock in enumerate((w1, r2, w2, r3)):
            await _bounded(waiting[i])
            await self.settle(lock)
            self.assertEqual(order, ["W1", "R2", "W2", "R3"][: i + 1])
            await (lock.writerRelease() if lock in (w1, w2) else lock.readerRelease())

    @_deferred
    async def test_repr(self) -> None:
        """
        The repr shows the name, what the object holds and waits for, and the lease.
        """
        locks = await self.connect(lease=2.0)
        lock = locks.lock("x")
        await lock.readerAcquire()
        expected = "<PostgresReadersWriterLock 'x' readers=1 writing=False waiting=0r/0w lease=2.0>"
        self.assertEqual(repr(lock), expected)
        self.assertEqual(repr(locks), "<PostgresLocks lease=2.0 locks=1>")
        await lock.readerRelease()

    @_deferred
    async def test_sessionEnded(self) -> None:
        """
        When a holder's session ends (terminated by an administrator), the server gives up its
        advisory locks: the waiter goes in at once, and the holder is told at its next heartbeat
        (L{tests.backendapi} tests what it is told); it can acquire again.
        """
        lost: list[bool] = []
        name = self.name()
        a = await self.shortLeased(name, lambda lock, w: lost.append(w))
        (b,) = await self.clients(1, name)
        await a.writerAcquire()
        writing = b.writerAcquire()
        await self.queued(b, 1)
        self.loseHolds(a)
        await _bounded(writing, 5)
        await _until(lambda: bool(lost), 5)
        self.assertEqual((lost, a.isWriting), ([True], False))
        await self.assertInlineCbRaisesWithMsg(LockLostError, "was lost", a.writerRelease)
        await b.writerRelease()
        await _bounded(a.writerAcquire())
        await a.writerRelease()

    @_deferred
    async def test_cancelQueuedStatement(self) -> None:
        """
        A statement cancelled while it waits for the session (another runs) is never sent, and
        fails with L{CancelledError}; the session goes on with the next.
        """
        (lock,) = await self.clients(1, self.name())
        session = lock._session
        sleeping = session.execute("SELECT pg_sleep(0.3)")
        cancelled = session.execute("SELECT pg_advisory_lock(%s)", lock._key)
        after = session.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"
        )
        session.cancel(cancelled)
        self.assertIsInstance(await cancelled.addErrback(lambda f: f.value), CancelledError)
        await sleeping
        self.assertEqual(await after, (0,))

    @_deferred
    async def test_disconnect(self) -> None:
        """
        L{PostgresLocks.disconnect} cancels the waiting acquires (leaving PostgreSQL's queue)
        and gives up the holds, as lost; the lock then refuses new acquires.
        """
        lost: list[bool] = []
        name = self.name()
        locks = await connect(self.pg.conninfo())
        (other,) = await self.clients(1, name)
        a = locks.lock(name, lost=lambda lock, w: lost.append(w))
        b = locks.lock(name)
        await a.readerAcquire()
        await other.readerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        await _bounded(locks.disconnect())
        self.assertEqual(lost, [False])
        self.assertIsInstance(await writing.addErrback(lambda f: f.value), CancelledError)
        self.assertEqual(_holdersAndWaiters(await self.settle(other)), (1, False, 0, 0))
        await self.assertInlineCbRaises(psycopg.OperationalError, a.readerAcquire)
        await self.assertInlineCbRaises(psycopg.OperationalError, a.statistics)
        self.assertRaises(psycopg.OperationalError, locks.lock, "y")
        await other.readerRelease()


class ConnectTests(_PostgresTestCase):
    """
    L{connect} fails fast, with libpq's message, when it cannot log in.
    """

    @_deferred
    async def test_refused(self) -> None:
        """
        Nothing listening on the port.
        """
        conninfo = f"host=127.0.0.1 port={freeLoopbackPort()} user=app"
        start = reactor.seconds()
        await self.assertInlineCbRaisesWithMsg(
            psycopg.OperationalError, "refused", connect, conninfo
        )
        self.assertLess(reactor.seconds() - start, 3)

    @_deferred
    async def test_wrongPassword(self) -> None:
        """
        A wrong password.
        """
        await self.assertInlineCbRaisesWithMsg(
            psycopg.OperationalError,
            "password authentication failed",
            connect,
            self.pg.conninfo(password="wrong"),
        )

    @_deferred
    async def test_missingDatabase(self) -> None:
        """
        A database that does not exist.
        """
        await self.assertInlineCbRaisesWithMsg(
            psycopg.OperationalError,
            'database "nope" does not exist',
            connect,
            self.pg.conninfo(dbname="nope"),
        )

    def test_badLease(self) -> None:
        """
        A lease that is not a finite number of seconds, at least the minimum, is refused at once.
        """
        for lease in (0, -1.0, 0.001, float("inf"), float("nan")):
            self.assertRaisesWithMessage(ValueError, "a finite number", connect, lease=lease)

    @_deferred
    async def test_url(self) -> None:
        """
        A URL does as well as a conninfo, and keyword arguments add to either.
        """
        url = f"postgresql://app@127.0.0.1:{self.pg.port}/app"
        locks = await connect(url, password="s3cret", reactor=reactor)
        self.addCleanup(locks.disconnect)
        lock = locks.lock("x")
        await lock.writerAcquire()
        await lock.writerRelease()


class RestartTests(_PostgresTestCase):
    """
    The server restarted (a fast shutdown: every session ended).
    """

    timeout = 120

    @_deferred
    async def test_restart(self) -> None:
        """
        Holders are told they lost their holds; waiters keep waiting, through the restart, and
        get the lock after, with larger fencing tokens.
        """
        lost: list[bool] = []
        name = self.name()
        (a,) = await self.clients(1, name, lease=1.5, lost=lambda lock, w: lost.append(w))
        b, c = await self.clients(2, name, lease=1.5)
        before, writing, reading = await _writingAndWaiting(self, a, b, c)
        self.pg.stop()
        await _until(lambda: bool(lost), 5)
        self.assertEqual((lost, a.isWriting), ([True], False))
        await self.assertInlineCbRaises(psycopg.OperationalError, a.tryWriterAcquire)
        giveUp = a.writerAcquire()
        await _sleep(0.5)
        giveUp.cancel()  # between its retries
        self.assertIsInstance(await giveUp.addErrback(lambda f: f.value), CancelledError)
        self.assertFalse(writing.called)
        self.assertFalse(reading.called)
        self.pg.start()
        # PostgreSQL's queue went with it: the waiters queue again, in any order.
        tokens: list[int | None] = []
        writing.addCallback(lambda _: tokens.append(b.fencingToken)).addCallback(
            lambda _: b.writerRelease()
        )
        reading.addCallback(lambda _: c.readerRelease())
        await _bounded(writing, 20)
        await _bounded(reading, 20)
        self.assertGreater(tokens[0] or 0, before)
        await self.assertInlineCbRaises(LockLostError, a.writerRelease)

    @_deferred
    async def test_crash(self) -> None:
        """
        After a crash (an immediate shutdown: no checkpoint), fencing tokens still grow, though
        the last was taken just before.
        """
        (a,) = await self.clients(1, self.name())
        for tryFirst in (False, True):
            await (a.tryWriterAcquire() if tryFirst else a.writerAcquire())
            before = a.fencingToken
            self.pg.stop(signal.SIGQUIT)
            await self.assertInlineCbRaises(LockLostError, a.writerRelease)
            self.pg.start()
            await _bounded(a.writerAcquire(), 20)
            self.assertGreater(a.fencingToken or 0, before or 0)
            await a.writerRelease()


class ProcessesTests(_PostgresTestCase, ProcessesMixin):
    """
    Workers in separate OS processes sharing one lock; the scenarios that are not PostgreSQL's
    own are L{tests.backendapi}'s.
    """

    timeout = 120
    counterRun = (8, 200, 5.0)
    # The waiters get the lock at once: the server ends a session whose connection closes.
    killedHolder = (30.0, 1.0)
    shortLease = 0.9

    def makeCounter(self) -> None:
        self.pg.sql(
            "DROP TABLE IF EXISTS counter, tokens;"
            " CREATE TABLE counter (a int, b int); INSERT INTO counter VALUES (0, 0);"
            " CREATE TABLE tokens (n serial, t bigint); GRANT ALL ON counter, tokens TO app;"
            " GRANT ALL ON SEQUENCE tokens_n_seq TO app",
            dbname="app",
        )

    def counted(self) -> tuple[int, int, list[int]]:
        a, b = (self.pg.sql("SELECT a || ' ' || b FROM counter", "app") or "").split()
        tokens = self.pg.sql("SELECT t FROM tokens ORDER BY n", "app") or ""
        return int(a), int(b), [int(t) for t in tokens.split()]

    @_deferred
    async def test_stoppedHolder(self) -> None:
        """
        When a holder is paused (SIGSTOP), the server ends its idle session within a lease, and
        the waiter goes in; when the holder resumes it is told it lost the hold before it acts
        again, and its release fails with L{LockLostError}.
        """
        lease = 1.5
        name = self.name()
        holder = self.spawn("hold", name, lease, 2 * lease)
        token = int((await _bounded(holder.line("HOLDING"), 30)).split()[1])
        (lock,) = await self.clients(1, name)
        waiting = lock.writerAcquire()
        await self.settle(lock)
        pid = holder.transport.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        start = reactor.seconds()
        await _bounded(waiting, 30)
        self.assertLess(reactor.seconds() - start, lease + 0.5)
        self.assertGreater(lock.fencingToken or 0, token)
        await _sleep(2 * lease)  # the holder's own hold time is over too
        os.kill(pid, signal.SIGCONT)
        await _bounded(holder.line("RELEASE"), 30)
        self.assertEqual(holder.lines[1:], ["LOST", "GONE", "RELEASE-LOST"])
        await lock.writerRelease()
