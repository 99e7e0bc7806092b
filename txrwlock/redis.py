# -*- test-case-name: tests.test_redis -*-
"""
The readers/writer lock of L{txrwlock}, shared by processes and hosts through Redis.

    from txrwlock.redis import connect

    locks = yield connect("localhost", 6379)
    lock = locks.lock("inventory", lease=30.0)
    yield lock.writerAcquire()
    try:
        writeToStore(data, fence=lock.fencingToken)
    finally:
        yield lock.writerRelease()
    yield locks.disconnect()

Needs txredisapi (C{pip install txrwlock[redis]}), imported by L{connect} only: txredisapi
imports the global reactor, and importing this module must not.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import cache
from hashlib import sha1
from inspect import isawaitable
from itertools import count
from types import SimpleNamespace, TracebackType
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, cast
from uuid import uuid4

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    FirstError,
    fail,
    gatherResults,
)
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txrwlock.txrwlock import LockNotHeldError, LockStatistics, _Side

__all__ = ["LockLostError", "RedisLockSide", "RedisLocks", "RedisReadersWriterLock", "connect"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

_log = Logger()

# Every transition of a lock, one atomic script.  The state of the lock named N in database D
# lives in six keys "txrwlock:{D:N}:<letter>" (one letter each, so that no two names share a
# key; the braces keep them in one Redis Cluster slot):
#   h  readers: ZSET read hold id -> lease deadline (server ms);
#   w  writer: HASH of the write hold: its "id" and its lease "deadline";
#   q  queue: ZSET waiting writer id -> arrival number, FIFO;
#   p  places: ZSET waiting writer id -> lease deadline of its place in q (same members as q);
#   n  counter: INCR for fencing tokens and arrival numbers.  Never deleted, so that tokens never
#      go backwards while the data persists;
#   r  readers wait: set by a reader that must wait, deleted when waiting readers are told to
#      retry (when set needlessly, it costs one needless message).
# Waiting readers live in their clients only: nothing waits behind them.  No key has a Redis
# expiry: a volatile-* maxmemory policy, which evicts only such keys, could evict a hold.
# Invariants: h and w are never both present; q and p have the same members; no id is in two of
# h, w and q.
# ARGV: channel, lease (ms), operation, then hold ids (the fixed arguments first: see
# RedisReadersWriterLock._command).  An acquire replies with an integer: when granted, positive
# (the fencing token of a writer, 1 for a reader); else minus one minus the milliseconds until
# the earliest lease ends, when a holder or a place may vanish (0 if none, and for a try).
# Whenever a hold or a place goes (release, cancel, expiry, downgrade), the script publishes on
# the channel who may go now, if anyone: the id of the writer at the head of the queue, or "*"
# for the waiting readers, if r says some wait; only they retry.  Holds and places whose lease
# ran out are dropped by the general path, whoever runs it; waiters run it when the earliest
# lease ends.  A granted id asking again (its reply was lost) is granted again, with a new lease.
# The one helper function, wait(), is made after the fast paths: a run makes its Lua closures
# anew, 0.6 µs each.
#
# The uncontended acquire and release take fast paths that neither clean up nor publish: when
# nobody waits, nobody needs telling, and a hold that ran out is dropped by the first acquire it
# would keep out, which takes the general path.  Each Redis call costs the script about 1.5 µs,
# against 3 µs for the run of an empty script: a writer pair makes 4 + 3 calls, a reader pair
# 3 + 2.  (Measured: with the writer's lease in h, as the readers', a writer pair made 5 + 3
# calls and took Redis 3 µs longer; a w that Redis expires would save one call more.)
_SCRIPT = """
local holders, writer, queue, places, counter, readers = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]
local channel, lease, op, id = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
-- freed: a hold or a place went; readersMayGo: not only a read hold.
local result, freed, readersMayGo = nil, false, false

if op == 'x' or op == 'y' then
  -- Release, cancel or abandon: drop the hold of id here, its place below; 1 if it held.  'y',
  -- the writer's release, looks for a write hold only.
  result = op == 'x' and redis.call('ZREM', holders, id) or 0
  if result == 0 and redis.call('HGET', writer, 'id') == id then
    redis.call('DEL', writer)
    result, readersMayGo = 1, true
  end
  freed = result == 1
  if redis.call('EXISTS', queue, readers) == 0 then return result end
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if op == 'w' or op == 't' then
  -- Nobody holds (a write hold that ran out keeps its key: the general path drops it) nor waits.
  if redis.call('EXISTS', holders, writer, queue) == 0 then
    redis.call('HSET', writer, 'id', id, 'deadline', now + lease)
    return redis.call('INCR', counter)
  end
elseif op == 'r' and redis.call('EXISTS', writer, queue) == 0 then
  -- No writer holds or waits.
  redis.call('ZADD', holders, now + lease, id)
  return 1
end

-- Holds and places whose lease ran out go first (a w that does not read as a hold too).  w:
-- the writer's id, head: the first waiting writer's, kept up to date below.
if redis.call('ZREMRANGEBYSCORE', holders, '-inf', now) > 0 then
  freed, readersMayGo = true, true
end
local w, due = unpack(redis.call('HMGET', writer, 'id', 'deadline'))
due = tonumber(due) or 0
if not (w and due > now) then
  w = false
  if redis.call('DEL', writer) == 1 then freed, readersMayGo = true, true end
