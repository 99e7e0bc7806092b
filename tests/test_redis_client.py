"""
Tests for L{txrwlock.redis._client}, the Redis client of the locks: RESP2, and the connections
through the faults production brings, against real C{redis-server}s on loopback (one per class
where the tests allow it; see L{tests.redisserver}), with bounded waits.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from tests.redisserver import (
    RedisServer,
    SentinelServer,
    SilentProxy,
    requireRedis,
    sharedServer,
)
from tests.test_redis import _bounded, _deferred, _sleep, _until, reactor
from txrwlock import TxTestCase
from txrwlock._ports import freeLoopbackPort
from txrwlock.redis import RedisConnectionError, RedisError, RedisLocks, connect
from txrwlock.redis._client import (
    RedisClient,
    _IncompleteError,
    _Link,
    _parse,
    _Sentinels,
    _Settings,
    encode,
)


class EncodingTests(TxTestCase):
    """
    Commands encoded, and replies parsed, as RESP2 says.
    """

    def test_encode(self) -> None:
        """
        Strings are encoded in UTF-8, integers in decimal, bytes as they are.
        """
        self.assertEqual(
            encode("SET", "k\u00e9", 12, b"\x00\r\n"),
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n12\r\n$3\r\n\x00\r\n\r\n",
        )

    def test_parse(self) -> None:
        """
        Every kind of reply, nested arrays included; each cut short raises L{_IncompleteError}.
        """
        data = b"+OK\r\n:-7\r\n$3\r\nab\xff\r\n$-1\r\n*2\r\n$2\r\n\xc3\xa9\r\n*1\r\n:1\r\n*-1\r\n"
        replies, pos = [], 0
        while pos < len(data):
            reply, pos = _parse(data, pos)
            replies.append(reply)
        self.assertEqual(replies, ["OK", -7, b"ab\xff", None, ["\u00e9", [1]], None])
        nested = b"*2\r\n$2\r\n\xc3\xa9\r\n*1\r\n:1\r\n"
        for cut in range(1, len(nested)):
            self.assertRaises(_IncompleteError, _parse, nested[:cut], 0)

    def test_errorReply(self) -> None:
        """
        An error reply is a L{RedisError}, with Redis's text and its code.
        """
        error, _ = _parse(b"-WRONGTYPE Operation against a key\r\n", 0)
        self.assertIsInstance(error, RedisError)
        self.assertEqual(
            (str(error), error.code), ("WRONGTYPE Operation against a key", "WRONGTYPE")
        )
        self.assertRaises(ValueError, _parse, b"?what\r\n", 0)


class ConnectMisuseTests(TxTestCase):
    """
    L{connect} refuses options that make no sense, at once, saying which.
    """

    def test_misuse(self) -> None:
        """
        Sentinels without a service (or the reverse), and timeouts not positive and finite.
        """
        cases: list[tuple[dict[str, Any], str]] = [
            ({"sentinels": [("127.0.0.1", 26379)]}, "give both sentinels and service"),
            ({"service": "mymaster"}, "give both sentinels and service"),
            ({"replyTimeout": 0}, "replyTimeout must be positive and finite, not 0"),
            ({"healthCheckInterval": float("inf")}, "healthCheckInterval must be positive"),
            ({"connectTimeout": -1.0}, "connectTimeout must be positive"),
        ]
        for kwargs, message in cases:
            error = self.assertRaises(ValueError, connect, reactor=reactor, **kwargs)
            self.assertIn("connect(): " + message, str(error))


class _ClientTestCase(TxTestCase):
    """
    Tests on the C{redis-server} of their class, started with C{options}.
    """

    options: tuple[str, ...] = ()
    timeout = 60

    def setUp(self) -> None:
        self.server = sharedServer(self, *self.options)

    async def connect(self, *args: Any, **kwargs: Any) -> RedisLocks:
        """
        A new client of this class's server, unless told where, disconnected after the test.
        """
        if not args:
            args = ("127.0.0.1", self.server.port)
        locks = await connect(*args, **kwargs)
        self.addCleanup(locks.disconnect)
        return locks

    async def useLock(self, locks: RedisLocks, name: str = "x") -> None:
        """
        Take and give back the write lock C{name}, within bounded time.
        """
        lock = locks.lock(name)
        await _bounded(lock.writerAcquire())
        await _bounded(lock.writerRelease())


def _links(locks: RedisLocks) -> list[_Link]:
    client: RedisClient = locks._client
    return [client._commands, client._subscriber]


def _noDelay(locks: RedisLocks) -> list[int]:
    """
    @return: whether each connection of C{locks} has Nagle's algorithm off (C{TCP_NODELAY}),
        read from its socket, under TLS too.
    """
    flags = []
    for link in _links(locks):
        assert link.protocol is not None
        transport = link.protocol.transport
        tcp = getattr(transport, "transport", transport)  # under TLS, the TCP transport
        flags.append(tcp.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return flags


async def _kill(admin: RedisLocks, locks: RedisLocks) -> None:
    """
    Have Redis close both connections of C{locks}, through C{admin}'s.
    """
    for link in _links(locks):
        assert link.protocol is not None
        port = link.protocol.transport.getHost().port
        await admin._client.execute("CLIENT", "KILL", "ADDR", f"127.0.0.1:{port}")


class CommandTests(_ClientTestCase):
    """
    Commands pipelined on one connection, each given its own reply.
    """

    @_deferred
    async def test_pipelined(self) -> None:
        """
        Many commands sent at once each get their own reply, in order; a reply larger than what
        one read brings (here 2 MB) is put together; an error reply fails its command only.
        """
        client = (await self.connect())._client
        big = "\u00e9" * 1_000_000
        sets = [client.execute("SET", f"k{i}", i) for i in range(1000)]
        sets.append(client.execute("SET", "big", big))
        gets = [client.execute("GET", f"k{i}") for i in range(1000)]
        wrong = client.execute("HGET", "big", "field")
        gets.append(client.execute("GET", "big"))
        self.assertEqual(await gatherResults(sets), ["OK"] * 1001)
        self.assertEqual(await gatherResults(gets), [str(i) for i in range(1000)] + [big])
        error = await self.assertInlineCbRaises(RedisError, lambda: wrong)
        self.assertEqual(error.code, "WRONGTYPE")


async def _refusedWhileWaiting(
    case: TxTestCase, admin: RedisLocks, waiter: RedisLocks, refuse: list[str], allow: list[str]
) -> None:
    """
    While C{waiter} waits for the lock C{admin} holds, have Redis close C{waiter}'s connections
    and refuse new ones (C{CONFIG SET refuse}) until they have failed twice each; then allow
    them (C{CONFIG SET allow}): C{waiter} must get the lock when C{admin} releases it.
    """
    a, b = admin.lock("x"), waiter.lock("x")
    await a.writerAcquire()
    waiting = b.writerAcquire()
    await _until(lambda: b._listening and waiter._client._subscriber.protocol is not None)
    await admin._client.execute("CONFIG", "SET", *refuse)
    try:
        await _kill(admin, waiter)
        links = _links(waiter)
        await _until(lambda: all(link._failures >= 2 for link in links))
    finally:
        await admin._client.execute("CONFIG", "SET", *allow)
    case.assertFalse(waiting.called)
    await a.writerRelease()
    await _bounded(waiting)
    case.assertTrue(b.isWriting)
    await b.writerRelease()


class RefusedReconnectionTests(_ClientTestCase):
    """
    Reconnection goes on through refusals that are later lifted (C{maxclients}), and a waiting
    acquire keeps waiting meanwhile.
    """

    @_deferred
    async def test_maxClients(self) -> None:
        """
        With Redis at C{maxclients}, the client whose connections were closed keeps trying;
        once Redis takes clients again, it reconnects, and its waiting acquire gets the lock
        when the holder releases.
        """
        admin, waiter = await self.connect(), await self.connect()
        # Room for admin's two connections only.
        limit, unlimited = ["maxclients", "2"], ["maxclients", "10000"]
        await _refusedWhileWaiting(self, admin, waiter, limit, unlimited)


class PasswordRotationTests(_ClientTestCase):
    """
    A password rotated and restored.
    """

    options = ("--requirepass", "old")

    @_deferred
    async def test_passwordRotated(self) -> None:
        """
        While Redis refuses the client's password, it keeps trying; once the password is back,
        it reconnects (to its database again), and its waiting acquire gets the lock when the
        holder releases.
        """
        admin = await self.connect("127.0.0.1", self.server.port, password="old", dbid=1)
        waiter = await self.connect("127.0.0.1", self.server.port, password="old", dbid=1)
        await admin._client.execute("SET", "marker", "1")
        rotated, restored = ["requirepass", "new"], ["requirepass", "old"]
        await _refusedWhileWaiting(self, admin, waiter, rotated, restored)
        self.assertEqual(await waiter._client.execute("GET", "marker"), "1")


class SilentConnectionTests(_ClientTestCase):
    """
    A connection that goes silent (a proxy that stops forwarding) is noticed within
    C{healthCheckInterval + replyTimeout}, and replaced.
    """

    @_deferred
    async def test_silentNoticed(self) -> None:
        """
        Both idle connections, the pub/sub one included, are noticed dead within the bound, and
        replaced: the waiter of a client behind the proxy gets the lock when the holder
        releases.  Before, health checks are answered, on the subscribed connection too.
        """
        proxy = SilentProxy(reactor, self.server.port)
        self.addCleanup(proxy.close)
        holder = await self.connect()
        locks = await self.connect(
            "127.0.0.1", proxy.port, replyTimeout=0.4, healthCheckInterval=0.6
        )
        a, b = holder.lock("x"), locks.lock("x")
        await a.writerAcquire()
        waiting = b.writerAcquire()
        await _until(lambda: b._listening)
        old = [link.protocol for link in _links(locks)]
        await _sleep(1.5)  # two health checks each
        self.assertFalse(any(p is None or p.lost.called for p in old))
        proxy.silence()
        silenced = reactor.seconds()
        await _until(lambda: all(p is not None and p.lost.called for p in old), 5)
        noticed = reactor.seconds() - silenced
        self.assertLessEqual(noticed, 0.4 + 0.6 + 0.25)
        await a.writerRelease()
        await _bounded(waiting)
        await b.writerRelease()
        self.assertNotIn(_links(locks)[0].protocol, old)

    @_deferred
    async def test_inFlightTimesOut(self) -> None:
        """
        A command in flight on a silent connection fails with L{RedisConnectionError} after
        C{replyTimeout}; the next goes over a new connection.
        """
        proxy = SilentProxy(reactor, self.server.port)
        self.addCleanup(proxy.close)
        locks = await self.connect(
            "127.0.0.1", proxy.port, replyTimeout=0.3, healthCheckInterval=30.0
        )
        await self.useLock(locks)
        proxy.silence()
        sent = reactor.seconds()
        await self.assertInlineCbRaisesWithMsg(
            RedisConnectionError, "no reply from Redis in 0.3 s", locks._client.execute, "PING"
        )
        self.assertLess(reactor.seconds() - sent, 0.3 + 0.25)
        self.assertEqual(await _bounded(locks._client.execute("PING")), "PONG")

    @_deferred
    async def test_closeWhileAway(self) -> None:
        """
        Closing the client fails the commands waiting for a connection, and those waiting to
        be retried, with L{RedisConnectionError}, and leaves nothing behind in the reactor.
        """
        proxy = SilentProxy(reactor, self.server.port)
        away, retrying = await self.connect("127.0.0.1", proxy.port), await self.connect()
        await proxy.close()
        await _until(lambda: away._client._commands.protocol is None)
        waiting = away._client.execute("PING")
        self.server.command("REPLICAOF", "127.0.0.1", str(freeLoopbackPort()))
        self.addCleanup(self.server.command, "REPLICAOF", "NO", "ONE")
        retried = retrying._client.execute("SET", "k", "v")  # READONLY: retried
        await _until(lambda: bool(retrying._client._retries))
        results: list[Any] = []
        for d in (waiting, retried):
            d.addBoth(results.append)
        await gatherResults([away._client.close(), retrying._client.close()])
        self.assertEqual(len(results), 2)
        for failure in results:
            self.assertIsInstance(failure.value, RedisConnectionError)
            self.assertIn("closed", str(failure.value))


class NotNowTests(_ClientTestCase):
    """
    Replies that say "not now": Redis busy running a long script (C{BUSY}), a replica
    (C{READONLY}).
    """

    options = ("--lua-time-limit", "50")

    @_deferred
    async def test_busyRetried(self) -> None:
        """
        An acquire answered C{BUSY} is retried until the script ends, and granted.
        """
        busy = await self.connect()
        locks = await self.connect()
        spin = (
            "local t0 = redis.call('TIME') "
            "for i = 1, 100000000 do local t = redis.call('TIME') "
            "if (t[1] - t0[1]) * 1000000 + t[2] - t0[2] > 600000 then return i end end"
        )
        spinning = busy._client.execute("EVAL", spin, 0)
        await _sleep(0.2)
        self.assertTrue(self.server.command("PING").startswith(b"-BUSY"))
        lock = locks.lock("x")
        acquiring = lock.writerAcquire()
        await _bounded(acquiring)
        self.assertTrue(spinning.called)
        await lock.writerRelease()

    @_deferred
    async def test_readOnlyRetried(self) -> None:
        """
        An acquire answered C{READONLY} (Redis became a replica) is retried until Redis is a
        primary again, and granted.
        """
        locks = await self.connect()
        await self.useLock(locks)
        # A replica of nothing: read-only, and it stays so.
        self.server.command("REPLICAOF", "127.0.0.1", str(freeLoopbackPort()))
        self.addCleanup(self.server.command, "REPLICAOF", "NO", "ONE")
        lock = locks.lock("x")
        acquiring = lock.writerAcquire()
        await _sleep(0.5)
        self.assertFalse(acquiring.called)
        self.server.command("REPLICAOF", "NO", "ONE")
        await _bounded(acquiring)
        await lock.writerRelease()


class LoadingTests(_ClientTestCase):
    """
    Redis loading its data (C{LOADING}): after a restart, or C{DEBUG RELOAD}.
    """

    # 1 ms a key: Redis loads 1,000 keys in about a second, answering LOADING meanwhile.
    options = (
        "--key-load-delay",
        "1000",
        "--loading-process-events-interval-bytes",
        "1024",
        "--enable-debug-command",
        "yes",
    )

    async def fill(self, locks: RedisLocks) -> None:
        await locks._client.execute("EVAL", "for i = 1, 1000 do redis.call('SET', i, i) end", 0)
        await locks._client.execute("SAVE")

    @_deferred
    async def test_restartLoading(self) -> None:
        """
        While Redis loads its data after a restart, an acquire waits, as does L{connect}; both
        go through once it has loaded.
        """
        locks = await self.connect()
        await self.useLock(locks)
        await self.fill(locks)
        old = _links(locks)[0].protocol
        assert old is not None
        self.server.restart()
        self.assertTrue(self.server.command("PING").startswith(b"-LOADING"))
        await _until(lambda: old.lost.called)  # else the acquire is in flight as it is lost
        lock = locks.lock("x")
        acquiring = lock.writerAcquire()
        connecting = self.connect(connectTimeout=10)
        fresh = await _bounded(Deferred.fromCoroutine(connecting), 20)
        await _bounded(acquiring, 20)
        await lock.writerRelease()
        await self.useLock(fresh)

    @_deferred
    async def test_reloadRetried(self) -> None:
        """
        An acquire answered C{LOADING} on a connection kept (C{DEBUG RELOAD}) is retried, and
        granted once Redis has loaded.
        """
        admin, locks = await self.connect(), await self.connect()
        await self.fill(admin)
        reloading = admin._client.execute("DEBUG", "RELOAD")
        await _sleep(0.3)
        self.assertTrue(self.server.command("PING").startswith(b"-LOADING"))
        lock = locks.lock("x")
        await _bounded(lock.writerAcquire(), 20)
        self.assertTrue(reloading.called)
        await lock.writerRelease()


class SentinelTests(TxTestCase):
    """
    A primary, its replica and a sentinel: the client follows a failover.
    """

    timeout = 60

    @_deferred
    async def test_failover(self) -> None:
        """
        Connected through the sentinel, the client reaches the primary; when the primary dies
        and the sentinel fails over to the replica, the client reaches the new primary, and
        the locks work there.
        """
        executable = requireRedis(self)
        # Replicas sync at once, not after the 5 s Redis waits for more of them by default.
        primary = RedisServer(executable, self.mktemp(), "--repl-diskless-sync-delay", "0")
        primary.start()
        self.addCleanup(primary.stop)
        replica = RedisServer(executable, self.mktemp(), "--replicaof", "127.0.0.1", "0")
        replica.options = ("--replicaof", "127.0.0.1", str(primary.port))
        replica.start()
        self.addCleanup(replica.stop)
        sentinel = SentinelServer(executable, self.mktemp(), primary.port)
        sentinel.start()
        self.addCleanup(sentinel.stop)
        await _until(lambda: b"master_link_status:up" in replica.command("INFO", "replication"))
        await _until(lambda: bool(sentinel.query("SENTINEL", "replicas", "mymaster")), 15)
        # The first sentinel is away: the client asks the next.
        sentinels = [("127.0.0.1", freeLoopbackPort()), ("127.0.0.1", sentinel.port)]
        locks = await connect(sentinels=sentinels, service="mymaster")
        self.addCleanup(locks.disconnect)
        lock = locks.lock("x")

        def reached() -> int:
            protocol = locks._client._commands.protocol
            return 0 if protocol is None else int(protocol.transport.getPeer().port)

        self.assertEqual(reached(), primary.port)
        await _bounded(lock.writerAcquire())
        await _bounded(lock.writerRelease())
        old = locks._client._commands.protocol
        assert old is not None
        primary.stop(signal.SIGKILL)
        await _until(lambda: old.lost.called)  # else the acquire is in flight as it is lost
        acquiring = lock.writerAcquire()  # made while the client reaches no primary: it waits
        await _bounded(acquiring, 20)
        where = ("SENTINEL", "get-master-addr-by-name", "mymaster")
        self.assertEqual(sentinel.query(*where)[1], str(replica.port))
        self.assertEqual(reached(), replica.port)
        await _bounded(lock.writerRelease())


class SentinelCloseTests(TxTestCase):
    """
    A client closed while it looks for the primary stops looking.
    """

    @_deferred
    async def test_closeWhileResolving(self) -> None:
        """
        Closed while it resolves the first sentinel's name, the client asks no other sentinel.
        (C{HostnameEndpoint} fails an attempt cancelled during name resolution with
        C{DNSLookupError}, Twisted 22.10 to 26.10, which was taken for that sentinel being
        away: the next one was asked after the close, and its attempt could outlive a test.)
        """
        asked: list[object] = []

        class Sentinel(Protocol):
            def connectionMade(self) -> None:
                asked.append(self)
                cast(Any, self.transport).loseConnection()

        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        listening = await endpoint.listen(Factory.forProtocol(Sentinel))
        self.addCleanup(listening.stopListening)
        settings = _Settings(reactor, 0, None, None, 5.0, 5.0, 5.0)
        sentinels = [("localhost", freeLoopbackPort()), ("127.0.0.1", listening.getHost().port)]
        client = RedisClient(settings, _Sentinels(settings, sentinels, "mymaster"), [])
        await client.close()
        await _sleep(0.5)  # the name resolved meanwhile
        self.assertEqual(asked, [])


class MasterDownTests(TxTestCase):
    """
    A replica that serves no stale data (C{MASTERDOWN}) while its primary is away.
    """

    timeout = 60

    @_deferred
    async def test_masterDownRetried(self) -> None:
        """
        A command answered C{MASTERDOWN} is retried until the replica's primary is back, and
        then answered.
        """
        executable = requireRedis(self)
        # Replicas sync at once, not after the 5 s Redis waits for more of them by default.
        primary = RedisServer(executable, self.mktemp(), "--repl-diskless-sync-delay", "0")
        primary.start()
        self.addCleanup(primary.stop)
        replica = RedisServer(executable, self.mktemp(), "--replica-serve-stale-data", "no")
        replica.options += ("--replicaof", "127.0.0.1", str(primary.port))
        replica.start()
        self.addCleanup(replica.stop)
        await _until(lambda: b"master_link_status:up" in replica.command("INFO", "replication"))
        locks = await connect("127.0.0.1", replica.port)
        self.addCleanup(locks.disconnect)
        primary.stop(signal.SIGKILL)
        await _until(lambda: replica.command("GET", "k").startswith(b"-MASTERDOWN"))
        read: list[object] = []
        reading = locks._client.execute("GET", "k").addCallback(read.append)
        await _sleep(0.3)
        self.assertEqual(read, [])
        primary.start()
        await _bounded(reading, 20)
        self.assertEqual(read, [None])  # the primary came back empty, and so did the replica


def _certificate(directory: Path) -> None:
    """
    Make a throwaway self-signed certificate for C{localhost} in C{directory}: C{cert.pem},
    C{key.pem}, and C{ca/cert.pem} for the clients to trust.
    """
    (directory / "ca").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    (directory / "ca" / "cert.pem").write_bytes((directory / "cert.pem").read_bytes())


class EndpointTests(_ClientTestCase):
    """
    Endpoint descriptions: a UNIX socket, TLS.
    """

    tlsPort = 0

    def setUp(self) -> None:
        self.tls = Path("tls-certificate").resolve()
        if not (self.tls / "key.pem").exists():
            _certificate(self.tls)
            type(self).tlsPort = freeLoopbackPort()
        self.socket = str(self.tls / "redis.sock")
        type(self).options = (
            *("--unixsocket", self.socket, "--tls-port", str(self.tlsPort)),
            *("--tls-cert-file", str(self.tls / "cert.pem")),
            *("--tls-key-file", str(self.tls / "key.pem")),
            *("--tls-ca-cert-file", str(self.tls / "cert.pem"), "--tls-auth-clients", "no"),
        )
        super().setUp()

    @_deferred
    async def test_unixSocket(self) -> None:
        """
        C{"unix:path=..."} connects to Redis's UNIX socket.
        """
        locks = await self.connect(f"unix:path={self.socket}")
        await self.useLock(locks)

    @_deferred
    async def test_endpointObject(self) -> None:
        """
        An L{IStreamClientEndpoint} will do as well.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.server.port)
        await self.useLock(await self.connect(endpoint))

    @_deferred
    async def test_noDelay(self) -> None:
        """
        Both connections turn Nagle's algorithm off, over TCP and TLS alike: else a command
        written while an earlier one is unanswered waits for Redis to acknowledge that one.
        """
        plain = await self.connect()
        secure = await self.connect(
            f"tls:host=localhost:port={self.tlsPort}:trustRoots={self.tls / 'ca'}"
        )
        for locks in (plain, secure):
            await self.useLock(locks)
            self.assertTrue(all(_noDelay(locks)), _noDelay(locks))

    @_deferred
    async def test_tls(self) -> None:
        """
        C{"tls:..."} connects over TLS, checking Redis's certificate.
        """
        locks = await self.connect(
            f"tls:host=localhost:port={self.tlsPort}:trustRoots={self.tls / 'ca'}"
        )
        await self.useLock(locks)
        self.assertIn("TLS", type(locks._client._commands.protocol.transport).__name__)  # type: ignore[union-attr]


