# -*- test-case-name: tests.test_redis_client -*-
"""
The Redis client boundary of L{txrwlock.redis}, the only module that talks to Redis: a small
RESP2 client on Twisted (L{_RedisProtocol}), a connection kept up through every fault
(L{_Link}), Sentinel discovery (L{_Sentinels}), and the client the locks use (L{RedisClient}).

Our own client, as redis-py and Redisson own theirs: timeouts, reconnection and encoding are
exactly what the locks need, and the library's only runtime dependency stays Twisted.  No reactor
is imported here: the caller passes one.

Every connection is watched by one timer (see L{_RedisProtocol}): a command unanswered after
C{replyTimeout} seconds drops the connection, and a connection idle for C{healthCheckInterval}
seconds is sent a C{PING}.  So a connection that dies silently is noticed, and replaced, at most
C{healthCheckInterval + replyTimeout} seconds after its last reply.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    FirstError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from txrwlock._remote import _Clock, _Timer

__all__ = ["RedisClient", "RedisConnectionError", "RedisError", "bulk", "encode", "openClient"]

_T = TypeVar("_T")
# An IStreamClientEndpoint: Twisted's interfaces do not type-check as classes.
_Endpoint = Any
_log = Logger()

# Replies that say "not now": the command did not run, and will once Redis has loaded its data
# (LOADING), a script has ended (BUSY), a primary is back (MASTERDOWN, TRYAGAIN), or, for
# READONLY, once we reach the primary again (a failover made ours a replica).  Retried, with
# backoff, never surfaced.
_RETRIED = frozenset({"LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN"})

# Backoff between reconnections and retries: 50 ms doubling to 1 s, each delay drawn between half
# and all of that.  1 s at most, so that a hold renewed every lease / 3 seconds survives an outage
# of a lease less a second; the jitter spreads the clients a restart disconnected all at once.
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


def _backoff(attempt: int) -> float:
    """
    @return: seconds to wait before the retry that follows C{attempt} failures.
    """
    return min(_BACKOFF_FIRST * 2.0 ** min(attempt, 16), _BACKOFF_MAX) * random.uniform(0.5, 1.0)


class RedisError(Exception):
    """
    An error reply of Redis; its string is Redis's text, such as C{"WRONGTYPE Operation against
    a key holding the wrong kind of value"}.
    """

    @property
    def code(self) -> str:
        """
        The error's first word, such as C{"WRONGTYPE"} or C{"ERR"}.
        """
        return str(self).split(" ", 1)[0]


class RedisConnectionError(ConnectionError):
    """
    Redis could not be reached: the first connection failed, the connection of a command in
    flight was lost (or timed out), or the client was closed.
    """


# Encoding


def bulk(*args: bytes | str | int) -> bytes:
    """
    @return: C{args} encoded as RESP bulk strings (a command without its C{*N} header): a lock
        encodes the start of its commands once with this.
    """
    parts = [a if type(a) is bytes else str(a).encode() for a in args]
    return b"".join([b"$%d\r\n%s\r\n" % (len(p), p) for p in parts])


def encode(*args: bytes | str | int) -> bytes:
    """
    @return: the command C{args} (its name and arguments) encoded in RESP, as L{RedisClient.run}
        takes it.  Strings are encoded in UTF-8.
    """
    return b"*%d\r\n%s" % (len(args), bulk(*args))


# Decoding


class _IncompleteError(Exception):
    """
    The buffer ends within a reply.
    """


def _parse(data: bytes, pos: int) -> tuple[Any, int]:
    """
    Parse the RESP2 reply at C{data[pos:]}.  Strings are decoded from UTF-8 where they can be.

    @return: the reply (an L{int}, L{str}, L{bytes}, L{None}, L{RedisError} or a L{list} of
        them) and the position after it.
    @raise _IncompleteError: if C{data} ends within it.
    @raise ValueError: if it is not RESP2.
    """
    end = data.find(b"\r\n", pos)
    if end < 0:
        raise _IncompleteError()
    kind = data[pos]
    if kind == 58:  # ':'
        return int(data[pos + 1 : end]), end + 2
    if kind == 36:  # '$'
        size = int(data[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(data) < stop + 2:
            raise _IncompleteError()
        value = data[end + 2 : stop]
        try:
            return value.decode(), stop + 2
        except UnicodeDecodeError:
            return value, stop + 2
    if kind == 42:  # '*'
        size = int(data[pos + 1 : end])
        pos = end + 2
        if size < 0:
            return None, pos
        items = []
        for _ in range(size):
            item, pos = _parse(data, pos)
            items.append(item)
        return items, pos
    if kind == 43:  # '+'
        return data[pos + 1 : end].decode(errors="replace"), end + 2
    if kind == 45:  # '-'
        return RedisError(data[pos + 1 : end].decode(errors="replace")), end + 2
    raise ValueError(f"not a RESP2 reply: {data[pos : pos + 20]!r}")


# One connection


class _RedisProtocol(Protocol):
    """
    One connection to Redis, speaking RESP2, commands pipelined: each reply goes to the oldest
    command still waiting for one.  On the pub/sub connection (C{onMessage} set), the messages
    Redis pushes go to C{onMessage} instead.

    One timer watches the connection: it is dropped when the oldest command has waited
    C{replyTimeout} seconds for its reply, and sent a C{PING} when no reply has come for
    C{healthCheckInterval} seconds.  So it is noticed dead within C{healthCheckInterval +
    replyTimeout} seconds of its last reply.
    """

    # Invariants:
    #   - _pending has, oldest first, each command written and not answered: its Deferred and
    #     the time it was written.  Every one fires: with its reply, or, when the connection is
    #     lost, with a RedisConnectionError.
    #   - While connected, _timer is due no later than the reply deadline of the oldest pending
    #     command, nor than the next health check, nor than a reply timeout from now when none
    #     pend (so no command sent later can have an earlier deadline).

    onMessage: Callable[[str, Any], None] | None = None
    transport: Any

    def __init__(self, clock: _Clock, replyTimeout: float, healthCheckInterval: float) -> None:
        self._clock = clock
        self._replyTimeout = replyTimeout
        self._healthCheckInterval = healthCheckInterval
        self._pending: deque[tuple[Deferred[Any], float]] = deque()
        self._buffer = b""
        self._lastReply = 0.0
        self._timer: _Timer | None = None
        self._why: str | None = None
        self.lost: Deferred[None] = Deferred()

    def send(self, command: bytes, sent: float) -> Deferred[Any]:
        """
        Write C{command}, encoded, sent at C{sent}.

        @return: a L{Deferred} of its reply, failing with L{RedisError} for an error reply and
            with L{RedisConnectionError} if the connection is lost first.
        """
        d: Deferred[Any] = Deferred()
        self._pending.append((d, sent))
        self.transport.write(command)
        return d

    def abort(self, why: str) -> None:
        """
        Drop the connection at once; the commands pending fail with C{why}.
        """
        if self._why is None:
            self._why = why
        self.transport.abortConnection()

    def connectionMade(self) -> None:
        # Left on, Nagle's algorithm holds a command back while an earlier one is not
        # acknowledged, and Redis acknowledges with its reply.  Only for TCP (under TLS too: the
        # wrapper passes both calls on): Twisted 22.10's UNIX transport has the method, and its
        # setsockopt fails.
        if isinstance(self.transport.getPeer(), (IPv4Address, IPv6Address)):
            self.transport.setTcpNoDelay(True)
        self._lastReply = self._clock.seconds()
        self._check()

    def dataReceived(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        pos = 0
        try:
            while pos < len(data):
                reply, pos = _parse(data, pos)
                self._reply(reply)
        except _IncompleteError:
            pass
        except ValueError as e:
            self.abort(f"Redis sent what is not RESP2: {e}")
        self._buffer = data[pos:]

    def _reply(self, reply: Any) -> None:
        self._lastReply = self._clock.seconds()
        if self.onMessage is not None and type(reply) is list and reply[:1] == ["message"]:
            self.onMessage(reply[1], reply[2])
        elif not self._pending:
            self.abort(f"Redis sent a reply to no command: {reply!r}")
        elif type(reply) is RedisError:
            self._pending.popleft()[0].errback(reply)
        else:
            self._pending.popleft()[0].callback(reply)

    def _check(self) -> None:
        """
        Drop the connection if its oldest command has waited too long for its reply, send a
        C{PING} if it has been idle too long, and come back when the next of these is due.
        """
        now = self._clock.seconds()
        if self._pending:
            due = self._pending[0][1] + self._replyTimeout
            if due <= now:
                self.abort(f"no reply from Redis in {self._replyTimeout} s")
                return
        else:
            due = self._lastReply + self._healthCheckInterval
            if due <= now:
                self.send(b"*1\r\n$4\r\nPING\r\n", now).addErrback(lambda _: None)
                due = now + self._replyTimeout
            due = min(due, now + self._replyTimeout)
        self._timer = self._clock.callLater(due - now, self._check)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        error = RedisConnectionError(
            self._why or f"connection to Redis lost: {reason.getErrorMessage()}"
        )
        pending, self._pending = self._pending, deque()
        # Told first, so that what the failures below resend waits for the next connection.
        self.lost.callback(None)
        for d, _ in pending:
            d.errback(error)


@dataclass(frozen=True)
class _Settings:
    """
    How to reach Redis and how long to wait for it, shared by every connection of a client.
    """

    clock: Any
    dbid: int
    password: str | None
    username: str | None
    connectTimeout: float
    replyTimeout: float
    healthCheckInterval: float

    def protocol(self) -> _RedisProtocol:
        return _RedisProtocol(self.clock, self.replyTimeout, self.healthCheckInterval)

    def hello(self) -> list[bytes]:
        """
        @return: the commands that open a connection: C{AUTH}, C{SELECT} (not for database 0),
            C{PING}.
        """
        hello = []
        if self.password is not None:
            user = () if self.username is None else (self.username,)
            hello.append(encode("AUTH", *user, self.password))
        if self.dbid:
            hello.append(encode("SELECT", self.dbid))
        # Answered once Redis has taken the connection: past maxclients, say.
        hello.append(encode("PING"))
        return hello

    async def connect(self, endpoint: _Endpoint) -> _RedisProtocol:
        """
        @return: a new connection through C{endpoint}, made within C{connectTimeout} seconds.
        """
        connecting = endpoint.connect(Factory.forProtocol(self.protocol))
        connecting.addTimeout(self.connectTimeout, self.clock)
        return await connecting  # type: ignore[no-any-return]


# Where Redis is


class _Fixed:
    """
    Redis at one endpoint.
    """

    checkRole = False

    def __init__(self, endpoint: _Endpoint, description: str) -> None:
        self._endpoint = endpoint
        self._description = description

    def endpoint(self, closed: Callable[[], bool]) -> Deferred[_Endpoint]:
        return succeed(self._endpoint)

    def __str__(self) -> str:
        return self._description


class _Sentinels:
    """
    The primary of a Sentinel service: each connection asks the sentinels in turn where it is,
    and checks that what it reaches is a primary (C{ROLE}), since a sentinel may lag.
    """

    checkRole = True

    def __init__(self, settings: _Settings, sentinels: Sequence[tuple[str, int]], service: str):
        self._settings = settings
        self._sentinels = list(sentinels)
        self._service = service

    def endpoint(self, closed: Callable[[], bool]) -> Deferred[_Endpoint]:
        """
        @param closed: whether the connection asking was closed: then no sentinel is asked next.
        """
        return Deferred.fromCoroutine(self._ask(closed))

    async def _ask(self, closed: Callable[[], bool]) -> _Endpoint:
        clock = self._settings.clock
        why = []
        for i, (host, port) in enumerate(self._sentinels):
            try:
                where = await self._askOne(HostnameEndpoint(clock, host, port))
            except Exception as e:  # that sentinel is away, or refuses: ask the next
                if closed():
                    # Cancelled by close(), whatever the error says: HostnameEndpoint says
                    # ConnectingCancelledError, or, cancelled while it resolves the name,
                    # DNSLookupError; taken for a sentinel away, either asked the next after
                    # the close.
                    raise
                why.append(f"{host}:{port}: {e}")
                continue
            if isinstance(where, list) and len(where) == 2:
                # The next connection asks this sentinel first.
                self._sentinels.insert(0, self._sentinels.pop(i))
                return HostnameEndpoint(clock, where[0], int(where[1]))
            why.append(f"{host}:{port}: no primary")
        raise RedisConnectionError(f"no sentinel knows the primary of {self._service!r}: {why}")

    async def _askOne(self, endpoint: _Endpoint) -> Any:
        protocol = await self._settings.connect(endpoint)
        try:
            now = self._settings.clock.seconds()
            ask = encode("SENTINEL", "get-master-addr-by-name", self._service)
            return await protocol.send(ask, now)
        finally:
            protocol.transport.loseConnection()

    def __str__(self) -> str:
        where = ",".join(f"{host}:{port}" for host, port in self._sentinels)
        return f"sentinel:{self._service}@{where}"


# A connection kept up


class _Link:
    """
    One connection to Redis, kept up: made again whenever it is lost, with backoff, for ever
    once it has been made once.  Callers wait for it, in order, while it is down.
    """

    # Invariants:
    #   - protocol is the connection ready for commands (greeted), or None.
    #   - _waiting has, in order, the Deferreds of the callers waiting for a ready connection.
    #   - Unless closed, while protocol is None an attempt (_attempt) runs or is due (_timer).

    def __init__(
        self,
        settings: _Settings,
        target: _Fixed | _Sentinels,
        greet: Callable[[_RedisProtocol], Deferred[Any]],
        onReady: Callable[[_RedisProtocol], object] = lambda protocol: None,
    ) -> None:
        """
        @param greet: sends what opens a connection, past C{AUTH} and C{SELECT}; its Deferred
            fails if the connection is not usable.
        @param onReady: called with each connection once greeted, before the callers waiting.
        """
        self._settings = settings
        self._target = target
        self._greet = greet
        self._onReady = onReady
        self._opening: _RedisProtocol | None = None
        self._since = 0.0
        self.protocol: _RedisProtocol | None = None
        self.first: Deferred[None] = Deferred()
        self.firstFailure: Failure | None = None
        self._waiting: dict[Deferred[_RedisProtocol], None] = {}
        self._attempt: Deferred[Any] | None = None
        self._timer: _Timer | None = None
        self._failures = 0
        self._closed = False
        self._connect()

    def ready(self) -> Deferred[_RedisProtocol]:
        """
        @return: a L{Deferred} of the connection, once ready; failing with
            L{RedisConnectionError} if the link is closed first.
        """
        if self.protocol is not None:
            return succeed(self.protocol)
        if self._closed:
            return fail(RedisConnectionError(f"client of Redis at {self._target} closed"))
        d: Deferred[_RedisProtocol] = Deferred(lambda d: self._waiting.pop(d, None))
        self._waiting[d] = None
        return d

    def drop(self, why: str) -> None:
        """
        Drop the connection, and make a new one: it may reach another server (a failover).
        """
        if self.protocol is not None:
            self.protocol.abort(why)

    def close(self) -> Deferred[None]:
        """
        Close the connection and stop reconnecting; fail the callers waiting.

        @return: a L{Deferred} that fires once the connection is closed.
        """
        self._closed = True
        protocol = self.protocol or self._opening
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        waiting, self._waiting = self._waiting, {}
        for d in waiting:
            d.errback(RedisConnectionError(f"client of Redis at {self._target} closed"))
        if protocol is None or protocol.lost.called:
            return succeed(None)
        lost: Deferred[None] = Deferred()
        protocol.lost.addCallback(lost.callback)
        protocol.transport.loseConnection()
        return lost

    def _connect(self) -> None:
        self._timer = None
        self._attempt = Deferred.fromCoroutine(self._open())
        self._attempt.addCallbacks(self._ready, self._failed)

    async def _open(self) -> _RedisProtocol:
        endpoint = await self._target.endpoint(lambda: self._closed)
        protocol = self._opening = await self._settings.connect(endpoint)
        try:
            now = self._settings.clock.seconds()
            hello = [protocol.send(command, now) for command in self._settings.hello()]
            if self._target.checkRole:
                hello.append(protocol.send(encode("ROLE"), now))
            greeted = [*hello, self._greet(protocol)]
            replies = await gatherResults(greeted, consumeErrors=True).addErrback(_firstError)
            if self._target.checkRole and replies[-2][0] != "master":
                raise RedisConnectionError(f"{self._target} gave a server that is a replica")
            if protocol.lost.called:
                raise RedisConnectionError("connection to Redis lost as it opened")
        except BaseException:
            protocol.transport.abortConnection()
            raise
        finally:
            self._opening = None
        return protocol

    def _ready(self, protocol: _RedisProtocol) -> None:
        self._attempt = None
        self._since = self._settings.clock.seconds()
        self.protocol = protocol
        protocol.lost.addCallback(self._lost, protocol)
        self._onReady(protocol)
        if not self.first.called:
            self.first.callback(None)
        waiting, self._waiting = self._waiting, {}
        for d in waiting:
            d.callback(protocol)

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        if self._closed:
            return
        if not self.first.called:
            if isinstance(failure.value, RedisError) and failure.value.code not in _RETRIED:
                # AUTH or SELECT refused: a wrong setting, said at once.
                self.first.errback(failure)
                return
            self.firstFailure = failure
        else:
            _log.info(
                "Connection to Redis at {target} failed, retrying: {why}",
                target=self._target,
                why=failure.getErrorMessage(),
            )
        self._retry()

    def _retry(self) -> None:
        self._failures += 1
        self._timer = self._settings.clock.callLater(_backoff(self._failures), self._connect)

    def _lost(self, _: object, protocol: _RedisProtocol) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        if self._closed:
            return
        if self._settings.clock.seconds() - self._since < _BACKOFF_MAX:
            # Lost as soon as made: back off, lest a server that drops every connection at once
            # keep us reconnecting in a tight loop.
            self._retry()
        else:
            self._failures = 0
            self._connect()


def _firstError(failure: Failure) -> Failure:
    """
    @return: the failure of the first Deferred that failed in a L{gatherResults}.
    """
    error = failure.value
    return error.subFailure if isinstance(error, FirstError) else failure


# The client


class RedisClient:
    """
    What the locks use of Redis: a command connection and a pub/sub connection, each kept up by
    a L{_Link}, and the locks' scripts, loaded on every new connection and whenever Redis says it
    lost them (C{NOSCRIPT}).

    B{Commands.}  A command made while Redis is away waits for the connection.  A command in
    flight when the connection is lost, or not answered within C{replyTimeout} seconds (the
    connection is then dropped and made again), fails with L{RedisConnectionError}.  The replies
    C{LOADING}, C{BUSY}, C{READONLY} (the connection is then made again, to the primary under
    Sentinel), C{MASTERDOWN} and C{TRYAGAIN} are retried with backoff, never returned.

    B{Pub/sub.}  Subscriptions are counted per channel: a channel is subscribed while it has a
    listener.  After the pub/sub connection is made again, every listener is called with
    L{None}: messages may have been missed.
    """

    # Invariants:
    #   - _channels maps each channel with a listener to its listeners and how many times each
    #     subscribed; the pub/sub connection, when ready, is subscribed to exactly these.
    #   - _retries has the Deferreds of the commands waiting to be retried.

    def __init__(
        self, settings: _Settings, target: _Fixed | _Sentinels, scripts: Collection[str]
    ) -> None:
        """
        Use L{openClient}.
        """
        self.reactor: _Clock = settings.clock
        self.dbid = settings.dbid
        self._loads = [encode("SCRIPT", "LOAD", script) for script in scripts]
        self._channels: dict[str, dict[Callable[[Any], object], int]] = {}
        self._retries: dict[Deferred[None], None] = {}
        self._target = target
        self._commands = _Link(settings, target, self._loadScripts)
        self._greeted: list[str] = []
        self._subscriber = _Link(settings, target, self._resubscribe, self._resubscribed)

    def run(self, command: bytes, then: Callable[..., _T], *args: object) -> Deferred[_T]:
        """
        Run C{command} once connected.

        @param command: the command, encoded (L{encode}).
        @param then: called with the reply, the time the command was sent (taken before it is
            written: a lease it sets in Redis runs out after that time plus the lease), and
            C{args}.  (A callback of its own, not one more on the reply's: 1 µs less per
            command.)
        @return: a L{Deferred} of what C{then} returns, failing with L{RedisError} for an error
            reply, with L{RedisConnectionError} if the command was in flight when the connection
            was lost.
        """
        return self._run(command, then, args, 0, False)

    def execute(self, *args: bytes | str | int) -> Deferred[Any]:
        """
        Run the command C{args} (its name and arguments) once connected, as L{run}.

        @return: a L{Deferred} of its reply.
        """
        return self._run(encode(*args), _reply, (), 0, False)

    def subscribe(self, channel: str, listener: Callable[[Any], object]) -> None:
        """
        Call C{listener} with each message published on C{channel}, and with L{None} whenever
        messages may have been missed (once subscribed, after each reconnection).  A listener
        subscribed N times is called once, until unsubscribed N times.
        """
        listeners = self._channels.get(channel)
        if listeners is None:
            listeners = self._channels[channel] = {}
            if self._subscriber.protocol is not None:
                self._subscribeNow(self._subscriber.protocol, channel)
        listeners[listener] = listeners.get(listener, 0) + 1

    def unsubscribe(self, channel: str, listener: Callable[[Any], object]) -> None:
        """
        Undo one L{subscribe} of C{listener} to C{channel}; unsubscribe from the channel when it
        has no listener left.

        @raise ValueError: if C{listener} is not subscribed to C{channel}.
        """
        listeners = self._channels.get(channel, {})
        if listener not in listeners:
            raise ValueError(f"unsubscribe(): {listener!r} does not listen to {channel!r}")
        listeners[listener] -= 1
        if listeners[listener]:
            return
        del listeners[listener]
        if not listeners:
            del self._channels[channel]
            if self._subscriber.protocol is not None:
                self._unsubscribe(self._subscriber.protocol, channel)

    def loadScripts(self) -> Deferred[None]:
        """
        Load the scripts in Redis again.
        """
        loads = [self._run(load, _reply, (), 0, False) for load in self._loads]
        loaded = gatherResults(loads, consumeErrors=True).addErrback(_firstError)
        return loaded.addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        """
        Close both connections and stop them reconnecting; the commands waiting for a connection
        or a retry fail with L{RedisConnectionError}.
        """
        for d in list(self._retries):
            d.cancel()
        closed = gatherResults([self._commands.close(), self._subscriber.close()])
        return closed.addCallback(lambda _: None)

    def __repr__(self) -> str:
        state = "connected" if self._commands.protocol is not None else "disconnected"
        return f"<RedisClient {self._target} db={self.dbid} {state}>"

    # Commands

    def _run(
        self,
        command: bytes,
        then: Callable[..., _T],
        args: tuple[object, ...],
        attempt: int,
        reloaded: bool,
    ) -> Deferred[_T]:
        """
        Run C{command}, as L{run}, after C{attempt} tries retried, having C{reloaded} the
        scripts for it or not.
        """
        protocol = self._commands.protocol
        if protocol is None:
            ready = self._commands.ready()
            return ready.addCallback(lambda _: self._run(command, then, args, attempt, reloaded))
        sent = self.reactor.seconds()
        return protocol.send(command, sent).addCallbacks(
            then,
            self._failed,
            callbackArgs=(sent, *args),
            errbackArgs=(command, then, args, attempt, reloaded),
        )

    def _failed(
        self,
        failure: Failure,
        command: bytes,
        then: Callable[..., _T],
        args: tuple[object, ...],
        attempt: int,
        reloaded: bool,
    ) -> Deferred[_T] | Failure:
        error = failure.value
        if not isinstance(error, RedisError):
            return failure
        code = error.code
        if code == "NOSCRIPT" and not reloaded:
            # Redis lost the scripts (SCRIPT FLUSH): load them again, once for this command.
            loaded = self.loadScripts()
            return loaded.addCallback(lambda _: self._run(command, then, args, attempt, True))
        if code not in _RETRIED:
            return failure
        if code == "READONLY":
            self._commands.drop("Redis says it is a replica (READONLY)")
        retry = deferLater(cast(Any, self.reactor), _backoff(attempt), lambda: None)
        self._retries[retry] = None

        def again(_: object) -> Deferred[_T]:
            del self._retries[retry]
            return self._run(command, then, args, attempt + 1, reloaded)

        def cancelled(failure: Failure) -> Failure:
            del self._retries[retry]
            if isinstance(failure.value, CancelledError):  # by close()
                raise RedisConnectionError(f"client of Redis at {self._target} closed")
            return failure

        return retry.addCallbacks(again, cancelled)

    def _loadScripts(self, protocol: _RedisProtocol) -> Deferred[Any]:
        now = self.reactor.seconds()
        loads = [protocol.send(load, now) for load in self._loads]
        return gatherResults(loads, consumeErrors=True).addErrback(_firstError)

    # Pub/sub

    def _resubscribe(self, protocol: _RedisProtocol) -> Deferred[Any]:
        """
        Subscribe a new pub/sub connection to every channel listened to.
        """
        protocol.onMessage = self._message
        self._greeted = list(self._channels)
        subscribed = [self._subscribe(protocol, c) for c in self._greeted]
        return gatherResults(subscribed, consumeErrors=True).addErrback(_firstError)

    def _resubscribed(self, protocol: _RedisProtocol) -> None:
        """
        The new pub/sub connection is ready: subscribe it to the channels that gained their
        first listener while it was made, unsubscribe it from those that lost their last, and
        tell the listeners of the others that messages may have been missed.
        """
        greeted, self._greeted = self._greeted, []
        for channel in greeted:
            if channel not in self._channels:
                self._unsubscribe(protocol, channel)
        for channel in self._channels.keys() - set(greeted):
            self._subscribeNow(protocol, channel)
        for channel in greeted:
            self._missed(None, channel)

    def _subscribe(self, protocol: _RedisProtocol, channel: str) -> Deferred[Any]:
        return protocol.send(encode("SUBSCRIBE", channel), self.reactor.seconds())

    def _subscribeNow(self, protocol: _RedisProtocol, channel: str) -> None:
        """
        Subscribe the ready pub/sub connection to C{channel}; once subscribed, tell its
        listeners that messages may have been missed.  If the connection is lost first, the
        next subscribes; if Redis refuses (an ACL, say), that is logged and the connection made
        again, which subscribes again, with backoff.
        """
        subscribed = self._subscribe(protocol, channel)
        subscribed.addCallbacks(
            self._missed, self._subscribeFailed, callbackArgs=(channel,), errbackArgs=(protocol,)
        )

    def _subscribeFailed(self, failure: Failure, protocol: _RedisProtocol) -> Failure | None:
        if isinstance(failure.value, RedisError):
            _log.failure("SUBSCRIBE failed on Redis at {target}", failure, target=self._target)
            protocol.abort(f"SUBSCRIBE failed: {failure.value}")
        elif not isinstance(failure.value, RedisConnectionError):
            return failure
        return None

    def _unsubscribe(self, protocol: _RedisProtocol, channel: str) -> None:
        d = protocol.send(encode("UNSUBSCRIBE", channel), self.reactor.seconds())
        d.addErrback(self._unsubscribeFailed)

    def _unsubscribeFailed(self, failure: Failure) -> None:
        if not isinstance(failure.value, RedisConnectionError):
            _log.failure("UNSUBSCRIBE failed on Redis at {target}", failure, target=self._target)

    def _missed(self, _: object, channel: str) -> None:
        self._message(channel, None)

    def _message(self, channel: str, message: Any) -> None:
        for listener in list(self._channels.get(channel, ())):
            listener(message)


def _reply(reply: _T, sent: float) -> _T:
    return reply


def openClient(
    reactor: Any,
    scripts: Collection[str],
    host: str | IStreamClientEndpoint,
    port: int,
    dbid: int,
    password: str | None,
    username: str | None,
    sentinels: Sequence[tuple[str, int]] | None,
    service: str | None,
    connectTimeout: float,
    replyTimeout: float,
    healthCheckInterval: float,
) -> Deferred[RedisClient]:
    """
    Connect to Redis, as L{txrwlock.redis.connect} says, and load C{scripts}.

    @return: a L{Deferred} of the L{RedisClient}, failing with L{RedisConnectionError} if Redis
        cannot be reached in C{connectTimeout} seconds or refuses the password or database.
    """
    for name, value in [
        ("connectTimeout", connectTimeout),
        ("replyTimeout", replyTimeout),
        ("healthCheckInterval", healthCheckInterval),
    ]:
        if not 0 < value < float("inf"):
            raise ValueError(f"connect(): {name} must be positive and finite, not {value!r}")
    if (sentinels is None) != (service is None):
        raise ValueError("connect(): give both sentinels and service, or neither")
    settings = _Settings(
        reactor, dbid, password, username, connectTimeout, replyTimeout, healthCheckInterval
    )
    target: _Fixed | _Sentinels
    if sentinels is not None and service is not None:
        target = _Sentinels(settings, sentinels, service)
    elif not isinstance(host, str):
        target = _Fixed(host, repr(host))
    elif "=" in host or host.startswith("unix:"):
        target = _Fixed(clientFromString(reactor, host), host)  # type: ignore[no-untyped-call]
    else:
        target = _Fixed(HostnameEndpoint(reactor, host, port), f"{host}:{port}")
    client = RedisClient(settings, target, scripts)
    first = gatherResults([client._commands.first, client._subscriber.first], consumeErrors=True)

    def timedOut(result: object, timeout: float) -> None:
        last = client._commands.firstFailure or client._subscriber.firstFailure
        why = "" if last is None else f": {last.getErrorMessage()}"
        raise RedisConnectionError(f"could not connect to Redis at {target} in {timeout} s{why}")

    def failed(failure: Failure) -> Deferred[Any]:
        failure = _firstError(failure)

        def closed(_: object) -> Failure:
            if isinstance(failure.value, RedisError):
                raise RedisConnectionError(
                    f"could not connect to Redis at {target}: {failure.value}"
                )
            return failure

        return client.close().addBoth(closed)

    first.addTimeout(connectTimeout, reactor, onTimeoutCancel=timedOut)
    return first.addCallbacks(lambda _: client, failed)
