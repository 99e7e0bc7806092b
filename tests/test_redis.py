"""
Tests for L{txrwlock.redis}, against a real C{redis-server} started for each test (see
L{tests.redisserver}); skipped, with a line saying how to enable them, where it is not installed,
except under C{CI=true}, where they fail instead.

Several L{RedisLocks} in this process stand for clients; worker processes
(L{tests.redisworker}) for the tests across processes.  They run on the real reactor, with short
leases and bounded waits.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import CancelledError, Deferred

from tests.backendapi import (
    BackendApiMixin,
    ProcessesMixin,
    _loadedBy,
    _spawn,
    _Worker,
    _writingAndWaiting,
)
from tests.backendapi import _bounded as _bounded
from tests.backendapi import _deferred as _deferred
from tests.backendapi import _holdersAndWaiters as _holdersAndWaiters
from tests.backendapi import _sleep as _sleep
from tests.backendapi import _until as _until
from tests.redisserver import RedisServer, requireRedis
from txrwlock import LockStatistics, TxTestCase
from txrwlock.redis import (
    LockLostError,
    RedisConnectionError,
    RedisError,
    RedisLocks,
    RedisReadersWriterLock,
    connect,
)
from txrwlock.redis._lock import _Acquire

reactor: Any = _reactor


def _info(server: RedisServer, field: str) -> int:
    """
    @return: the integer C{field} of the server's C{INFO}.
    """
    info = server.command("INFO").decode()
    return int(
        next(line for line in info.splitlines() if line.startswith(f"{field}:"))[len(field) + 1 :]
    )


def _calls(server: RedisServer, command: str) -> int:
    """
    @return: how many times the server has run C{command}.
    """
    stats = server.command("INFO", "commandstats").decode()
    for line in stats.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


class ImportTests(TxTestCase):
    """
    Importing L{txrwlock.redis} imports no reactor.
    """

    def test_noReactor(self) -> None:
        """
        In a fresh interpreter, after the import, the reactor is not loaded.
        """
        self.assertEqual(_loadedBy("txrwlock.redis", {"twisted.internet.reactor"}), [])


class CommandEncodingTests(TxTestCase):
    """
    The commands of a lock, encoded once in part, are those L{encode} builds.
    """

    def test_sameBytes(self) -> None:
        """
        A lock's command is the C{EVALSHA} of the script on its keys and arguments, as
        L{encode} encodes it.
        """
        from txrwlock.redis._client import encode
        from txrwlock.redis._lock import _OPERATIONS, _SHAS

        # The lock needs of its client only the reactor, the database and run (not called).
        client: Any = SimpleNamespace(reactor=reactor, dbid=3, run=None)
        lock = RedisLocks(client).lock("caf\u00e9", lease=1.5002)
        tag = "txrwlock:{3:caf\u00e9}"
        keys = [f"{tag}:{letter}" for letter in "hwqpnr"]
        cases: list[tuple[bytes, tuple[str, ...]]]
        cases = [(op, ("id:7",)) for op in (b"r", b"u", b"w", b"t", b"x", b"y", b"d", b"n")]
        cases += [(b"s", ()), (b"n", ("a:1", "b:22", "c:333"))]
        for op, ids in cases:
            command = lock._command(op, *ids)
            script, mode = _OPERATIONS[op]
            modes = () if mode is None else (mode,)
            # The lease, rounded up to the millisecond.
            expected = encode("EVALSHA", _SHAS[script], 6, *keys, tag, 1501, *modes, *ids)
            self.assertEqual(command, expected)


def _stopAll(running: list[tuple[type[_RedisTestCase], RedisServer]]) -> None:
    for _, server in running:
        server.stop()


class _RedisTestCase(TxTestCase):
    """
    A test with a C{redis-server} started with C{options}, shared by the tests of its class
    (starting one costs about 0.2 s, a test of the class about as much): each test finds it
    running, unpaused and empty, and may stop, pause or restart it.  One server runs at a time:
    the next class's stops it, and so does the end of the run.
    """

    options: tuple[str, ...] = ()
    timeout = 60
    _running: ClassVar[list[tuple[type[_RedisTestCase], RedisServer]]] = []

    def setUp(self) -> None:
        self.names = 0
        running = _RedisTestCase._running
        if running and running[0][0] is type(self):
            self.server = running[0][1]
            if self.server.process is None or self.server.process.poll() is not None:
                self.server.stop()
                self.server.start()
            else:
                os.kill(self.server.process.pid, signal.SIGCONT)
            flushed = self.server.command("FLUSHALL")
            if flushed != b"+OK":  # e.g. -NOAUTH: the class's tests would see each other's keys
                raise RuntimeError(f"could not empty the shared redis-server: {flushed!r}")
            return
        if running:
            running.pop()[1].stop()
        else:
            atexit.register(_stopAll, running)
        self.server = RedisServer(requireRedis(self), self.mktemp(), *self.options)
        running.append((type(self), self.server))
        self.server.start()

    def name(self) -> str:
        """
        A lock name not used before in this test.
        """
        self.names += 1
        return f"lock{self.names}"

    async def connect(self) -> RedisLocks:
        """
        A new client, disconnected after the test.
        """
        locks = await connect("127.0.0.1", self.server.port)
        self.addCleanup(locks.disconnect)
        return locks

    async def clients(self, n: int, name: str = "inventory", lease: float = 30.0) -> list[Any]:
        """
        The lock C{name} in C{n} new clients.
        """
        return [(await self.connect()).lock(name, lease=lease) for _ in range(n)]

    async def shortLeased(self, name: str, lost: Any) -> RedisReadersWriterLock:
        # A renewal every 0.33 s, lost if unanswered for 0.67 s: 0.6 s (0.4 s) lost holds in a
        # CI run on two cores shared with eight benchmark processes.
        return (await self.connect()).lock(name, lease=1.0, lost=lost)

    def loseHolds(self, lock: RedisReadersWriterLock) -> None:
        tag = f"txrwlock:{{0:{lock.name}}}"
        self.server.command("DEL", f"{tag}:h", f"{tag}:w")

    async def toldWhoWaits(self, lock: RedisReadersWriterLock) -> None:
        # Redis tells it (a "! <id>"), or it asks once it listens.
        await _until(lambda: lock._hold._contended)

    async def settle(self, lock: RedisReadersWriterLock) -> LockStatistics:
        """
        Wait until the commands sent so far by every client have run and their replies been
        handled: a statistics round trip after a short pause.
        """
        await _sleep(0.05)
        return await lock.statistics()

    async def queued(self, waiter: RedisReadersWriterLock, waiters: int) -> None:
        """
        Wait until the acquires of C{waiter} wait in Redis: a statistics round trip from it,
        which follows their tries, as a client's commands run in order (Redis keeps no queue of
        readers to count C{waiters} in).
        """
        await waiter.statistics()

    def spawn(self, mode: str, name: str, lease: float, arg: float) -> _Worker:
        """
        Start a worker, killed after the test if still running.
        """
        return _spawn(
            self, "redisworker.py", mode, str(self.server.port), name, str(lease), str(arg)
        )


class ClientsTests(_RedisTestCase, BackendApiMixin):
    """
    Several clients of one lock in one process: L{BackendApiMixin}'s scenarios, with writers
    first, and Redis's own: pub/sub wake-ups and handoffs, its scripts, its keys altered by
    hand, its connection lost, databases.
    """

    fair = False
    oneReadHold = False
    tokensAcrossNames = False

    @_deferred
    async def test_writerPreference(self) -> None:
        """
        While a writer waits, a new reader waits too, though only readers hold the lock; when
        the writer is done, it goes in.
        """
        a, b, c = await self.clients(3)
        await a.readerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        reading = c.readerAcquire()
        self.assertEqual(_holdersAndWaiters(await self.settle(c)), (1, False, 1, 1))
        self.assertFalse(reading.called)
        self.assertFalse(await c.tryReaderAcquire())
        await a.readerRelease()
        await _bounded(writing)
        self.assertFalse(reading.called)
        await b.writerRelease()
        await _bounded(reading)
        self.assertTrue(c.isReading)

    @_deferred
    async def test_fifoWriters(self) -> None:
        """
        Writers of different clients are served in the order they arrived at Redis.
        """
        holder, *writers = await self.clients(4)
        await holder.writerAcquire()
        order: list[int] = []
        waiting = []
        for i, lock in enumerate(writers):
            waiting.append(lock.writerAcquire().addCallback(lambda _, i=i: order.append(i)))
            await self.settle(holder)
        self.assertEqual((await holder.statistics()).writersWaiting, 3)
        await holder.writerRelease()
        for i, lock in enumerate(writers):
            await _bounded(waiting[i])
            self.assertEqual(order, list(range(i + 1)))
            await self.settle(lock)
            self.assertEqual(order, list(range(i + 1)))
            await lock.writerRelease()

    @_deferred
    async def test_cancelDuringReload(self) -> None:
        """
        An acquire cancelled while the script is being loaded again (Redis lost it) holds
        nothing, though its removal runs before the try it cancels.
        """
        locks = await self.connect()
        a, (b,) = locks.lock("x"), await self.clients(1, "x")
        load = locks._client.loadScripts
        acquiring: list[Deferred[Any]] = []

        def loadAndCancel() -> Deferred[None]:
            loaded = load()
            acquiring[-1].cancel()  # the removal goes now, the try once the script is back
            return loaded

        for acquire in (a.writerAcquire, a.readerAcquire):
            self.server.command("SCRIPT", "FLUSH")
            locks._client.loadScripts = loadAndCancel  # type: ignore[method-assign]
            acquiring.append(acquire())
            failure = await acquiring[-1].addErrback(lambda f: f.value)
            del locks._client.loadScripts
            self.assertIsInstance(failure, CancelledError)
            self.assertEqual(_holdersAndWaiters(await self.settle(b)), (0, False, 0, 0))

    @_deferred
    async def test_grantRepeated(self) -> None:
        """
        A try that Redis granted but whose reply was lost (the connection dropped) is granted
        again when retried, though a writer has queued since; a writer gets its token again.
        """
        a, b = await self.clients(2)

        async def run(op: bytes, holdId: str) -> int:
            return int(await a._run(a._command(op, holdId), lambda reply, sent: reply))

        self.assertGreater(await run(b"r", "lost:1"), 0)
        writing = b.writerAcquire()
        await self.settle(a)
        self.assertEqual(await run(b"r", "lost:1"), 1)
        self.assertEqual(await run(b"x", "lost:1"), 1)
        await _bounded(writing)
        token = b.fencingToken
        deadline = ("HGET", "txrwlock:{0:inventory}:w", "deadline")
        before = int(self.server.command(*deadline))
        await _sleep(0.01)
        self.assertEqual(await run(b"w", b._remoteId or ""), token)
        # Granted again with a new lease: the client counts one from its new try.
        self.assertGreater(int(self.server.command(*deadline)), before)
        await b.writerRelease()

    @_deferred
    async def test_badLease(self) -> None:
        """
        A lease that is not a finite number of seconds, at least 0.01, is refused at once.
        """
        locks = await self.connect()
        for lease in (0, -1, 0.001, float("inf"), float("nan")):
            self.assertRaisesWithMessage(ValueError, "at least 0.01", locks.lock, "x", lease=lease)
        self.assertEqual(locks.lock("x", lease=0.01).lease, 0.01)

    @_deferred
    async def test_subscribeOnlyToWait(self) -> None:
        """
        A lock object subscribes to its channel only once one of its acquires has to wait: names
        used without contention cost no subscription.  The waiter still gets the lock when told.
        """
        a, b = await self.clients(2)
        numsub = "return redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2]"
        channel = f"txrwlock:{{0:inventory}}:{a._locks._clientId}"

        def subscribers() -> bytes:
            return self.server.command("EVAL", numsub, "0", channel)

        await a.writerAcquire()
        await a.writerRelease()
        self.assertTrue(await b.tryWriterAcquire())
        await self.settle(a)
        self.assertEqual(subscribers(), b":0")
        writing = a.writerAcquire()
        await _until(lambda: subscribers() == b":1")
        await b.writerRelease()
        await _bounded(writing)
        await a.writerRelease()

    @_deferred
    async def test_listeningLingers(self) -> None:
        """
        An object whose acquires wait again and again keeps its subscription between waits (one
        C{SUBSCRIBE} for them all), and gives it up once it has neither held nor waited for a
        while.
        """
        a, b = await self.clients(2)
        subscribes = _calls(self.server, "subscribe")
        for _ in range(3):
            await a.writerAcquire()
            writing = b.writerAcquire()
            await _until(lambda: b._listening)
            await self.settle(b)
            await a.writerRelease()
            await _bounded(writing)
            await b.writerRelease()
        self.assertEqual(_calls(self.server, "subscribe") - subscribes, 1)
        channel = b._channel
        await _until(lambda: self.server.query("PUBSUB", "NUMSUB", channel)[1] == 0)
        self.assertFalse(b._listening)

    @_deferred
    async def test_wakeOnlyWhoWaits(self) -> None:
        """
        A hold that goes is told only to the client it concerns, on that client's channel: the
        next writer's, or those with waiting readers; a client whose waiter must go on waiting
        hears nothing, however many wait.
        """
        a, b, c = await self.clients(3)
        spy = (await self.connect())._client
        heard: list[tuple[str, str]] = []
        tag = "txrwlock:{0:inventory}"
        channels = [tag] + [f"{tag}:{x._locks._clientId}" for x in (b, c)]

        def listener(channel: str) -> Callable[[str | None], None]:
            def heardOn(message: str | None) -> None:
                if message is not None:  # None: subscribed
                    heard.append((channel, message))

            return heardOn

        for channel in channels:
            spy.subscribe(channel, listener(channel))

        def subscribers() -> list[Any]:
            return self.server.query("PUBSUB", "NUMSUB", *channels)[1::2]  # type: ignore[no-any-return]

        await _until(lambda: subscribers() == [1, 1, 1])
        await a.writerAcquire()
        writing = b.writerAcquire()
        reading = c.readerAcquire()
        await _until(lambda: subscribers() == [1, 2, 2])  # b and c wait, and listen
        await a.writerRelease()
        await _bounded(writing)
        await self.settle(a)
        # " !": c's reader waits already, so b's coroutines do not pass the hold on.
        self.assertEqual(heard, [(channels[1], f"{b._remoteId} {b.fencingToken} !")])
        self.assertFalse(reading.called)
        await b.writerRelease()
        await _bounded(reading)
        await self.settle(a)
        self.assertEqual(heard[1:], [(channels[2], f"{c._remoteId} 0")])
        await c.readerRelease()

    @_deferred
    async def test_handoff(self) -> None:
        """
        A release hands the write hold to the first waiting writer, in Redis, and tells it: the
        woken writer has it with no command of its own, with a fencing token larger than the
        last, and the lease it waited with.
        """
        a, b = await self.clients(2)
        await a.writerAcquire()
        token = a.fencingToken
        writing = b.writerAcquire()
        await _until(lambda: b._listening)
        await self.settle(a)
        scripts = _calls(self.server, "evalsha")
        await a.writerRelease()
        await _bounded(writing)
        self.assertEqual(_calls(self.server, "evalsha") - scripts, 1)  # the release
        self.assertTrue(b.isWriting)
        self.assertGreater(b.fencingToken, token)
        deadline = self.server.query("HGET", "txrwlock:{0:inventory}:w", "deadline")
        self.assertGreater(int(deadline), _info(self.server, "server_time_usec") + 29e6)
        await b.writerRelease()

    @_deferred
    async def test_handoffCrossingTry(self) -> None:
        """
        A grant handed off to a writer whose try is in flight (it had queued before the
        release) is handed over by that try's answer: no command of its own.
        """
        a, b = await self.clients(2)
        await a.writerAcquire()
        writing = b.writerAcquire()
        await _until(lambda: b._listening)
        await self.settle(b)
        # b tries again, and does not read the answer until the release's message is heard.
        replies = b._locks._client._commands.protocol.transport
        replies.pauseProducing()
        b._retry()
        await self.settle(a)
        scripts = _calls(self.server, "evalsha")
        await a.writerRelease()
        await _until(lambda: cast(_Acquire, b._taking).handed is not None)
        replies.resumeProducing()
        await _bounded(writing)
        self.assertEqual(_calls(self.server, "evalsha") - scripts, 1)  # the release
        self.assertTrue(b.isWriting)
        await b.writerRelease()

    @_deferred
    async def test_handoffCrossingCancel(self) -> None:
        """
        A waiting writer cancelled while a release hands it the hold gives it back: the next
        waiter is handed it in turn, and the cancelled one holds nothing.
        """
        a, b, c = await self.clients(3)
        await a.writerAcquire()
        cancelled, waiting = b.writerAcquire(), c.writerAcquire()
        await _until(lambda: b._listening and c._listening)
        cancelledId = cast(_Acquire, b._taking).id
        await self.settle(a)
        # b hears nothing until resumed: Redis hands it the hold, and it is cancelled before
        # it hears so.
        listening = b._locks._client._subscriber.protocol.transport
        listening.pauseProducing()
        await a.writerRelease()
        self.assertEqual(self.server.query("HGET", "txrwlock:{0:inventory}:w", "id"), cancelledId)
        cancelled.cancel()
        listening.resumeProducing()
        self.assertIsInstance(await cancelled.addErrback(lambda f: f.value), CancelledError)
        await _bounded(waiting)
        self.assertFalse(b.isWriting)
        self.assertTrue(c.isWriting)
        self.assertEqual(_holdersAndWaiters(await self.settle(a)), (0, True, 0, 0))
        await c.writerRelease()

    @_deferred
    async def test_databases(self) -> None:
        """
        Locks of the same name in different databases are different locks.
        """
        a = (await self.connect()).lock("x")
        other = await connect("127.0.0.1", self.server.port, dbid=1, reactor=reactor)
        self.addCleanup(other.disconnect)
        b = other.lock("x")
        await a.writerAcquire()
        self.assertTrue(await b.tryWriterAcquire())
        await a.writerRelease()
        await b.writerRelease()

    @_deferred
    async def test_leaseLostUnrenewed(self) -> None:
        """
        A holder that cannot renew (Redis frozen) loses its holds once its lease has passed,
        without waiting for Redis; when Redis is back, another client takes the lock.
        """
        lost: list[bool] = []
        locks = await self.connect()
        a = locks.lock("x", lease=0.5, lost=lambda lock, writer: lost.append(writer))
        await a.readerAcquire()
        self.server.pause()
        try:
            start = reactor.seconds()
            while not lost and reactor.seconds() - start < 10:
                await _sleep(0.05)
            self.assertEqual(lost, [False])
            self.assertFalse(a.isReading)
        finally:
            os.kill(self.server.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
        await self.assertInlineCbRaises(LockLostError, a.readerRelease)
        (b,) = await self.clients(1, "x")
        await _bounded(b.writerAcquire())
        await b.writerRelease()

    @_deferred
    async def test_connectRefused(self) -> None:
        """
        L{connect} fails with L{RedisConnectionError} when nothing answers, within its
        C{connectTimeout}, leaving nothing behind in the reactor.
        """
        port = self.server.port
        self.server.stop()
        start = reactor.seconds()
        d = connect("127.0.0.1", port, connectTimeout=1.0)
        error = await self.assertInlineCbRaises(RedisConnectionError, lambda: d)
        self.assertIn(f"127.0.0.1:{port}", str(error))
        self.assertLess(reactor.seconds() - start, 5)

    @_deferred
    async def test_connectionLostInFlight(self) -> None:
        """
        An acquire whose command is in flight when Redis goes away fails with
        L{RedisConnectionError}; one made while Redis is away waits for it, and gets the lock.
        """
        (a,) = await self.clients(1)
        self.server.pause()
        inFlight = a.writerAcquire()
        await _sleep(0.1)
        self.server.stop(signal.SIGKILL)
        await self.assertInlineCbRaises(RedisConnectionError, lambda: _bounded(inFlight))
        self.assertFalse(a.isWriting)
        await _sleep(0.1)
        later = a.writerAcquire()
        await _sleep(0.5)
        self.assertFalse(later.called)
        self.server.start()
        await _bounded(later, 20)
        self.assertTrue(a.isWriting)
        await a.writerRelease()

    @_deferred
    async def test_disconnect(self) -> None:
        """
        Disconnecting fails the waiting acquires and gives up their places, and the holds not
        released, as lost.
        """
        (a,) = await self.clients(1)
        lost: list[bool] = []
        locks = await connect("127.0.0.1", self.server.port)
        c = locks.lock("inventory")
        held = locks.lock("other", lost=lambda lock, writer: lost.append(writer))
        await a.writerAcquire()
        await held.writerAcquire()
        waiting = c.writerAcquire()
        reading = c.readerAcquire()
        await self.settle(a)
        await locks.disconnect()
        for d in (waiting, reading):
            self.assertIn("disconnected", str(await d.addErrback(lambda f: f.value)))
        self.assertEqual(_holdersAndWaiters(await a.statistics()), (0, True, 0, 0))
        await a.writerRelease()
        self.assertEqual((lost, held.isWriting), ([True], False))
        await self.assertInlineCbRaises(LockLostError, held.writerRelease)
        other = (await self.connect()).lock("other")
        self.assertTrue(await other.tryWriterAcquire())
        await other.writerRelease()
        self.assertRaisesWithMessage(RedisConnectionError, "after disconnect()", locks.lock, "y")
        await self.assertInlineCbRaisesWithMsg(
            RedisConnectionError, "disconnected", c.readerAcquire
        )

    @_deferred
    async def test_disconnectDuringTry(self) -> None:
        """
        A try-acquire in flight when its L{RedisLocks} disconnects fails as the waiters do, and
        what Redis granted it is given up.
        """
        (other,) = await self.clients(1, "x")
        for tryAcquire in ("tryWriterAcquire", "tryReaderAcquire"):
            locks = await connect("127.0.0.1", self.server.port)
            lock = locks.lock("x")
            trying = getattr(lock, tryAcquire)()
            await locks.disconnect()
            self.assertIn("disconnected", str(await trying.addErrback(lambda f: f.value)))
            self.assertEqual((lock.isReading, lock.isWriting), (False, False))
            self.assertEqual(_holdersAndWaiters(await other.statistics()), (0, False, 0, 0))

    @_deferred
    async def test_disconnectWhileRedisAway(self) -> None:
        """
        Disconnecting while Redis is frozen, or gone, does not wait for it: the holds and places
        that could not be given up run out with their leases.
        """
        for away in ("frozen", "gone"):
            locks = await connect("127.0.0.1", self.server.port)
            held, waiting = locks.lock("x"), locks.lock("x")
            await held.writerAcquire()
            writing = waiting.writerAcquire()
            await self.settle(held)
            if away == "frozen":
                self.server.pause()
            else:
                self.server.stop(signal.SIGKILL)
            await _bounded(locks.disconnect())
            self.assertFalse(held.isWriting)
            self.assertIn("disconnected", str(await writing.addErrback(lambda f: f.value)))
            self.server.stop()
            self.server.start()

    @_deferred
    async def test_cancelWaitingReader(self) -> None:
        """
        A cancelled waiting reader is gone: it is not counted, and not granted later.
        """
        a, b = await self.clients(2)
        await a.writerAcquire()
        reading = b.readerAcquire()
        self.assertEqual((await self.settle(b)).readersWaiting, 1)
        reading.cancel()
        self.assertIsInstance(await reading.addErrback(lambda f: f.value), CancelledError)
        self.assertEqual(_holdersAndWaiters(await b.statistics()), (0, True, 0, 0))
        await a.writerRelease()
        self.assertEqual(_holdersAndWaiters(await self.settle(b)), (0, False, 0, 0))
        self.assertFalse(b.isReading)

    @_deferred
    async def test_repr(self) -> None:
        """
        The reprs show the database, the name, what the object holds and waits for, the lease.
        """
        locks = await self.connect()
        lock = locks.lock("x", lease=2.0)
        await lock.readerAcquire()
        expected = "<RedisReadersWriterLock 'x' readers=1 writing=False waiting=0r/0w lease=2.0>"
        self.assertEqual(repr(lock), expected)
        self.assertEqual(repr(lock.reader), f"<reader side of {expected}>")
        self.assertTrue(repr(locks).startswith("<RedisLocks db=0 "))
        await lock.readerRelease()

    @_deferred
    async def test_lostCallbacks(self) -> None:
        """
        A lost hold is reported whether or not there is a C{lost} callback, and one that raises
        is logged.
        """
        locks = await self.connect()

        def broken(lock: RedisReadersWriterLock, writer: bool) -> None:
            raise ZeroDivisionError()

        quiet = locks.lock("quiet", lease=0.3)
        noisy = locks.lock("noisy", lease=0.3, lost=broken)
        await quiet.readerAcquire()
        await noisy.writerAcquire()
        self.server.command("DEL", "txrwlock:{0:quiet}:h", "txrwlock:{0:noisy}:w")
        await _until(lambda: not quiet.isReading and not noisy.isWriting)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        await self.assertInlineCbRaises(LockLostError, quiet.readerRelease)
        await self.assertInlineCbRaises(LockLostError, noisy.writerRelease)

    @_deferred
    async def test_lateWriterRelease(self) -> None:
        """
        A writer whose hold ran out in Redis (its key deleted here) and went to another writer
        fails its release with L{LockLostError}, and leaves the other's hold alone.
        """
        a, b, c = await self.clients(3, "x")
        await a.writerAcquire()
        self.server.command("DEL", "txrwlock:{0:x}:w")
        await _bounded(b.writerAcquire())
        await self.assertInlineCbRaisesWithMsg(LockLostError, "was lost", a.writerRelease)
        self.assertFalse(await c.tryReaderAcquire())
        self.assertTrue((await c.statistics()).writing)
        await b.writerRelease()
        self.assertTrue(await c.tryReaderAcquire())
        await c.readerRelease()

    @_deferred
    async def test_expiredWriterFoundByNewcomer(self) -> None:
        """
        A write hold whose lease ran out unreleased (its deadline moved back here) is dropped by
        the next acquire that meets it, which tells the waiting readers at once: they do not
        wait for the timer set from the lease they saw.
        """
        a, b, c = await self.clients(3, "x")
        await a.writerAcquire()
        reading = b.readerAcquire()
        await self.settle(b)
        self.server.command("HSET", "txrwlock:{0:x}:w", "deadline", "1")
        await _bounded(c.readerAcquire(), 5)
        await _bounded(reading, 5)

    @_deferred
    async def test_strayWriterKey(self) -> None:
        """
        A writer key that does not read as a hold (set by hand: no deadline) keeps no one out.
        """
        (a,) = await self.clients(1, "x")
        self.server.command("HSET", "txrwlock:{0:x}:w", "id", "stray")
        await _bounded(a.readerAcquire(), 5)
        await a.readerRelease()
        self.server.command("HSET", "txrwlock:{0:x}:w", "id", "stray")
        await _bounded(a.writerAcquire(), 5)
        await a.writerRelease()

    @_deferred
    async def test_placeLost(self) -> None:
        """
        A waiting writer whose place vanished from Redis queues again, and gets the lock.
        """
        a, b = await self.clients(2, lease=0.3)
        await a.writerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        self.server.command("DEL", "txrwlock:{0:inventory}:q", "txrwlock:{0:inventory}:p")
        self.assertEqual((await a.statistics()).writersWaiting, 0)
        queue = ("ZCARD", "txrwlock:{0:inventory}:q")
        await _until(lambda: self.server.command(*queue) == b":1")
        self.assertFalse(writing.called)
        await a.writerRelease()
        await _bounded(writing)
        await b.writerRelease()

    @_deferred
    async def test_scriptErrors(self) -> None:
        """
        An acquire the script fails (a key of the lock overwritten with a string) fails with
        Redis's error and grants nothing; a renewal it fails is logged, and the hold is lost when
        its lease runs out.
        """
        locks = await self.connect()
        self.server.command("SET", "txrwlock:{0:bad}:h", "not a sorted set")
        bad = locks.lock("bad")
        await self.assertInlineCbRaisesWithMsg(RedisError, "WRONGTYPE", bad.writerAcquire)
        self.assertFalse(bad.isWriting)
        lost: list[bool] = []
        spoilt = locks.lock("spoilt", lease=0.3, lost=lambda lock, writer: lost.append(writer))
        await spoilt.writerAcquire()
        self.server.command("SET", "txrwlock:{0:spoilt}:h", "not a sorted set")
        await _until(lambda: bool(lost))
        self.assertEqual(lost, [True])
        self.assertGreaterEqual(len(self.flushLoggedErrors(RedisError)), 2)

    @_deferred
    async def test_waiterSurvivesConnectionLoss(self) -> None:
        """
        A waiter whose retry is in flight when Redis dies keeps waiting; when Redis comes back
        without its data, the holder learns it lost the lock and the waiter gets it.
        """
        lost: list[bool] = []
        a = (await self.connect()).lock("x", lease=1.0, lost=lambda lock, w: lost.append(w))
        (b,) = await self.clients(1, "x", lease=1.0)
        await a.writerAcquire()
        writing = b.writerAcquire()
        await self.settle(a)
        self.server.pause()
        b._retry()  # as if told to: its retry is in flight when Redis dies
        await _sleep(0.1)
        self.server.stop(signal.SIGKILL)
        await _sleep(0.3)
        self.assertFalse(writing.called)
        self.server.start()
        await _bounded(writing, 20)
        await _until(lambda: bool(lost))
        self.assertEqual((lost, a.isWriting), ([True], False))
        await b.writerRelease()


class PasswordTests(_RedisTestCase):
    """
    A Redis that needs a password.
    """

    options = ("--requirepass", "s3cret")

    @_deferred
    async def test_password(self) -> None:
        """
        With the right password the locks work; with a wrong one L{connect} fails, saying so.
        """
        locks = await connect("127.0.0.1", self.server.port, password="s3cret")
        self.addCleanup(locks.disconnect)
        lock = locks.lock("x")
        await lock.writerAcquire()
        await lock.writerRelease()
        await self.assertInlineCbRaisesWithMsg(
            RedisConnectionError,
            "WRONGPASS",
            connect,
            "127.0.0.1",
            self.server.port,
            password="no",
        )


class EvictionTests(_RedisTestCase):
    """
    Redis full, under a C{volatile-*} policy: it evicts keys with an expiry, and no key of a
    lock has one.
    """

    options = ("--maxmemory", "4mb", "--maxmemory-policy", "volatile-ttl")

    @_deferred
    async def test_holdsNotEvicted(self) -> None:
        """
        When Redis evicts to make room, a write hold stays: nobody else gets in.
        """
        a, b = await self.clients(2, "x")
        await a.writerAcquire()
        # Few keys with an expiry, so that each eviction weighs them all.
        fill = "redis.call('SET', KEYS[1], ('v'):rep(1500000), 'EX', 3600)"
        for i in range(4):
            self.server.command("EVAL", fill, "1", f"cache:{i}")
        self.assertFalse(await b.tryWriterAcquire())
        self.assertGreater(_info(self.server, "evicted_keys"), 0)
        self.assertTrue((await b.statistics()).writing)
        await a.writerRelease()


class RestartTests(_RedisTestCase):
    """
    Redis restarted cleanly, with its data (append-only file, fsync always).
    """

    timeout = 120

    options = ("--appendonly", "yes", "--appendfsync", "always")

    @_deferred
    async def test_restart(self) -> None:
        """
        Across a clean restart, holds and places whose leases have not run out are kept: the
        holder keeps writing, nobody else gets in meanwhile, waiters carry on once it releases,
        and fencing tokens keep growing.
        """
        lost: list[bool] = []
        locks = [await self.connect() for _ in range(3)]
        a, b, c = (
            lo.lock("x", lease=5.0, lost=lambda lock, writer: lost.append(writer)) for lo in locks
        )
        before, writing, reading = await _writingAndWaiting(self, a, b, c)
        self.server.restart()
        await _sleep(3.0)  # reconnected, renewed, retried
        self.assertEqual(lost, [])
        self.assertTrue(a.isWriting)
        self.assertFalse(writing.called)
        self.assertFalse(reading.called)
        self.assertEqual(_holdersAndWaiters(await _bounded(c.statistics())), (0, True, 1, 1))
        await a.writerRelease()
        await _bounded(writing)
        after = b.fencingToken
        assert after is not None
        self.assertGreater(after, before)
        self.assertFalse(reading.called)
        await b.writerRelease()
        await _bounded(reading)
        await c.readerRelease()
        self.assertEqual(lost, [])

    @_deferred
    async def test_restartAcrossProcesses(self) -> None:
        """
        A worker process holding the write lock across a clean restart keeps it (its watchdog
        renews it once Redis is back) and nobody else gets it meanwhile; the waiter gets it once
        the worker releases, with a larger fencing token.
        """
        lease = 3.0
        holder = self.spawn("hold", "x", lease, 4.0)
        token = int((await _bounded(holder.line("HOLDING"), 30)).split()[1])
        releasesAfter = reactor.seconds() + 4.0
        (lock,) = await self.clients(1, "x", lease=lease)
        writing = lock.writerAcquire()
        await self.settle(lock)
        self.server.restart()
        await _sleep(max(0.0, releasesAfter - 1.5 - reactor.seconds()))
        self.assertFalse(writing.called)
        self.assertEqual(await _bounded(holder.line("RELEASED"), 30), "RELEASED")
        self.assertIn("KEPT", holder.lines)
        await _bounded(writing, 30)
        self.assertGreater(lock.fencingToken, token)
        await lock.writerRelease()


class ProcessesTests(_RedisTestCase, ProcessesMixin):
    """
    Workers in separate OS processes sharing one lock; the scenarios are L{tests.backendapi}'s.
    """

    timeout = 120
    counterRun = (6, 100, 1.0)
    # The waiters get the lock once the holder's lease has run out.
    killedHolder = (1.0, 2.0)
    shortLease = 1.0

    def makeCounter(self) -> None:
        pass  # the server is empty

    def counted(self) -> tuple[int, int, list[int]]:
        count = int(self.server.command("LLEN", "tokens")[1:])
        tokens = [int(self.server.command("LINDEX", "tokens", str(i))) for i in range(count)]
        return int(self.server.command("GET", "a")), int(self.server.command("GET", "b")), tokens
