# -*- test-case-name: tests.test_redis -*-
"""
The Redis client boundary of L{txrwlock.redis}: connections, reconnection, commands and pub/sub.
The only module that knows txredisapi, imported on the first connection only: txredisapi imports
the global reactor, and importing L{txrwlock.redis} must not.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import cache
from types import SimpleNamespace
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.python.failure import Failure

from txrwlock._remote import _Clock

__all__: list[str] = []

_T = TypeVar("_T")
_P = ParamSpec("_P")


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


class _Listener(Protocol):
    """
    What the pub/sub side tells a lock: who may go now on its channel.
    """

    _channel: str

    def _retry(self, holdId: str | None = None) -> None: ...


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


def isConnectionError(failure: Failure) -> bool:
    """
    @return: whether C{failure} says that Redis is away.
    """
    return isinstance(failure.value, _txredisapi().module.ConnectionError)


def connectionError(message: str) -> Exception:
    """
    @return: the error of a command that cannot reach Redis: txredisapi's C{ConnectionError}.
    """
    return cast(Exception, _txredisapi().module.ConnectionError(message))


class _Subscriptions:
    """
    The pub/sub side of a L{RedisClient}: which locks listen on which channels, and the
    subscriptions of the current pub/sub connection, renewed whenever it reconnects.
    """

    def __init__(self, dbid: int) -> None:
        self.dbid = dbid
        self._protocol: Any = None
        self._locks: dict[str, weakref.WeakSet[_Listener]] = {}

    def add(self, lock: _Listener) -> None:
        """
        Deliver the releases of C{lock}'s channel to it.
        """
        locks = self._locks.get(lock._channel)
        if locks is None:
            locks = self._locks[lock._channel] = weakref.WeakSet()
            if self._protocol is not None:
                self._subscribe(self._protocol, lock._channel)
        locks.add(lock)

    def locks(self) -> list[_Listener]:
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
            return None if isConnectionError(failure) else failure

        protocol.subscribe(channel).addCallbacks(subscribed, failed)


class RedisClient:
    """
    One command connection and one pub/sub connection to a Redis database, each reconnecting by
    itself whenever it is lost; the one script the locks run.
    """

    def __init__(
        self,
        reactor: _Clock,
        commands: Any,
        subscriber: Any,
        subscriptions: _Subscriptions,
        script: list[str],
    ) -> None:
        """
        Use L{openClient}.
        """
        self.reactor = reactor
        self._commands = commands
        self._subscriber = subscriber
        self.subscriptions = subscriptions
        self._script = script

    @property
    def dbid(self) -> int:
        return self.subscriptions.dbid

    def loadScript(self) -> Deferred[None]:
        loaded = gatherResults([self._commands.handler.script_load(s) for s in self._script])
        return cast(Deferred[None], loaded.addCallback(lambda _: None))

    def run(
        self,
        command: _Command,
        then: Callable[Concatenate[Any, float, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """
        Run the lock script, once connected; load it again if Redis lost it (a restart,
        C{SCRIPT FLUSH}).

        @param command: the C{EVALSHA} of the script.
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
        sent = self.reactor.seconds()
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
        return self.loadScript().addCallback(lambda _: self.run(command, then, *args, **kwargs))

    def close(self) -> Deferred[None]:
        """
        Close the command and pub/sub connections, and stop them reconnecting.
        """
        return _closeBoth(self._commands, self._subscriber)

    def __repr__(self) -> str:
        return repr(self._commands.handler)


def openClient(
    host: str,
    port: int,
    dbid: int,
    password: str | None,
    connectTimeout: float,
    reactor: Any,
    script: list[str],
) -> Deferred[RedisClient]:
    """
    Connect to Redis, and load the lock C{script}.

    @return: a L{Deferred} of the L{RedisClient}, failing with txredisapi's C{ConnectionError}
        if Redis cannot be reached in C{connectTimeout} seconds.
    """
    redis = _txredisapi()
    subscriptions = _Subscriptions(dbid)
    commands = redis.CommandFactory(f"{host}:{port}", dbid, 1, password=password)
    subscriber = redis.SubscriberFactory(subscriptions, password)
    endpoint = HostnameEndpoint(cast(IReactorTCP, reactor), host, port, timeout=connectTimeout)
    commands.startConnecting(endpoint)
    subscriber.startConnecting(endpoint)

    def connected(_: object) -> Deferred[RedisClient]:
        client = RedisClient(reactor, commands, subscriber, subscriptions, script)
        return client.loadScript().addCallback(lambda _: client)

    def timedOut(result: object, timeout: float) -> None:
        # txredisapi retries for ever, and keeps why the first connection failed to itself.
        raise connectionError(f"could not connect to Redis at {host}:{port} in {timeout} s")

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