end
local head = redis.call('ZRANGE', queue, 0, 0)[1]
if head then
  local gone = redis.call('ZRANGEBYSCORE', places, '-inf', now)
  if #gone > 0 then
    redis.call('ZREM', queue, unpack(gone))
    redis.call('ZREM', places, unpack(gone))
    freed, readersMayGo = true, true
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
end

-- Not granted: minus one minus the milliseconds until the earliest lease ends (0 if none).
local function wait()
  local first = w and due - now or -1
  for _, key in ipairs({holders, places}) do
    local earliest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if earliest[2] then
      local left = tonumber(earliest[2]) - now
      if first < 0 or left < first then first = left end
    end
  end
  return -1 - first
end

if op == 'r' then
  -- Read: granted unless a writer holds or waits (or granted before).
  if not redis.call('ZSCORE', holders, id) and (w or head) then
    redis.call('SET', readers, 1)
    result = wait()
  else
    redis.call('ZADD', holders, now + lease, id)
    result = 1
  end
elseif op == 'w' or op == 't' then
  -- Write ('t': try, never queue): granted when nobody holds and nobody waits ahead.
  if w == id then
    redis.call('HSET', writer, 'deadline', now + lease)
    result = tonumber(redis.call('GET', counter))
  elseif not w and (not head or head == id) and redis.call('EXISTS', holders) == 0 then
    if head then
      redis.call('ZREM', queue, id)
      redis.call('ZREM', places, id)
      head = redis.call('ZRANGE', queue, 0, 0)[1]
    end
    redis.call('HSET', writer, 'id', id, 'deadline', now + lease)
    w = id
    result = redis.call('INCR', counter)
  elseif op == 't' then
    result = 0
  else
    if not redis.call('ZSCORE', queue, id) then
      redis.call('ZADD', queue, redis.call('INCR', counter), id)
      head = head or id
    end
    redis.call('ZADD', places, now + lease, id)
    result = wait()
  end
elseif op == 'x' then
  if result == 0 and head and redis.call('ZREM', queue, id) == 1 then
    redis.call('ZREM', places, id)
    freed, readersMayGo = true, true
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
elseif op == 'd' then
  -- Downgrade: the write hold id becomes a read hold; 1 if it held.
  result = 0
  if w == id then
    redis.call('DEL', writer)
    w = false
    redis.call('ZADD', holders, now + lease, id)
    freed, readersMayGo = true, true
    result = 1
  end
elseif op == 'n' then
  -- Renew the holds and places of ARGV[4..]; return the ids that have neither.
  result = {}
  for i = 4, #ARGV do
    if w == ARGV[i] then
      redis.call('HSET', writer, 'deadline', now + lease)
    elseif redis.call('ZSCORE', holders, ARGV[i]) then
      redis.call('ZADD', holders, now + lease, ARGV[i])
    elseif redis.call('ZSCORE', places, ARGV[i]) then
      redis.call('ZADD', places, now + lease, ARGV[i])
    else
      table.insert(result, ARGV[i])
    end
  end
elseif op == 's' then
  result = {redis.call('ZCARD', holders), w and 1 or 0, redis.call('ZCARD', queue)}
end

-- Tell who may go now, if anyone.
if freed and not w then
  if head then
    if redis.call('EXISTS', holders) == 0 then redis.call('PUBLISH', channel, head) end
  elseif readersMayGo and redis.call('DEL', readers) == 1 then
    redis.call('PUBLISH', channel, '*')
  end