class SubscriptionTests(_ClientTestCase):
    """
    Subscriptions counted per channel, held only while someone waits.
    """

    def numsub(self, channel: str) -> int:
        return int(self.server.query("PUBSUB", "NUMSUB", channel)[1])

    @_deferred
    async def test_counted(self) -> None:
        """
        A channel stays subscribed until its last listener unsubscribes as many times as it
        subscribed; unsubscribing once more is refused.
        """
        client = (await self.connect())._client
        heard: list[object] = []
        one, two = heard.append, lambda message: None
        client.subscribe("c", one)
        client.subscribe("c", one)
        client.subscribe("c", two)
        await _until(lambda: self.numsub("c") == 1)
        self.assertEqual(heard, [None])  # once subscribed: messages may have been missed
        self.server.command("PUBLISH", "c", "hello")
        await _until(lambda: heard == [None, "hello"])
        for listener in (one, two, one):
            self.assertEqual(self.numsub("c"), 1)
            client.unsubscribe("c", listener)
        await _until(lambda: self.numsub("c") == 0)
        self.assertRaises(ValueError, client.unsubscribe, "c", one)

    @_deferred
    async def test_changedWhileReconnecting(self) -> None:
        """
        Channels subscribed and unsubscribed while the pub/sub connection is made again end up
        subscribed exactly while they have listeners; the listeners of every channel are told
        that messages may have been missed.
        """
        admin, locks = await self.connect(), await self.connect()
        client = locks._client
        heard: list[tuple[str, object]] = []

        def listener(channel: str) -> Any:
            return lambda message: heard.append((channel, message))

        kept, dropped, added = listener("kept"), listener("dropped"), listener("added")
        client.subscribe("kept", kept)
        client.subscribe("dropped", dropped)
        await _until(lambda: len(heard) == 2)
        link, greet = client._subscriber, client._subscriber._greet

        def greetThenChange(protocol: Any) -> Deferred[Any]:
            # Changed just after the new connection was sent its subscriptions.
            greeted = greet(protocol)
            link._greet = greet
            client.unsubscribe("dropped", dropped)
            client.subscribe("added", added)
            return greeted

        link._greet = greetThenChange
        await admin._client.execute("CLIENT", "KILL", "TYPE", "pubsub")
        await _until(lambda: link._greet is greet and link.protocol is not None)
        await _until(lambda: [self.numsub(c) for c in ("kept", "dropped", "added")] == [1, 0, 1])
        await _until(lambda: ("kept", None) in heard[2:] and ("added", None) in heard[2:])
        self.assertNotIn("dropped", [channel for channel, _ in heard[2:]])

    @_deferred
    async def test_namesUsedOnce(self) -> None:
        """
        2,000 lock names each waited for once leave no channel subscribed.  (The issue saw
        10,000 names leave 10,000 channels; 2,000 keep this test within seconds on the oldest
        Twisted and Python, in a suite run by four workers on two cores.)
        """
        holder, waiter = await self.connect(), await self.connect()
        names = [f"job-{i}" for i in range(2000)]
        held = [holder.lock(name) for name in names]
        waiting = [waiter.lock(name) for name in names]
        await _bounded(Deferred.fromCoroutine(_all([lock.writerAcquire() for lock in held])), 30)
        acquiring = [lock.writerAcquire() for lock in waiting]
        await _until(lambda: all(lock._listening for lock in waiting), 30)
        await _until(lambda: len(self.server.query("PUBSUB", "CHANNELS")) == len(names), 30)
        await _bounded(Deferred.fromCoroutine(_all([lock.writerRelease() for lock in held])), 30)
        await _bounded(Deferred.fromCoroutine(_all(acquiring)), 30)
        await _bounded(Deferred.fromCoroutine(_all([lock.writerRelease() for lock in waiting])), 30)
        await _until(lambda: self.server.query("PUBSUB", "CHANNELS") == [], 30)
        self.assertEqual(waiter._client._channels, {})

    @_deferred
    async def test_subscribeRefused(self) -> None:
        """
        A C{SUBSCRIBE} Redis refuses (an ACL) is logged, not left unhandled, and tried again,
        with backoff, until Redis allows it; then the waiter hears the release.
        """
        # SUBSCRIBE refused, PUBLISH allowed: the scripts of the waiter publish (issue 12).
        self.server.command("ACL", "SETUSER", "u", "on", ">p", "~*", "&*", "+@all", "-subscribe")
        self.addCleanup(self.server.command, "ACL", "DELUSER", "u")
        holder = await self.connect()
        waiter = await self.connect(username="u", password="p")
        a, b = holder.lock("x"), waiter.lock("x")
        await a.writerAcquire()
        waiting = b.writerAcquire()
        await _until(lambda: waiter._client._subscriber._failures >= 2)
        self.assertGreaterEqual(len(self.flushLoggedErrors(RedisError)), 1)
        self.server.command("ACL", "SETUSER", "u", "+subscribe")
        await _until(lambda: self.numsub(f"txrwlock:{{0:x}}:{waiter._clientId}") == 1)
        await a.writerRelease()
        await _bounded(waiting)
        await b.writerRelease()
        self.flushLoggedErrors(RedisError)


async def _all(ds: list[Deferred[Any]]) -> None:
    for d in ds:
        await d
