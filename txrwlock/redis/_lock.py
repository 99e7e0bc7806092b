# -*- test-case-name: tests.test_redis -*-
"""
The Redis lock of L{txrwlock.redis}: the locks of one database (L{RedisLocks}) and each lock's
acquires, releases and leases (L{RedisReadersWriterLock}), over the client of
L{txrwlock.redis._client} and the scripts of C{scripts/}.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Sequence
from hashlib import sha1
from importlib.resources import files
from itertools import count
from typing import Any, TypeVar, cast
from uuid import uuid4

from twisted.internet.defer import Deferred, DeferredList, FirstError, fail, gatherResults
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from txrwlock._cohort import _CohortLock, _Grant
from txrwlock._remote import RemoteLockSide, _ignore, _Timer, checkLease
from txrwlock.redis._client import RedisClient, RedisConnectionError, bulk, openClient
from txrwlock.txrwlock import LockStatistics

__all__ = ["RedisLockSide", "RedisLocks", "RedisReadersWriterLock", "connect"]

_T = TypeVar("_T")

# Every transition of a lock is one run of a script of scripts/, named for what it does; the parts
# whose names start with "_" are included by its "--#include" lines (a run defines no function it
# does not need: a Lua closure costs 0.6 µs).  _prelude.lua says what a lock keeps.
_SCRIPTS = files(__package__).joinpath("scripts")
_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


def _script(name: str) -> str:
    """
    @return: the text of the script C{name}, its includes expanded.
    """
    text = _SCRIPTS.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: _script("_" + m.group(1)).rstrip("\n"), text)


_TEXTS = {
    name: _script(name)
    for name in ("acquire_read", "acquire_write", "release", "downgrade", "renew", "statistics")
}
_SHAS = {name: sha1(text.encode()).hexdigest() for name, text in _TEXTS.items()}
# Seconds an object keeps listening once it neither holds nor waits: one whose acquires wait again
# and again (a busy lock, across processes) keeps its subscription, instead of paying a SUBSCRIBE,
# an UNSUBSCRIBE and a try again (what was published before the subscription was missed) for
# every wait.
_LINGER = 1.0
# The tokens of a write grant: Redis hands out blocks of this many (scripts/_grant.lua), the first
# for the grantee, the others for the local writers it passes the hold on to, in a row while no
# other client waits.
_BLOCK = 16
# Each operation of a lock: its script, and the mode it passes it (ARGV[3]), if any.
_OPERATIONS: dict[bytes, tuple[str, bytes | None]] = {
    b"r": ("acquire_read", b"q"),
    b"u": ("acquire_read", b"t"),
    b"w": ("acquire_write", b"q"),
    b"t": ("acquire_write", b"t"),
    b"x": ("release", b"a"),
    b"y": ("release", b"w"),
    b"d": ("downgrade", None),
    b"n": ("renew", None),
    b"s": ("statistics", None),
}


def _held(reply: int, sent: float) -> bool:
    """
    @return: whether a release found its hold: Redis's reply.
    """
    return bool(reply)


def connect(
    host: str | IStreamClientEndpoint = "localhost",
    port: int = 6379,
    dbid: int = 0,
    password: str | None = None,
    *,
    username: str | None = None,
    sentinels: Sequence[tuple[str, int]] | None = None,
    service: str | None = None,
    connectTimeout: float = 5.0,
    replyTimeout: float = 5.0,
    healthCheckInterval: float = 5.0,
    reactor: Any = None,
) -> Deferred[RedisLocks]:
    """
    Connect to Redis, for locks shared with every client of the same database.

    Two connections are made, one for commands and one for pub/sub, shared by every lock of the
    L{RedisLocks}.  Once made, each is made again whenever it is lost, for ever, backing off from
    50 ms to 1 s between attempts; commands made meanwhile wait for it.  A silent connection
    (a peer or a network gone without a word) is noticed, dropped and made again within
    C{healthCheckInterval + replyTimeout} seconds of its last reply (10 s by default).

    @param host: the Redis server's host name or address; or a Twisted client endpoint
        description (a string with C{=} in it, or starting C{unix:}), such as
        C{"tcp:host=redis.example:port=6379"}, C{"unix:path=/run/redis/redis.sock"} or
        C{"tls:host=redis.example:port=6380:trustRoots=/etc/redis/ca"}; or an
        L{IStreamClientEndpoint}.
    @param port: the port, with a host name or address.
    @param dbid: the database: locks of the same name in different databases are different.
    @param password: Redis's password, if it needs one.
    @param username: the ACL user of C{password} (Redis 6 and later), if not C{default}.
    @param sentinels: the C{(host, port)} of the sentinels of a Sentinel deployment: each
        connection asks them where the primary of C{service} is, and checks it is one; on a
        lost connection or a C{READONLY} reply (a failover), it asks again.  Replaces C{host}
        and C{port}.
    @param service: the name of the Sentinel service (its C{sentinel monitor} name).
    @param connectTimeout: fail after this many seconds if the first connections cannot be made;
        also the limit of each later attempt.
    @param replyTimeout: seconds a command waits for its reply before its connection is
        dropped, and made again.  Keep it above the longest command you expect: a script, a
        C{WAIT}.
    @param healthCheckInterval: seconds a connection may be idle before it is sent a C{PING}.
        5 by default: with C{replyTimeout}, a silent connection is noticed within 10 s, a third
        of the default lease, for two tiny commands per client every 5 s.
    @param reactor: the reactor (an L{IReactorTCP<twisted.internet.interfaces.IReactorTCP>} and
        L{IReactorTime<twisted.internet.interfaces.IReactorTime>}) for connections and timers;
        the global one, imported then, if L{None}.
    @return: a L{Deferred} of the L{RedisLocks}, failing with L{RedisConnectionError} if Redis
        cannot be reached in C{connectTimeout} seconds, or refuses the password or database.
    @raise ValueError: if C{sentinels} and C{service} are not given together, or a timeout is
        not positive and finite.
    """
    if reactor is None:
        from twisted.internet import reactor
    opened = openClient(
        reactor,
        list(_TEXTS.values()),
        host,
        port,
        dbid,
        password,
        username,
        sentinels,
        service,
        connectTimeout,
        replyTimeout,
        healthCheckInterval,
    )
    return opened.addCallback(RedisLocks)


class RedisLocks:
    """
    The locks of one Redis database, made by L{connect}: one command connection and one pub/sub
    connection, shared by every lock made by L{lock}.
    """

    def __init__(self, client: RedisClient) -> None:
        """
        Use L{connect}.
        """
        self._client = client
        self._reactor = client.reactor
        self._clientId = uuid4().hex
        self._ids = count()
        self._closed = False
        # Every lock made and still referenced, for disconnect().
        self._objects: weakref.WeakSet[RedisReadersWriterLock] = weakref.WeakSet()

    @property
    def dbid(self) -> int:
        """
        The Redis database of the locks.
        """
        return self._client.dbid

    def lock(
        self,
        name: str,
        lease: float = 30.0,
        lost: Callable[[RedisReadersWriterLock, bool], object] | None = None,
        minReplicas: int = 0,
        *,
        debug: bool = False,
    ) -> RedisReadersWriterLock:
        """
        A lock shared with every client of this Redis database that uses the same C{name}.

        Each call makes a new lock object, a client of its own: the holds of one object are not
        those of another.

        @param name: the lock's name, any non-empty string.
        @param lease: seconds a hold, or a waiter's place, lasts unless renewed; this
            object renews them every C{lease / 3} seconds.
        @param lost: called with the lock and whether the hold was the writer's, each time this
            object loses a hold because its lease ran out unrenewed.
        @param debug: record the file and line of the code behind each hold and waiting acquire
            of this object, for C{describe()}.
        @param minReplicas: hand over a grant only once this many replicas of Redis have
            acknowledged it (C{WAIT}, on the command connection, right after the grant), so that a
            failover to one of them keeps the hold; a grant not acknowledged within a tenth of
            the lease is given back, and the acquire tries again (a try-acquire reports
            C{False}).  Renewals and downgrades extend a lease only once acknowledged too.  Per
            lock, since it costs a replica's round trip on every acquire; a C{WAIT} holds up the
            command connection, shared by every lock of this object, while it waits.
        @raise TypeError: if C{name} is not a string, or C{minReplicas} not an integer.
        @raise ValueError: if C{name} is empty, C{lease} is not finite or shorter than
            L{MINIMUM_LEASE<txrwlock._remote.MINIMUM_LEASE>} (10 ms), or C{minReplicas} is
            negative.
        """
        if not isinstance(name, str):
            raise TypeError(f"a lock's name must be a string, not {name!r}")
        if not name:
            raise ValueError("a lock's name must not be empty")
        checkLease(lease)
        if not isinstance(minReplicas, int) or isinstance(minReplicas, bool):
            raise TypeError(f"lock(): minReplicas must be an integer, not {minReplicas!r}")
        if minReplicas < 0:
            raise ValueError(f"lock(): minReplicas must not be negative, not {minReplicas!r}")
        if self._closed:
            raise RedisConnectionError("RedisLocks.lock() called after disconnect()")
        lock = RedisReadersWriterLock(self, name, lease, lost, minReplicas, debug)
        self._objects.add(lock)
        return lock

    def disconnect(self, timeout: float = 2.0) -> Deferred[None]:
        """
        Close both connections.  Waiting acquires fail with L{RedisConnectionError} and
        their places are given up.  Holds not released are given up too, as lost: the C{lost}
        callbacks are called, and their releases fail with L{LockLostError}.  Release first.

        @param timeout: wait at most this many seconds for Redis to give up the holds and
            places; if it is away, their leases run out instead.
        @return: a L{Deferred} that fires once both connections are closed.
        """
        self._closed = True
        removals = [d for lock in list(self._objects) for d in lock._close()]
        # Not a timeout on the removals: cancelling them would leave their replies unread.
        given: Deferred[None] = Deferred()
        timer = self._reactor.callLater(timeout, given.callback, None)

        def removed(_: object) -> None:
            if timer.active():
                timer.cancel()
                given.callback(None)

        DeferredList(removals, consumeErrors=True).addCallback(removed)
        return given.addCallback(lambda _: self._client.close())

    def _newId(self) -> str:
        return f"{self._clientId}:{next(self._ids)}"

    def __repr__(self) -> str:
        return f"<RedisLocks db={self.dbid} {self._client!r}>"


class _Acquire:
    """
    One acquire of a L{RedisReadersWriterLock}, until its Deferred has fired.

    @ivar id: the hold id, unique across clients: the same in every try of this acquire.
    @ivar inFlight: whether a try is running in Redis.
    @ivar again: whether to try again as soon as the running try fails (a release came).
    @ivar waited: whether a try has failed: this acquire waits, with a place in Redis.
    @ivar sent: when the last try that placed this waiter was sent: a grant handed off to it
        lasts a lease from then, at least.  (A waiter tries again whenever the earliest lease
        ends, so this is seldom older than a lease.)
    @ivar handed: the token (1 for a reader) of a grant handed off to this waiter while its try
        was in flight, for that try's answer to hand over; else L{None}.
    """

    __slots__ = (
        "again",
        "deferred",
        "handed",
        "id",
        "inFlight",
        "queue",
        "sent",
        "waited",
        "writer",
    )

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
        self.sent = 0.0
        self.handed: int | None = None


class RedisLockSide(RemoteLockSide["RedisReadersWriterLock"]):
    """
    One side, reader or writer, of a L{RedisReadersWriterLock}: C{lock.reader} or
    C{lock.writer}, as L{LockSide<txrwlock.LockSide>} of the local lock, with C{async with} and
    L{run}; the release waits for Redis.  So L{run}'s Deferred fires once the release is done,
    and fails with L{LockLostError} if C{f} succeeded but the hold was lost meanwhile.
    """

    __slots__ = ()


class RedisReadersWriterLock(_CohortLock):
    """
    A readers/writer lock shared through Redis, made by L{RedisLocks.lock}: the API of
    L{TxReadersWriterLock<txrwlock.TxReadersWriterLock>}, where a release, a try-acquire and
    L{statistics} go to Redis and so return Deferreds.

    B{Policy}, across all clients, as the local lock's default: writer preference.  While a writer
    holds or waits, new readers wait; writers are served in arrival order (arrival at Redis);
    when no writer holds or waits, waiting readers all go in.  A hold that goes is handed, by the
    same script, to the first waiting writer in Redis, or else to every waiting reader, and they
    are told: a woken waiter needs no round trip of its own (see "In Redis" in the docs).

    B{Cohorts.}  The coroutines of one object share one hold in Redis: its readers share one read
    hold, and a writer leaving passes the write hold to the object's next writer, up to 15 times
    in a row, each with a fencing token of its own, one more than the last.  Within the object,
    a local fair lock serves its coroutines in arrival order.  Once another client waits (Redis
    tells this object), the hold takes no new reader and is passed on no more: it is given back
    when the coroutines inside leave, so writer preference and the writers' order hold across
    clients.  See "Cohorts" in the docs.

    B{Leases and fencing.}  Every hold, and every waiter's place, has a lease: it vanishes
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
    L{CancelledError<twisted.internet.defer.CancelledError>} and gives up its place in Redis; a
    grant that crossed the cancellation is released.

    B{Faults.}  An acquire whose command is in flight when Redis goes away fails with
    L{RedisConnectionError} and holds nothing; one made while Redis is away waits for it, as do the
    waiters already waiting.  Holds whose leases have not run out when Redis comes back (with its
    data) are kept.  A release whose connection drops is sent again until Redis answers or the
    hold's lease has run out.  L{isReading}, L{isWriting} and L{fencingToken} read the clock: a
    hold past its lease is not reported as held, even before the loss is; a grant whose reply
    comes after its lease could have run out is asked for again, never handed over.  Fencing
    tokens keep growing when Redis loses data, as long as its clock does not go back (a token is
    at least Redis's C{TIME} in µs).  With C{minReplicas}, a grant is handed over only once that
    many replicas acknowledged it.  The docs' "Running in production" has the whole table.
    """

    # Invariants, besides those of _CohortLock:
    #   - _taking is the remote acquire of _hold in flight or waiting, or None.
    #   - _remoteId is the id of the last remote hold granted; _remoteSent is when its lease last
    #     started (the send of the command that granted or renewed it); _lastToken is the last
    #     token of its block, if it writes.
    #   - _downgradeSent: a downgrade of the remote hold is on its way.
    #   - _listening is whether this object listens on its channel: from when an acquire waits
    #     (a try failed) or comes while it holds or waits (so that it hears when another client
    #     waits for the hold its coroutines share), until it has neither held nor waited for
    #     _LINGER seconds (_linger, the timer of that, is set while it listens and is idle).  So
    #     an uncontended lock, one acquire at a time, costs the client no subscription.  What was
    #     said before it listened, or while its connection was down, it asks again
    #     (_askWhoWaits).
    #   - _retryTimer, if active, is due no later than the earliest lease in Redis that keeps
    #     _taking out, as Redis last told it.

    _sideType = RedisLockSide
    reader: RedisLockSide
    writer: RedisLockSide

    def __init__(
        self,
        locks: RedisLocks,
        name: str,
        lease: float,
        lost: Callable[[RedisReadersWriterLock, bool], object] | None,
        minReplicas: int = 0,
        debug: bool = False,
    ) -> None:
        """
        Use L{RedisLocks.lock}.
        """
        super().__init__(locks._reactor, name, lease, lost, debug, self._passOn)
        self._locks = locks
        self._run = locks._client.run
        tag = f"txrwlock:{{{locks.dbid}:{name}}}"
        # The channel of this client for this name: the scripts publish there only what concerns
        # this client's waiters (see scripts/_prelude.lua).
        self._channel = f"{tag}:{locks._clientId}"
        # What every command of this lock holds, encoded once (measured: 0.3 µs to build a
        # command, against 7 µs encoding every argument; a pair sends two).  _heads: the start
        # of the commands on one hold id, up to the id, for each operation.  The lease goes to
        # Redis rounded up, so that Redis never drops a hold before this object gives it up.
        keys = [f"{tag}:{letter}".encode() for letter in "hwqpnr"]
        leaseMs = b"%d" % math.ceil(round(lease * 1e6) / 1000)  # 0.3 s: 300, not 301
        self._common = bulk(b"%d" % len(keys), *keys, tag.encode(), leaseMs)
        self._heads = {op: self._head(op, 1) for op in _OPERATIONS if op != b"s"}
        # With minReplicas, every try, renewal and downgrade is followed by a WAIT for that many
        # replicas, a tenth of the lease at most (never 0: WAIT's 0 waits for ever), so that
        # renewals, every third of a lease, still come in time while the WAITs time out.
        self._minReplicas = minReplicas
        self._waitReplicas: bytes | None = None
        if minReplicas:
            timeout = b"%d" % math.ceil(lease * 100)
            self._waitReplicas = b"*3\r\n" + bulk(b"WAIT", b"%d" % minReplicas, timeout)
        self._taking: _Acquire | None = None
        self._remoteId: str | None = None
        self._remoteSent = 0.0
        self._lastToken = 0
        self._downgradeSent = False
        self._listening = False
        self._linger: _Timer | None = None
        self._retryTimer: _Timer | None = None

    def statistics(self) -> Deferred[LockStatistics]:
        """
        @return: a L{Deferred} of a snapshot: the readers (this object's one by one, though they
            share one hold in Redis), the writer and the waiting writers of every client, and the
            readers waiting in this object; and this object's counters.
        """
        local = self._hold.local.statistics()
        reading = sum(not w for w in self._holds.values())
        readersWaiting = local.readersWaiting
        if self._hold.writing is False:
            readersWaiting += self._hold.remoteWaiters

        def made(reply: list[int], sent: float) -> LockStatistics:
            readers = reply[0] + max(0, reading - 1)
            waiting = readersWaiting, reply[2] + local.writersWaiting
            return self._statistics(readers, bool(reply[1]), *waiting)

        return self._run(self._command(b"s"), made)

    def _command(self, op: bytes, *ids: str) -> bytes:
        """
        @return: the run of the script for the one-letter operation C{op} on C{ids}.
        """
        if len(ids) == 1:
            # Every acquire and release: half the time of the general case (0.6 µs, 1.1 µs).
            return b"%s$%d\r\n%s\r\n" % (self._heads[op], len(ids[0]), ids[0].encode())
        # Hold ids are ASCII: their length in characters is their length in bytes.
        tail = "".join([f"${len(i)}\r\n{i}\r\n" for i in ids]).encode()
        return self._head(op, len(ids)) + tail

    def _head(self, op: bytes, ids: int) -> bytes:
        script, mode = _OPERATIONS[op]
        extra = () if mode is None else (mode,)
        # EVALSHA, its SHA, the keys' count, 6 keys, channel, lease: 11 arguments.
        args = b"*%d\r\n" % (11 + len(extra) + ids)
        return b"".join(
            [args, bulk(b"EVALSHA", _SHAS[script].encode()), self._common, bulk(*extra)]
        )

    def _closed(self) -> bool:
        return self._locks._closed

    def _closedError(self) -> Exception:
        return RedisConnectionError(f"{self!r}: RedisLocks disconnected")

    def _isConnectionError(self, failure: Failure) -> bool:
        return isinstance(failure.value, RedisConnectionError)

    def _leaseStart(self) -> float:
        return self._remoteSent

    # Acquiring

    def _acquire(self, writer: bool, queue: bool) -> Deferred[Any]:
        if self._holds or self._waiting:
            # Busy: listen, to hear when another client waits for the hold this object's
            # coroutines share.  And a remote hold whose lease ran out by the clock takes nobody
            # new.
            if not self._listening and not self._closed():
                self._listen()
            if self._holds and self._clock.seconds() >= self._remoteSent + self.lease:
                self._hold.contend()
        return super()._acquire(writer, queue)

    def _passOn(self, grant: _Grant) -> _Grant | None:
        """
        The grant of the next local writer, if the write hold of C{grant} may pass on to it: with
        the next token of the grant's block, while there is one.
        """
        token = grant[0]
        return (token + 1, False) if token < self._lastToken else None

    def _take(self, writer: bool, queue: bool) -> Deferred[_Grant | None]:
        if self._closed():
            return fail(self._closedError())
        a = _Acquire(self._locks._newId(), writer, queue, self._cancelTake)
        self._taking = a
        self._try(a)
        return a.deferred

    def _try(self, a: _Acquire) -> None:
        a.inFlight = True
        a.again = False
        a.handed = None
        op = (b"w" if a.queue else b"t") if a.writer else (b"r" if a.queue else b"u")
        self._runAcked(self._command(op, a.id), self._tried, a).addErrback(self._tryFailed, a)

    def _runAcked(self, command: bytes, then: Callable[..., _T], *args: object) -> Deferred[_T]:
        """
        Run C{command}, followed with C{minReplicas} by a C{WAIT} for the replicas, and call
        C{then} with its reply, the time it was sent, whether enough replicas acknowledged it
        (always, without C{minReplicas}), and C{args}.
        """
        if self._waitReplicas is None:
            return self._run(command, then, True, *args)
        # The WAIT goes right after the command, on the same connection: it counts the replicas
        # that have what the command wrote.
        replied = self._run(command, lambda reply, sent: (reply, sent))
        acked = self._run(self._waitReplicas, lambda acks, sent: acks >= self._minReplicas)
        both = gatherResults([replied, acked], consumeErrors=True)
        return both.addCallbacks(
            lambda results: then(*results[0], results[1], *args),
            lambda failure: cast(FirstError, failure.value).subFailure,
        )

    def _tried(self, reply: int, sent: float, acked: bool, a: _Acquire) -> None:
        a.inFlight = False
        if a.deferred.called:
            # Cancelled, or failed by disconnect(), which sent its removal.  That may have run
            # before this try, sent again after reloading the script: remove it again.
            self._removeRemote(a.id)
            return
        if reply > 0 and not acked:
            # Too few replicas have the grant: a failover now could lose it.  Give it back; a
            # try says no, a waiter tries again (its WAIT has already waited a while).
            self._removeRemote(a.id)
            if a.queue:
                self._try(a)
            else:
                self._took(a)
        elif reply > 0 and self._clock.seconds() >= sent + self.lease:
            # Redis may have run the try as late as now (it stalled, or the reply was slow): the
            # grant's lease may have run out already.  Ask again: the same id is granted again,
            # with a new lease (or waits, if the grant ran out and another took the lock).
            self._try(a)
        elif reply > 0:
            self._took(a, reply, sent)
        elif not a.queue:
            self._took(a)
        elif a.handed is not None:
            # Handed off as this try, which placed it, was answered: the release came after it.
            # (Had the try run after the release, Redis would have granted it again, > 0.)
            a.waited = True
            if self._clock.seconds() < sent + self.lease:
                self._took(a, a.handed, sent)
            else:
                self._try(a)  # the grant may have run out: ask again
        else:
            a.waited = True
            a.sent = sent
            if reply < 0:
                self._retryAfter((-1 - reply) / 1000)
            if not self._listening:
                self._listen()
            elif a.again:
                self._try(a)
            else:
                self._watch()

    def _took(self, a: _Acquire, reply: int = 0, sent: float = 0.0) -> None:
        """
        The remote acquire C{a} is over: granted, by a command sent at C{sent}, with C{reply}
        (a writer's token), or refused (a try) if C{reply} is 0.
        """
        self._taking = None
        if not reply:
            a.deferred.callback(None)
            return
        self._remoteId = a.id
        self._remoteSent = sent
        token = 0
        if a.writer:
            # A write grant's token opens a block of _BLOCK: the rest are for the local writers
            # it passes on to (see _grant.lua).
            token, self._lastToken = reply, reply + _BLOCK - 1
        a.deferred.callback((token, a.waited))

    def _listen(self) -> None:
        """
        Listen on this client's channel: for a waiter, and while this object is busy; then try
        again, since what was published before was missed.
        """
        self._listening = True
        # The client calls _heard once it has subscribed to a channel new to it; on a channel it
        # has, this object hears from now on, and what came before is missed all the same.
        self._locks._client.subscribe(self._channel, self._heard)
        self._retry()

    def _unlistenIfIdle(self) -> None:
        """
        Stop hearing the channel once this object has neither held nor waited for L{_LINGER}
        seconds: subscriptions grow with the names in use, not the names ever used.
        """
        if self._listening and self._linger is None and self._idle():
            self._linger = self._clock.callLater(_LINGER, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        if self._listening and self._idle():
            self._unlisten()

    def _idle(self) -> bool:
        return not (self._holds or self._waiting or self._taking)

    def _unlisten(self) -> None:
        self._listening = False
        self._locks._client.unsubscribe(self._channel, self._heard)

    def _settledUnheld(self) -> None:
        self._unlistenIfIdle()

    def _heard(self, message: str | None) -> None:
        """
        What Redis tells this client: C{"<id> <token>"}, the waiter of that id was granted the
        hold by a release (handed off; a reader's token is 0; C{"<id> <token> !"} if another
        client waits already); C{"! <id>"} or C{"? <id>"}, another client's writer or reader
        waits for the hold of that id; or L{None}, messages may have been missed: try again,
        and ask.
        """
        if message is None:
            self._retry()
            if self._holds:
                self._askWhoWaits()  # a "!" may have been missed
            return
        holdId, _, rest = message.partition(" ")
        a = self._taking
        if holdId in ("!", "?"):
            if rest == self._remoteId or (a is not None and rest == a.id):
                self._contend(holdId)
            return
        if a is None or a.id != holdId:
            return  # not this object's, or cancelled: its removal gives the hold back
        token, _, othersWait = rest.partition(" ")
        if othersWait:
            self._hold.contend()
        granted = int(token) if a.writer else 1
        if a.inFlight and self._waitReplicas is None:
            # Its try's answer hands it over: with the lease of the place that try set (issue
            # 12: asking again cost a round trip for 44% of the handoffs, at 2 processes).
            a.handed = granted
        elif self._waitReplicas is not None or self._clock.seconds() >= a.sent + self.lease:
            # With minReplicas, the grant is handed over only once acknowledged: the try asks
            # again, with its WAIT.  And a grant that may have run out by now is asked for again,
            # never handed over.
            self._retry()
        else:
            self._took(a, granted, a.sent)

    def _contend(self, who: str) -> None:
        """
        Redis says who waits for this object's remote hold: C{"!"} a writer, C{"?"} only readers,
        which wait for a write hold only (a "?" may come as its downgrade runs, or after).
        """
        if who == "!" or (self._hold.writing and not self._downgradeSent):
            self._hold.contend()

    def _askWhoWaits(self) -> None:
        """
        Ask Redis now whether another client waits for this object's remote hold, as every
        renewal does: what it may have said was missed.
        """
        renewing = self._renewLeases(list(self._holds))
        if renewing is not None:
            renewing.addErrback(self._logUnlessConnectionError, "renew its leases")

    def _tryFailed(self, failure: Failure, a: _Acquire) -> None:
        a.inFlight = False
        if a.deferred.called:
            return
        if a.waited and not self._locks._closed and self._isConnectionError(failure):
            # A waiter keeps waiting through a lost connection: the next try waits for Redis.
            self._try(a)
            return
        self._taking = None
        # The try may have been granted, or placed this waiter, before the failure.
        self._removeRemote(a.id)
        a.deferred.errback(failure)

    def _cancelTake(self, a: _Acquire) -> None:
        if self._taking is a:
            self._taking = None
        if a.waited or a.inFlight:
            self._removeRemote(a.id)

    def _retry(self) -> None:
        """
        Try the remote acquire again, if there is one: a hold or a place has gone.
        """
        a = self._taking
        if a is None:
            return
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

    def _give(self, writer: bool) -> Deferred[bool]:
        command = self._command(b"y" if writer else b"x", cast(str, self._remoteId))
        given = self._run(command, _held)
        given.addErrback(self._giveFailed, command, self._remoteSent + self.lease)
        if self._listening:
            self._unlistenIfIdle()
        return given

    def _giveFailed(self, failure: Failure, command: bytes, deadline: float) -> Any:
        if not self._isConnectionError(failure):
            return failure
        if self._closed() or self._clock.seconds() >= deadline:
            return False  # Redis drops it when its lease runs out
        # Sent again until answered: it may then find the hold gone because its first send
        # released it before the connection dropped, so held it was.
        again = self._sendAgain(failure, lambda: self._run(command, _ignore), deadline)
        return again.addCallback(lambda _: True)

    def _downgradeRemote(self, holdId: str) -> Deferred[_Grant | None]:
        def downgraded(held: int, sent: float, acked: bool) -> _Grant | None:
            self._downgradeSent = False
            if held == 2:
                self._hold.contend()  # a writer waits
            if held and acked:
                # Not acknowledged, the read hold is the primary's only: a failover would leave
                # the write hold, as the replicas had it, lasting until its deadline, kept here.
                self._remoteSent = max(self._remoteSent, sent)
                self._extend(holdId, sent)
            return (0, False) if held else None

        def failed(failure: Failure) -> Failure:
            self._downgradeSent = False
            return failure

        self._downgradeSent = True
        command = self._command(b"d", cast(str, self._remoteId))
        return self._runAcked(command, downgraded).addErrback(failed)

    def _removeRemote(self, holdId: str) -> Deferred[None]:
        """
        Drop the remote hold or place C{holdId}, for nobody's sake: sent again if the connection
        drops, until Redis answers or a lease from now, by when what it gives up has run out
        anyway (a waiter cancelled then must not keep the others out for a lease).
        """
        command = self._command(b"x", holdId)

        def send() -> Deferred[None]:
            return self._run(command, _ignore)

        d = send().addErrback(self._sendAgain, send, self._clock.seconds() + self.lease)
        return d.addErrback(self._logUnlessConnectionError, "give up a hold or place")

    # Leases

    def _needsRenewal(self) -> bool:
        return self._place() is not None

    def _place(self) -> str | None:
        """
        @return: the id of this object's place in Redis, if its acquire waits with one.
        """
        a = self._taking
        return a.id if a is not None and a.waited else None

    def _renewLeases(self, held: list[str]) -> Deferred[None] | None:
        # The remote hold, if this object holds, and the waiter's place, if it has one.
        remote = self._remoteId if held else None
        place = self._place()
        ids = [i for i in (remote, place) if i is not None]
        if not ids:
            return None

        def renewed(gone: list[str], sent: float, acked: bool) -> None:
            lost = remote in gone
            if not lost and remote is not None and remote == self._remoteId:
                if acked:
                    self._remoteSent = max(self._remoteSent, sent)
                if gone and gone[-1] in ("!", "?"):
                    self._contend(gone[-1])
            # A renewal too few replicas acknowledged extends nothing: after a failover, the
            # leases would run out as the replicas have them.
            self._holdsRenewed(held if acked or lost else [], held if lost else (), sent)
            a = self._taking
            if place in gone and a is not None and a.id == place and not a.inFlight:
                self._try(a)  # its place ran out: queue again, at the back

        return self._runAcked(self._command(b"n", *ids), renewed)

    def _close(self) -> list[Deferred[None]]:
        """
        Stop every timer, fail the pending acquires (tries too) and give up their places, and the
        holds, which are then lost: for L{RedisLocks.disconnect}.

        @return: the removals sent.
        """
        for timer in (self._retryTimer, self._linger):
            if timer is not None and timer.active():
                timer.cancel()
        self._retryTimer = self._linger = None
        if self._listening:
            self._unlisten()
        removals = []
        a, self._taking = self._taking, None
        if a is not None:
            if a.waited or a.inFlight:
                removals.append(self._removeRemote(a.id))
            # Its joiners fail with it, and the local waiters after them, whose takes find the
            # connection closed.
            a.deferred.errback(self._closedError())
        return removals + self._loseAll()