end
return result
"""

_SHA = sha1(_SCRIPT.encode()).hexdigest()


class _Command(bytes):
    """
    A command already encoded in RESP, which the command connection sends as it is.
    """


def _bulk(*args: bytes) -> list[bytes]:
    return [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]


# Reconnecting slower than a lease loses every hold, so back off less than txredisapi's default
# (1 s growing to 10 s).
_RECONNECT_INITIAL_DELAY = 0.1
_RECONNECT_MAX_DELAY = 2.0


class _Timer(Protocol):
    """
    What the locks need of a timer: L{IDelayedCall<twisted.internet.interfaces.IDelayedCall>}.
    """

    def active(self) -> bool: ...
    def getTime(self) -> float: ...
    def cancel(self) -> None: ...


class _Clock(Protocol):
    """
    What the locks need of the reactor: L{IReactorTime<twisted.internet.interfaces.IReactorTime>}.
    """

    def seconds(self) -> float: ...
    def callLater(self, delay: float, f: Callable[..., object], /, *args: Any) -> Any: ...


class LockLostError(LockNotHeldError):
    """
    The hold being released was lost: its lease ran out (its renewal failed, or came too late)
    before the release, and another client may have held the lock since.
    """


@cache
def _txredisapi() -> SimpleNamespace:
    """
    Import txredisapi, which imports the global reactor, and define what builds on it.

    @return: the module, as C{module}, the protocol and factory of the command connection, as
        C{CommandProtocol} and C{CommandFactory}, and the factory of the pub/sub connection, as
        C{SubscriberFactory}.
    """
    import txredisapi

    class CommandProtocol(txredisapi.RedisProtocol):  # type: ignore[misc]
        def _build_command(self, *args: object, **kwargs: object) -> bytes:
            if type(args[0]) is _Command:
                return args[0]
            return cast(bytes, super()._build_command(*args, **kwargs))

    class CommandFactory(txredisapi.RedisFactory):  # type: ignore[misc]
        protocol = CommandProtocol
        initialDelay = _RECONNECT_INITIAL_DELAY
        maxDelay = _RECONNECT_MAX_DELAY

    class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
        subscriptions: _Subscriptions

        def messageReceived(self, pattern: object, channel: str, message: str) -> None:
            self.subscriptions.messageReceived(channel, message)

    class SubscriberFactory(txredisapi.SubscriberFactory):  # type: ignore[misc]
        protocol = Subscriber
        initialDelay = _RECONNECT_INITIAL_DELAY
        maxDelay = _RECONNECT_MAX_DELAY

        def __init__(self, subscriptions: _Subscriptions, password: str | None) -> None:
            super().__init__()
            self.password = password
            self.subscriptions = subscriptions

        def buildProtocol(self, addr: object) -> Subscriber:
            protocol = cast(Subscriber, super().buildProtocol(addr))
            protocol.subscriptions = self.subscriptions
            protocol.whenConnected().addCallback(self.subscriptions.connected)
            protocol.whenDisconnected().addCallback(self.subscriptions.disconnected)
            return protocol

    return SimpleNamespace(
        module=txredisapi,
        CommandProtocol=CommandProtocol,
        CommandFactory=CommandFactory,
        SubscriberFactory=SubscriberFactory,
    )


def _isConnectionError(failure: Failure) -> bool:
    return isinstance(failure.value, _txredisapi().module.ConnectionError)


def _connectionError(message: str) -> Exception:
    return cast(Exception, _txredisapi().module.ConnectionError(message))


def connect(
    host: str = "localhost",
    port: int = 6379,
    dbid: int = 0,
    password: str | None = None,
    *,
    connectTimeout: float = 5.0,
    reactor: Any = None,
) -> Deferred[RedisLocks]:
    """
    Connect to Redis, for locks shared with every client of the same database.

    Two connections are made, one for commands and one for pub/sub, shared by every lock of the
    L{RedisLocks}.  Once made, both reconnect by themselves whenever they are lost.

    @param host: the Redis server's host name or address.
    @param port: its port.
    @param dbid: the database: locks of the same name in different databases are different.
    @param password: Redis's password, if it needs one.
    @param connectTimeout: give up after this many seconds if Redis cannot be reached.
    @param reactor: the reactor (an L{IReactorTCP} and L{IReactorTime}) for connections and
        timers; the global one, imported then, if L{None}.
    @return: a L{Deferred} of the L{RedisLocks}, failing with txredisapi's C{ConnectionError}
        if Redis cannot be reached in C{connectTimeout} seconds.
    """
    if reactor is None:
        from twisted.internet import reactor
    redis = _txredisapi()
    subscriptions = _Subscriptions(dbid)
    commands = redis.CommandFactory(f"{host}:{port}", dbid, 1, password=password)
    subscriber = redis.SubscriberFactory(subscriptions, password)
    endpoint = HostnameEndpoint(cast(IReactorTCP, reactor), host, port, timeout=connectTimeout)
    commands.startConnecting(endpoint)
    subscriber.startConnecting(endpoint)

    def connected(_: object) -> Deferred[RedisLocks]:
        locks = RedisLocks(cast(_Clock, reactor), commands, subscriber, subscriptions)
        return locks._loadScript().addCallback(lambda _: locks)

    def timedOut(result: object, timeout: float) -> None:
        # txredisapi retries for ever, and keeps why the first connection failed to itself.
        raise _connectionError(f"could not connect to Redis at {host}:{port} in {timeout} s")

    def failed(failure: Failure) -> Deferred[Any]:
        if isinstance(failure.value, FirstError):
            failure = failure.value.subFailure
        return _closeBoth(commands, subscriber).addBoth(lambda _: failure)

    ready: Deferred[Any] = gatherResults(
        [commands.deferred, subscriber.deferred], consumeErrors=True
    )
    ready.addTimeout(connectTimeout, cast(IReactorTime, reactor), onTimeoutCancel=timedOut)
    return ready.addCallback(connected).addErrback(failed)


def _closeBoth(commands: Any, subscriber: Any) -> Deferred[None]:
    """
    Close the command and pub/sub connections, and stop them reconnecting.
    """
    closed = gatherResults([commands.disconnect(), subscriber.disconnect()], consumeErrors=True)
    return closed.addCallback(lambda _: None)


class _Subscriptions:
    """
    The pub/sub side of a L{RedisLocks}: which locks listen on which channels, and the
    subscriptions of the current pub/sub connection, renewed whenever it reconnects.
    """

    def __init__(self, dbid: int) -> None:
        self.dbid = dbid
        self._protocol: Any = None
        self._locks: dict[str, weakref.WeakSet[RedisReadersWriterLock]] = {}

    def add(self, lock: RedisReadersWriterLock) -> None:
        """
        Deliver the releases of C{lock}'s name to it.
        """
        locks = self._locks.get(lock._channel)
        if locks is None:
            locks = self._locks[lock._channel] = weakref.WeakSet()
            if self._protocol is not None:
                self._subscribe(self._protocol, lock._channel)
        locks.add(lock)

    def locks(self) -> list[RedisReadersWriterLock]:
        """
        @return: every lock alive.
        """
        return [lock for locks in self._locks.values() for lock in locks]

    def connected(self, protocol: Any) -> None:
        self._protocol = protocol
        for channel in list(self._locks):
            self._subscribe(protocol, channel)

    def disconnected(self, protocol: Any) -> None:
        if protocol is self._protocol:
            self._protocol = None

    def messageReceived(self, channel: str, message: str) -> None:
        """
        Who may go now on C{channel}: the writer of id C{message}, or every waiter if C{"*"}.
        """
        for lock in list(self._locks.get(channel, ())):
            lock._retry(None if message == "*" else message)

    def _subscribe(self, protocol: Any, channel: str) -> None:
        def subscribed(_: object) -> None:
            if protocol is self._protocol:
                # Releases published before now were missed: every waiter retries.
                self.messageReceived(channel, "*")

        def failed(failure: Failure) -> Failure | None:
            # Lost with its connection: connected() subscribes again on the next one.
            return None if _isConnectionError(failure) else failure

        protocol.subscribe(channel).addCallbacks(subscribed, failed)


class RedisLocks:
    """
    The locks of one Redis database, made by L{connect}: one command connection and one pub/sub
    connection, shared by every lock made by L{lock}.
    """

    def __init__(
        self, reactor: _Clock, commands: Any, subscriber: Any, subscriptions: _Subscriptions
    ) -> None:
        """
        Use L{connect}.
        """
        self._reactor = reactor
        self._commands = commands
        self._subscriber = subscriber
        self._subscriptions = subscriptions
        self._clientId = uuid4().hex
        self._ids = count()
        self._closed = False

    @property
    def dbid(self) -> int:
        """
        The Redis database of the locks.
        """
        return self._subscriptions.dbid

    def lock(
        self,
        name: str,
        lease: float = 30.0,
        lost: Callable[[RedisReadersWriterLock, bool], object] | None = None,
    ) -> RedisReadersWriterLock:
        """
        A lock shared with every client of this Redis database that uses the same C{name}.

        Each call makes a new lock object, a client of its own: the holds of one object are not
        those of another.

        @param name: the lock's name, any non-empty string.
        @param lease: seconds a hold, or a waiting writer's place, lasts unless renewed; this
            object renews them every C{lease / 3} seconds.
        @param lost: called with the lock and whether the hold was the writer's, each time this
            object loses a hold because its lease ran out unrenewed.
        @raise TypeError: if C{name} is not a string.
        @raise ValueError: if C{name} is empty or C{lease} is not positive.
        """
        if not isinstance(name, str):
            raise TypeError(f"a lock's name must be a string, not {name!r}")
        if not name:
            raise ValueError("a lock's name must not be empty")
        if not lease > 0:
            raise ValueError(f"a lock's lease must be positive, not {lease!r}")
        if self._closed:
            raise _connectionError("RedisLocks.lock() called after disconnect()")
        lock = RedisReadersWriterLock(self, name, lease, lost)
        self._subscriptions.add(lock)
        return lock

    def disconnect(self, timeout: float = 2.0) -> Deferred[None]:
        """
        Close both connections.  Waiting acquires fail with txredisapi's C{ConnectionError} and
        their places are given up.  Holds not released are given up too, as lost: the C{lost}
        callbacks are called, and their releases fail with L{LockLostError}.  Release first.

        @param timeout: wait at most this many seconds for Redis to give up the holds and
            places; if it is away, their leases run out instead.
        @return: a L{Deferred} that fires once both connections are closed.
        """
        self._closed = True
        removals = [d for lock in self._subscriptions.locks() for d in lock._close()]
        # Not a timeout on the removals: cancelling them would leave their replies unread.
        given: Deferred[None] = Deferred()
        timer = self._reactor.callLater(timeout, given.callback, None)

        def removed(_: object) -> None:
            if timer.active():
                timer.cancel()
                given.callback(None)

        DeferredList(removals, consumeErrors=True).addCallback(removed)
        return given.addCallback(lambda _: _closeBoth(self._commands, self._subscriber))

    def _newId(self) -> str:
        return f"{self._clientId}:{next(self._ids)}"

    def _loadScript(self) -> Deferred[None]:
        loaded = self._commands.handler.script_load(_SCRIPT)
        return cast(Deferred[None], loaded.addCallback(lambda _: None))

    def _run(
        self,
        command: _Command,
        then: Callable[Concatenate[Any, float, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """
        Run the lock script, once connected; load it again if Redis lost it (a restart,
        C{SCRIPT FLUSH}).

        @param command: the C{EVALSHA} of the script, from L{RedisReadersWriterLock._command}.
        @param then: called with the script's reply, the time the command was sent (a lease it
            sets in Redis runs out after that time plus the lease), C{args} and C{kwargs}.  (A
            callback of its own, not one more on the reply's: 1 µs less per command.)
        @return: a L{Deferred} of what C{then} returns.
        """
        # Not through txredisapi's handler, to know when the command is sent: Redis may be away.
        # The connection in the pool, when there is one, is the one getConnection() would give,
        # 10 µs sooner (measured).  Commands waiting for a connection are sent before it is
        # pooled, so they still go first.
        pool = self._commands.pool
        if pool and pool[0].connected:
            return self._send(pool[0], command, then, args, kwargs)
        connected: Deferred[Any] = self._commands.getConnection(peek=True)
        return connected.addCallback(self._send, command, then, args, kwargs)

    def _send(
        self,
        connection: Any,
        command: _Command,
        then: Callable[..., _T],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> Deferred[_T]:
        sent = self._reactor.seconds()
        d: Deferred[Any] = connection.execute_command(command)
        return d.addCallbacks(
            then,
            self._reload,
            callbackArgs=(sent, *args),
            callbackKeywords=kwargs,
            errbackArgs=(command, then, args, kwargs),
        )

    def _reload(
        self,
        failure: Failure,
        command: _Command,
        then: Callable[..., _T],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> Deferred[_T] | Failure:
        if not str(failure.value).startswith("NOSCRIPT"):
            return failure
        return self._loadScript().addCallback(lambda _: self._run(command, then, *args, **kwargs))

    def __repr__(self) -> str:
        return f"<RedisLocks db={self.dbid} {self._commands.handler!r}>"


class _Acquire:
    """
    One acquire of a L{RedisReadersWriterLock}, until its Deferred has fired.

    @ivar id: the hold id, unique across clients: the same in every try of this acquire.
    @ivar inFlight: whether a try is running in Redis.
    @ivar again: whether to try again as soon as the running try fails (a release came).
    @ivar waited: whether a try has failed: this acquire waits (and a writer has a place in
        Redis's queue).
    """

    __slots__ = ("again", "deferred", "id", "inFlight", "queue", "waited", "writer")

    def __init__(
        self, id: str, writer: bool, queue: bool, cancel: Callable[[_Acquire], None]
    ) -> None:
        self.id = id
        self.writer = writer
        self.queue = queue
        self.deferred: Deferred[Any] = Deferred(lambda _: cancel(self))
        self.inFlight = False
        self.again = False
        self.waited = False


class RedisReadersWriterLock:
    """
    A readers/writer lock shared through Redis, made by L{RedisLocks.lock}: the API of
    L{TxReadersWriterLock<txrwlock.TxReadersWriterLock>}, where a release, a try-acquire and
    L{statistics} go to Redis and so return Deferreds.

    B{Policy}, across all clients, as the local lock's default: writer preference.  While a writer
    holds or waits, new readers wait; writers are served in arrival order (arrival at Redis);
    when no writer holds or waits, waiting readers all go in.

    B{Leases and fencing.}  Every hold, and every waiting writer's place, has a lease: it vanishes
    C{lease} seconds after it was last renewed, and this object renews it every C{lease / 3}
    seconds.  So a client that dies or hangs loses its holds within one lease, and the others go
    on.  A hold this object could not renew in time (Redis unreachable, the process paused) is
    lost: L{isReading} or L{isWriting} turns false, the C{lost} callback is called, and its
    release fails with L{LockLostError}.  Another client may have held the lock in between, so
    while writing, give L{fencingToken} to the store, which must refuse a token smaller than the
    last it saw::

        client A   |== write, token 33 ==.. paused ......| write(33): refused
        lease of A |-------- lease --------|
        client B                           |== write, token 34 ==|

    B{Cancellation.}  Cancelling a waiting acquire (C{cancel()}, C{addTimeout}) errbacks it with
    L{CancelledError} and gives up its place in Redis; a grant that crossed the cancellation is
    released.

    B{Faults.}  An acquire whose command is in flight when Redis goes away fails with txredisapi's
    C{ConnectionError} and holds nothing; one made while Redis is away waits for it, as do the
    waiters already waiting.  Holds whose leases have not run out when Redis comes back (with its
    data) are kept.
    """

    # Invariants:
    #   - _holds maps the ids this object holds (as the Redis script granted them and has not
    #     released them) to whether the hold writes; at most one writes, and then it is alone.
    #   - _deadlines has the keys of _holds: the local time by which each hold's lease surely
    #     runs out unless renewed (the send time of the last command that set it, plus a lease).
    #   - _waiting has the acquires whose Deferreds have not fired, tries included (those that
    #     do not queue: their one try is in flight).
    #   - While there are holds or waiting writers with a place, a renewal is scheduled or
    #     running (it may outlive them by one tick), and _expiry is due no later than the
    #     earliest deadline.

    def __init__(
        self,
        locks: RedisLocks,
        name: str,
        lease: float,
        lost: Callable[[RedisReadersWriterLock, bool], object] | None,
    ) -> None:
        """
        Use L{RedisLocks.lock}.
        """
        self._locks = locks
        self._clock = locks._reactor
        self.name = name
        self.lease = lease
        self._lost = lost
        tag = f"txrwlock:{{{locks.dbid}:{name}}}"
        self._channel = tag
        # What every command of this lock starts with, encoded once (measured: 0.3 µs to build
        # a command, against 7 µs encoding every argument; a pair sends two).  _heads: the
        # start of the commands on one hold id, up to the id, for each operation.
        keys = [f"{tag}:{letter}".encode() for letter in "hwqpnr"]
        leaseMs = b"%d" % max(1, round(lease * 1000))
        fixed = [b"EVALSHA", _SHA.encode(), b"%d" % len(keys), *keys, tag.encode(), leaseMs]
        self._prefix = b"".join(_bulk(*fixed))
        self._prefixArgs = len(fixed)
        self._heads = {op: self._head(op, 1) for op in (b"r", b"w", b"t", b"x", b"y", b"d", b"n")}
        self._holds: dict[str, bool] = {}
        self._deadlines: dict[str, float] = {}
        self._fencingToken: int | None = None
        self._lostHolds = {False: 0, True: 0}
        self._waiting: dict[str, _Acquire] = {}
        self._renewal: _Timer | None = None
        self._renewing = False
        self._expiry: _Timer | None = None
        self._retryTimer: _Timer | None = None
        self.reader = RedisLockSide(self, False)
        self.writer = RedisLockSide(self, True)

    @property
    def isReading(self) -> bool:
        """
        Whether this object holds at least one read hold.
        """
        return not all(self._holds.values())

    @property
    def isWriting(self) -> bool:
        """
        Whether this object holds the write hold.
        """
        return self._fencingToken is not None

    @property
    def fencingToken(self) -> int | None:
        """
        While this object holds the write hold, its fencing token: every write acquisition of the
        name, by any client, gets a larger one.  L{None} otherwise.
        """
        return self._fencingToken

    def readerAcquire(self) -> Deferred[RedisReadersWriterLock]:
        """
        Acquire a read hold.

        @return: a L{Deferred} that fires with the lock once granted: when no writer, of any
            client, holds or waits.  Cancel it to give up waiting.
        """
        return self._acquire(False, True)

    def writerAcquire(self) -> Deferred[RedisReadersWriterLock]:
        """
        Acquire the write hold.

        @return: a L{Deferred} that fires with the lock once this object holds it alone, after
            the holders and the writers that came before.  Cancel it to give up waiting.
        """
        return self._acquire(True, True)

    def tryReaderAcquire(self) -> Deferred[bool]:
        """
        Take a read hold if no writer holds or waits; never wait.

        @return: a L{Deferred} of whether the hold was taken.
        """
        return self._acquire(False, False)

    def tryWriterAcquire(self) -> Deferred[bool]:
        """
        Take the write hold if nobody holds or waits; never wait.

        @return: a L{Deferred} of whether the hold was taken.
        """
        return self._acquire(True, False)

    def readerRelease(self) -> Deferred[None]:
        """
        Give back one read hold of this object.

        @return: a L{Deferred} that fires once Redis has released it, or fails with
            L{LockLostError} if it was lost.
        @raise LockNotHeldError: if this object holds no read hold (nor lost one).
        """
        return self._release(False)

    def writerRelease(self) -> Deferred[None]:
        """
        Give back the write hold.

        @return: a L{Deferred} that fires once Redis has released it, or fails with
            L{LockLostError} if it was lost.
        @raise LockNotHeldError: if this object does not hold the write hold (nor lost it).
        """
        return self._release(True)

    def writerDowngrade(self) -> Deferred[RedisReadersWriterLock]:
        """
        Turn the write hold, atomically, into a read hold, to be released by L{readerRelease};
        waiting readers of every client then go in, unless a writer waits.

        No upgrade, as with the local lock: two readers upgrading at once would wait for each
        other for ever.

        @return: a L{Deferred} that fires with the lock once Redis has downgraded the hold, or
            fails with L{LockLostError} if it was lost.
        @raise LockNotHeldError: if this object does not hold the write hold.
        """
        holdId = self._writerId()
        if holdId is None:
            raise LockNotHeldError(f"writerDowngrade() called, but {self!r} does not write")
        self._holds[holdId] = False
        self._fencingToken = None

        def downgraded(held: int, sent: float) -> RedisReadersWriterLock:
            if not held or holdId not in self._holds:
                self._forget(holdId)
                raise LockLostError(f"writerDowngrade() of {self!r}: the write hold was lost")
            self._extend(holdId, sent)
            return self

        return self._locks._run(self._command(b"d", holdId), downgraded)

    def statistics(self) -> Deferred[LockStatistics]:
        """
        @return: a L{Deferred} of a snapshot: the readers, the writer and the waiting writers of
            every client, and the readers waiting in this object.
        """
        readersWaiting = self._waiters()[0]

        def made(reply: list[int], sent: float) -> LockStatistics:
            return LockStatistics(reply[0], bool(reply[1]), readersWaiting, reply[2])

        return self._locks._run(self._command(b"s"), made)

    def __repr__(self) -> str:
        readers = sum(not w for w in self._holds.values())
        waiting = "{}r/{}w".format(*self._waiters())
        return (
            f"<{type(self).__name__} {self.name!r} readers={readers} writing={self.isWriting}"
            f" waiting={waiting} lease={self.lease}>"
        )

    def _waiters(self) -> tuple[int, int]:
        """
        @return: how many readers and writers of this object wait (tries do not).
        """
        writers = sum(a.queue and a.writer for a in self._waiting.values())
        return sum(a.queue for a in self._waiting.values()) - writers, writers

    def _command(self, op: bytes, *ids: str) -> _Command:
        """
        @return: the run of the script for the one-letter operation C{op} on C{ids}.
        """
        if len(ids) == 1:
            # Every acquire and release: half the time of the general case (0.6 µs, 1.1 µs).
            return _Command(b"%s$%d\r\n%s\r\n" % (self._heads[op], len(ids[0]), ids[0].encode()))
        # Hold ids are ASCII: their length in characters is their length in bytes.
        tail = "".join([f"${len(i)}\r\n{i}\r\n" for i in ids]).encode()
        return _Command(self._head(op, len(ids)) + tail)

    def _head(self, op: bytes, ids: int) -> bytes:
        return b"*%d\r\n%s$1\r\n%s\r\n" % (self._prefixArgs + 1 + ids, self._prefix, op)

    def _writerId(self) -> str | None:
        if self._fencingToken is None:
            return None
        return next(holdId for holdId, writer in self._holds.items() if writer)

    # Acquiring

    def _acquire(self, writer: bool, queue: bool) -> Deferred[Any]:
        if self._locks._closed:
            return fail(_connectionError(f"{self!r}: RedisLocks disconnected"))
        a = _Acquire(self._locks._newId(), writer, queue, self._cancel)
        self._waiting[a.id] = a
        self._try(a)
        return a.deferred

    def _try(self, a: _Acquire) -> None:
        a.inFlight = True
        a.again = False
        op = (b"w" if a.queue else b"t") if a.writer else b"r"
        self._locks._run(self._command(op, a.id), self._tried, a).addErrback(self._tryFailed, a)

    def _tried(self, reply: int, sent: float, a: _Acquire) -> None:
        a.inFlight = False
        if a.deferred.called:
            # Cancelled, or failed by disconnect(), which sent its removal.  That may have run
            # before this try, sent again after reloading the script: remove it again.
            if reply > 0 or a.writer:
                self._remove(a.id)
            return
        if reply > 0:
            del self._waiting[a.id]
            self._holds[a.id] = a.writer
            self._deadlines[a.id] = sent + self.lease
            if a.writer:
                self._fencingToken = reply
            self._watch()
            a.deferred.callback(self if a.queue else True)
        elif not a.queue:
            del self._waiting[a.id]
            a.deferred.callback(False)
        else:
            a.waited = True
            if reply < 0:
                self._retryAfter((-1 - reply) / 1000)
            if a.again:
                self._try(a)
            else:
                self._watch()

    def _tryFailed(self, failure: Failure, a: _Acquire) -> None:
        a.inFlight = False
        if a.deferred.called:
            return
        if a.waited and not self._locks._closed and _isConnectionError(failure):
            # A waiter keeps waiting through a lost connection: the next try waits for Redis.
            self._try(a)
            return
        self._waiting.pop(a.id, None)
        # The try may have been granted, or queued this writer, before the failure.
        self._remove(a.id)
        a.deferred.errback(failure)

    def _cancel(self, a: _Acquire) -> None:
        self._waiting.pop(a.id, None)
        if a.writer or a.inFlight:
            self._remove(a.id)

    def _retry(self, holdId: str | None = None) -> None:
        """
        Try again the waiter C{holdId}, if it is one of this object's, or every waiter if
        L{None}: a hold or a place has gone.
        """
        if holdId is None:
            waiters = list(self._waiting.values())
        else:
            one = self._waiting.get(holdId)
            waiters = [] if one is None else [one]
        for a in waiters:
            if a.inFlight:
                a.again = True
            else:
                self._try(a)

    def _retryAfter(self, delay: float) -> None:
        """
        Try every waiter again in C{delay} seconds unless sooner, when the first lease may run
        out: a client that died releases nothing and publishes nothing.
        """
        # A few milliseconds late, so that the lease has surely run out in Redis.
        when = self._clock.seconds() + delay + 0.005
        timer = self._retryTimer
        if timer is not None and timer.active():
            if timer.getTime() <= when:
                return
            timer.cancel()
        self._retryTimer = self._clock.callLater(when - self._clock.seconds(), self._retryNow)

    def _retryNow(self) -> None:
        self._retryTimer = None
        self._retry()

    # Releasing

    def _release(self, writer: bool) -> Deferred[None]:
        for holdId, w in self._holds.items():
            if w == writer:
                self._forget(holdId)
                command = self._command(b"y" if writer else b"x", holdId)
                return self._locks._run(command, self._released, writer)
        if self._lostHolds[writer]:
            self._lostHolds[writer] -= 1
            return fail(self._lostError(writer))
        raise LockNotHeldError(
            f"{self._releaseCall(writer)} called, but {self!r} holds no"
            f" {'write' if writer else 'read'} hold"
        )

    def _released(self, held: int, sent: float, writer: bool) -> None:
        if not held:
            raise self._lostError(writer)

    def _lostError(self, writer: bool) -> LockLostError:
        return LockLostError(f"{self._releaseCall(writer)}: the hold of {self!r} was lost")

    @staticmethod
    def _releaseCall(writer: bool) -> str:
        return "writerRelease()" if writer else "readerRelease()"

    def _remove(self, holdId: str) -> Deferred[None]:
        """
        Drop the hold or place C{holdId} in Redis, for nobody's sake: if that fails, its lease
        runs out.
        """
        d = self._locks._run(self._command(b"x", holdId), lambda reply, sent: None)
        return d.addErrback(self._logUnlessConnectionError, "give up a hold or place")

    def _logUnlessConnectionError(self, failure: Failure, what: str) -> None:
        # Redis away is no news: a lease runs out, or the next renewal tick tries again.
        if not _isConnectionError(failure):
            _log.failure("{lock!r} could not {what}", failure, lock=self, what=what)

    def _forget(self, holdId: str) -> None:
        if self._holds.pop(holdId, False):
            self._fencingToken = None
        self._deadlines.pop(holdId, None)

    # Leases

    def _watch(self) -> None:
        """
        Renew the leases every lease/3 while there is anything to renew, and watch the deadline
        of the earliest.

        Timers are left to lapse, not cancelled, when there is nothing left to watch: after the
        first, an uncontended acquire and release set no timer (measured: setting and cancelling
        two timers cost 6 µs, of about 380 µs of client CPU time per pair).
        """
        if self._locks._closed:
            return
        if (
            self._renewal is None
            and not self._renewing
            and (self._holds or any(a.writer and a.waited for a in self._waiting.values()))
        ):
            self._renewal = self._clock.callLater(self.lease / 3, self._renew)
        if self._deadlines:
            # A timer that fires early (a renewal pushed the deadline back) comes back here.
            first = min(self._deadlines.values())
            if self._expiry is None or self._expiry.getTime() > first:
                if self._expiry is not None:
                    self._expiry.cancel()
                delay = max(0.0, first - self._clock.seconds())
                self._expiry = self._clock.callLater(delay, self._expire)

    def _renew(self) -> None:
        self._renewal = None
        held = list(self._holds)
        placed = [a.id for a in self._waiting.values() if a.writer and a.waited]
        if not held and not placed:
            return  # idle: _watch sets the timer again when needed
        self._renewing = True

        def renewed(gone: list[str], sent: float) -> None:
            lostIds = set(gone)
            for holdId in held:
                if holdId not in self._holds:
                    continue
                if holdId in lostIds:
                    self._loseHold(holdId)
                else:
                    self._extend(holdId, sent)
            for holdId in placed:
                a = self._waiting.get(holdId)
                if holdId in lostIds and a is not None and not a.inFlight:
                    self._try(a)  # its place ran out: queue again, at the back

        def done(_: object) -> None:
            # Failed or not, the next tick renews; _expire drops what runs out meanwhile.
            self._renewing = False
            self._watch()

        d = self._locks._run(self._command(b"n", *held, *placed), renewed)
        d.addErrback(self._logUnlessConnectionError, "renew its leases").addCallback(done)

    def _extend(self, holdId: str, sent: float) -> None:
        if holdId in self._deadlines:
            self._deadlines[holdId] = max(self._deadlines[holdId], sent + self.lease)

    def _expire(self) -> None:
        self._expiry = None
        now = self._clock.seconds()
        for holdId, deadline in list(self._deadlines.items()):
            if deadline <= now:
                self._loseHold(holdId)
        self._watch()

    def _loseHold(self, holdId: str) -> Deferred[None]:
        """
        Give up the hold C{holdId} as lost, here and in Redis, and say so.

        @return: its removal from Redis.
        """
        writer = self._holds[holdId]
        self._forget(holdId)
        self._lostHolds[writer] += 1
        removal = self._remove(holdId)
        if self._lost is not None:
            try:
                self._lost(self, writer)
            except Exception:
                _log.failure("the lost callback of {lock!r} failed", lock=self)
        return removal

    def _close(self) -> list[Deferred[None]]:
        """
        Stop every timer, fail the pending acquires (tries too) and give up their places, and the
        holds, which are then lost: for L{RedisLocks.disconnect}.

        @return: the removals sent.
        """
        for timer in (self._renewal, self._expiry, self._retryTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._renewal = self._expiry = self._retryTimer = None
        self._deadlines.clear()
        waiting = list(self._waiting.values())
        self._waiting.clear()
        removals = [self._remove(a.id) for a in waiting if a.writer or a.inFlight]
        for a in waiting:
            a.deferred.errback(_connectionError(f"{self!r}: RedisLocks disconnected"))
        removals += [self._loseHold(holdId) for holdId in list(self._holds)]
        return removals


class RedisLockSide(_Side[RedisReadersWriterLock]):
    """
    One side, reader or writer, of a L{RedisReadersWriterLock}: C{lock.reader} or
    C{lock.writer}, as L{LockSide<txrwlock.LockSide>} of the local lock, with C{async with} and
    L{run}; the release waits for Redis.  So L{run}'s Deferred fires once the release is done,
    and fails with L{LockLostError} if C{f} succeeded but the hold was lost meanwhile.
    """

    __slots__ = ()

    def acquire(self) -> Deferred[RedisReadersWriterLock]:
        """
        Acquire this side: a L{Deferred} that fires with the lock once granted.
        """
        return self._lock._acquire(self._writer, True)

    def tryAcquire(self) -> Deferred[bool]:
        """
        Take this side if that needs no waiting: a L{Deferred} of whether it was taken.
        """
        return self._lock._acquire(self._writer, False)

    def release(self) -> Deferred[None]:
        """
        Release this side: a L{Deferred} that fires once Redis has released it.

        @raise LockNotHeldError: if this side is not held.
        """
        return self._lock._release(self._writer)

    def _call(self, f: Callable[..., Any], args: Any, kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred.fromCoroutine(self._result(f, args, kwargs))
        return d.addBoth(self._releaseAndPass)

    @staticmethod
    async def _result(f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        result = f(*args, **kwargs)
        if isawaitable(result):
            result = await result
        return result

    def _releaseAndPass(self, result: _T) -> Deferred[_T]:
        released = self.release()
        if isinstance(result, Failure):
            # f's failure is the news; a lost hold on top of it is only logged.
            released.addErrback(lambda f: _log.failure("release in run()", f))
        return released.addCallback(lambda _: result)

    def __aexit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> Deferred[Literal[False]]:
        released = self.release()
        if excValue is not None:
            released.addErrback(lambda f: _log.failure("release in async with", f))
        return released.addCallback(lambda _: False)
