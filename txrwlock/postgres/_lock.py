# -*- test-case-name: tests.test_postgres -*-
"""
The PostgreSQL lock of L{txrwlock.postgres}: the locks of one database (L{PostgresLocks}) and
each lock's acquires, releases and leases (L{PostgresReadersWriterLock}), over the sessions of
L{txrwlock.postgres._client} and the statements of C{lock.sql}.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from hashlib import sha256
from importlib.resources import files
from math import ceil, isfinite
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.python.failure import Failure

from txrwlock._cohort import _CohortLock, _Grant
from txrwlock._remote import (
    MINIMUM_LEASE,
    RemoteLockSide,
    _Timer,
)
from txrwlock.postgres._client import (
    PostgresClient,
    Session,
    isConnectionError,
    psycopg,
)
from txrwlock.txrwlock import LockStatistics

__all__ = ["PostgresLockSide", "PostgresLocks", "PostgresReadersWriterLock", "connect", "lockKey"]


def _statements(text: str) -> dict[str, str]:
    """
    @return: the statements of C{text} by name, without comments: each runs from its
        C{-- name:} line to the next.
    """
    parts = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)
    return {
        name: re.sub(r"^--.*\n", "", body, flags=re.MULTILINE).strip()
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


_SQL = _statements(files(__package__).joinpath("lock.sql").read_text(encoding="utf-8"))

# The statement of an acquire, by (writer, queue).
_ACQUIRE = {
    (False, True): _SQL["readerAcquire"],
    (True, True): _SQL["writerAcquire"],
    (False, False): _SQL["tryReaderAcquire"],
    (True, False): _SQL["tryWriterAcquire"],
}

# Reconnecting to wait again, after the server went away: first after this, doubling up to that.
_RETRY_INITIAL_DELAY = 0.1
_RETRY_MAX_DELAY = 2.0


def lockKey(name: str) -> int:
    """
    The advisory-lock key of the lock C{name}: the first 8 bytes of the SHA-256 of
    C{"txrwlock:" + name} (UTF-8), as a signed big-endian 64-bit integer.  Two names share a key
    with a chance of 1 in 2**64 per pair; the prefix keeps keys apart from those an application
    picks by hand.
    """
    digest = sha256(b"txrwlock:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect(
    conninfo: str = "",
    *,
    lease: float = 30.0,
    connectTimeout: float = 5.0,
    reactor: Any = None,
    **kwargs: Any,
) -> Deferred[PostgresLocks]:
    """
    Connect to PostgreSQL, for locks shared with every client of the same database.

    One control session is opened now; each lock object opens its own session when it first
    acquires (see L{PostgresLocks}).

    @param conninfo: a libpq connection string or URL, as C{psycopg.connect} takes.
    @param lease: seconds after which a lock's session that stopped answering (a paused or cut-off
        client) is ended by the server, which releases its locks; each lock object renews it every
        C{lease / 3} seconds while it holds.
    @param connectTimeout: give up connecting after this many seconds (at least 2: libpq's floor).
    @param reactor: the reactor (an L{IReactorThreads<twisted.internet.interfaces.IReactorTime>}
        and L{IReactorTime<twisted.internet.interfaces.IReactorTime>}) for threads and timers; the
        global one, imported then, if L{None}.
    @param kwargs: more connection parameters, as C{psycopg.connect} takes.
    @return: a L{Deferred} of the L{PostgresLocks}, failing with psycopg's C{OperationalError}
        (whose message is libpq's) if the server refuses the connection or the login, or the
        database does not exist.
    @raise ValueError: if C{lease} is not a finite number of seconds, at least 0.01.
    """
    if not (isfinite(lease) and lease >= MINIMUM_LEASE):
        raise ValueError(
            f"connect(): the lease must be a finite number of seconds, at least {MINIMUM_LEASE},"
            f" not {lease!r}"
        )
    if reactor is None:
        from twisted.internet import reactor
    timeout = max(2, ceil(connectTimeout))
    client = PostgresClient(reactor, conninfo, kwargs, timeout, lease, _SQL["cancel"])
    return client.start().addCallback(lambda _: PostgresLocks(client, lease))


class PostgresLocks:
    """
    The locks of one PostgreSQL database, made by L{connect}.

    Connections: one control session (cancels, statistics), and one session per lock object
    that has acquired, kept until L{disconnect}: a lock object's session holds its advisory
    locks, and is the one its blocked acquire occupies.  Each session runs its statements on a
    thread of a pool of this object's own, at most one thread per session.
    """

    def __init__(self, client: PostgresClient, lease: float) -> None:
        """
        Use L{connect}.
        """
        self._client = client
        self._reactor = client.reactor
        self.lease = lease
        self._locks: weakref.WeakSet[PostgresReadersWriterLock] = weakref.WeakSet()
        self._closed = False

    def lock(
        self,
        name: str,
        lost: Callable[[PostgresReadersWriterLock, bool], object] | None = None,
        *,
        debug: bool = False,
    ) -> PostgresReadersWriterLock:
        """
        A lock shared with every client of this database that uses the same C{name}.

        Each call makes a new lock object, a client of its own, with its own session: the holds
        of one object are not those of another.

        @param name: the lock's name, any non-empty string (its key: L{lockKey}).
        @param lost: called with the lock and whether the hold was the writer's, each time this
            object loses a hold: its session ended (its lease ran out, the server restarted).
        @param debug: record the file and line of the code behind each hold and waiting acquire
            of this object, for C{describe()}.
        @raise TypeError: if C{name} is not a string.
        @raise ValueError: if C{name} is empty.
        """
        if not isinstance(name, str):
            raise TypeError(f"a lock's name must be a string, not {name!r}")
        if not name:
            raise ValueError("a lock's name must not be empty")
        if self._closed:
            raise psycopg().OperationalError("PostgresLocks.lock() called after disconnect()")
        lock = PostgresReadersWriterLock(self, name, lost, debug)
        self._locks.add(lock)
        return lock

    def disconnect(self) -> Deferred[None]:
        """
        Close every session.  Waiting acquires are cancelled.  Holds not released are given up,
        as lost: the C{lost} callbacks are called, and their releases fail with
        L{LockLostError}.  Release first.

        @return: a L{Deferred} that fires once every session is closed, and the threads stopped.
        """
        self._closed = True
        for lock in list(self._locks):
            lock._close()
        return self._client.close()

    def __repr__(self) -> str:
        return f"<PostgresLocks lease={self.lease} locks={len(self._locks)}>"


class PostgresLockSide(RemoteLockSide["PostgresReadersWriterLock"]):
    """
    One side, reader or writer, of a L{PostgresReadersWriterLock}: C{lock.reader} or
    C{lock.writer}, as L{LockSide<txrwlock.LockSide>} of the local lock, with C{async with} and
    L{run}; the release waits for PostgreSQL.  So L{run}'s Deferred fires once the release is
    done, and fails with L{LockLostError} if C{f} succeeded but the hold was lost meanwhile.
    """

    __slots__ = ()


class _Take:
    """
    One remote acquire of a L{PostgresReadersWriterLock}: its tries, until its Deferred fires.

    @ivar deferred: what L{SharedHold} waits for.  Cancelling it cancels the try in flight (its
        statement, in PostgreSQL: whoever waits behind it goes on) or the timer of the next.
    @ivar running: the statement of the try in flight, or L{None}.
    @ivar retry: the timer of the next try (after the server went away), or L{None}.
    @ivar queued: whether it waited: in PostgreSQL's queue, or for the server to come back.
    """

    __slots__ = ("deferred", "delay", "queue", "queued", "retry", "running", "session", "writer")

    def __init__(self, session: Session, writer: bool, queue: bool) -> None:
        self.session = session
        self.writer = writer
        self.queue = queue
        self.deferred: Deferred[_Grant | None] = Deferred(self._cancel)
        self.running: Deferred[Any] | None = None
        self.retry: _Timer | None = None
        self.delay = _RETRY_INITIAL_DELAY
        self.queued = False

    def _cancel(self, _: object) -> None:
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        if self.running is not None:
            # Its end, cancelled or granted, is the try's callbacks' to handle.
            self.session.cancel(self.running)


class PostgresReadersWriterLock(_CohortLock):
    """
    A readers/writer lock shared through PostgreSQL's advisory locks, made by
    L{PostgresLocks.lock}: the API of L{TxReadersWriterLock<txrwlock.TxReadersWriterLock>},
    where a release, a try-acquire and L{statistics} go to PostgreSQL and so return Deferreds.

    B{Policy}: fair, across all clients: PostgreSQL grants in arrival order, readers at the head
    of the queue go in together, and a reader waits behind a waiting writer (the local lock's
    C{fair=True}).  Within one lock object, a local fair lock comes first: its readers share one
    shared advisory lock (the first takes it, the last gives it back), its writers take the
    exclusive one in turn.  Once a heartbeat finds another session waiting, the shared lock takes
    no new reader of this object, so that its readers cannot keep that session out for ever.

    B{Leases and fencing.}  A lock object's session is ended by the server once idle for a lease
    (C{idle_session_timeout}), which releases its locks; this object runs a statement on it every
    C{lease / 3} seconds while it holds.  So a client that dies loses its holds at once (its
    connection closes), and one that hangs within a lease.  A hold whose session ended, or this
    object could not renew in time, is lost: L{isReading} or L{isWriting} turns false, the
    C{lost} callback is called, and its release fails with L{LockLostError}.  While writing, give
    L{fencingToken} (a transaction id, taken after the grant) to the store, which must refuse a
    token smaller than the last it saw.

    B{Cancellation.}  Cancelling a waiting acquire (C{cancel()}, C{addTimeout}) errbacks it with
    L{CancelledError<twisted.internet.defer.CancelledError>}; its statement, if waiting in
    PostgreSQL, is cancelled there (C{pg_cancel_backend}, from the control session), so whoever
    waited behind it goes on; a grant that crossed the cancellation is given back.

    B{Watching}, as every remote lock (L{addObserver}, L{describe}, L{statistics}'s counters): a
    wait runs from the acquire's call, through this object's local lock and PostgreSQL's queue;
    an acquire granted at its first try waited C{0.0}.  A cancelled acquire counts as one that
    queued: PostgreSQL does not say whether its statement had.
    """

    # Invariants, besides those of _CohortLock:
    #   - _hold's remote hold is the advisory lock this object's session holds or waits for, on
    #     _key; _since is when the lease of its session last started (the end of its grant, or
    #     the send of its last heartbeat).

    _sideType = PostgresLockSide
    reader: PostgresLockSide
    writer: PostgresLockSide

    def __init__(
        self,
        locks: PostgresLocks,
        name: str,
        lost: Callable[[PostgresReadersWriterLock, bool], object] | None,
        debug: bool = False,
    ) -> None:
        """
        Use L{PostgresLocks.lock}.
        """
        super().__init__(locks._reactor, name, locks.lease, lost, debug)
        self._locks = locks
        self._key = lockKey(name)
        # The key as pg_locks shows it, in two 32-bit halves.
        self._keyHalves = (str((self._key >> 32) & 0xFFFFFFFF), str(self._key & 0xFFFFFFFF))
        leaseMs = max(1, round(locks.lease * 1000))
        self._session: Session = locks._client.session(
            _SQL["setup"], str(leaseMs), str(max(1, leaseMs // 3))
        )
        self._since = 0.0

    def statistics(self) -> Deferred[LockStatistics]:
        """
        @return: a L{Deferred} of a snapshot, from C{pg_locks}: the sessions holding the lock,
            shared (C{readers}) or exclusive, and those waiting, plus the readers and writers
            waiting in this object's local lock; and this object's counters.
        """
        local = self._hold.local.statistics()

        def made(row: tuple[int, int, int, int]) -> LockStatistics:
            waiting = row[2] + local.readersWaiting, row[3] + local.writersWaiting
            return self._statistics(row[0], bool(row[1]), *waiting)

        query = self._locks._client.control.execute(_SQL["statistics"], *self._keyHalves)
        return query.addCallback(made)

    def _closed(self) -> bool:
        return self._locks._closed

    def _closedError(self) -> Exception:
        error: Exception = psycopg().OperationalError(f"{self!r}: PostgresLocks disconnected")
        return error

    def _leaseStart(self) -> float:
        return self._since

    def _downgradeRemote(self, holdId: str) -> Deferred[_Grant | None]:
        query = _SQL["writerDowngrade"]
        d = self._session.execute(query, self._key, self._key, reconnect=False)
        held = d.addCallbacks(lambda row: bool(row[0]), self._heldIfConnected)
        return held.addCallback(lambda held: (0, False) if held else None)  # a reader's

    def _isConnectionError(self, failure: Failure) -> bool:
        return isConnectionError(failure)

    # Acquiring

    def _take(self, writer: bool, queue: bool) -> Deferred[_Grant | None]:
        """
        Take the advisory lock, for L{SharedHold}: its grant's value is the fencing token (0 for
        a reader) and whether it queued.
        """
        take = _Take(self._session, writer, queue)
        self._try(take)
        return take.deferred

    def _try(self, take: _Take) -> None:
        take.retry = None
        query = _ACQUIRE[take.writer, take.queue]
        keys = (self._key,) * query.count("%s")
        running = take.running = self._session.execute(query, *keys)
        running.addCallbacks(
            self._tried, self._tryFailed, callbackArgs=(take,), errbackArgs=(take,)
        )

    def _tried(self, row: tuple[Any, ...], take: _Take) -> None:
        take.running = None
        if take.deferred.called:
            self._giveBack()  # granted as it was cancelled
            return
        self._since = self._clock.seconds()
        if row[0] is None:
            take.deferred.callback(None)  # a try, not taken
        else:
            # An acquire's row says second whether it queued; a try's never did.
            take.deferred.callback((row[0], take.queued or (take.queue and bool(row[1]))))

    def _tryFailed(self, failure: Failure, take: _Take) -> None:
        take.running = None
        if take.deferred.called:
            if not isinstance(failure.value, CancelledError):  # skipped: nothing to give back
                self._giveBack()
            return
        if take.queue and not self._locks._closed and isConnectionError(failure):
            # The server went away: wait for it, and wait in its queue again.
            take.retry = self._clock.callLater(take.delay, self._try, take)
            take.queued = True
            take.delay = min(_RETRY_MAX_DELAY, take.delay * 2)
            return
        take.deferred.errback(failure)

    def _giveBack(self) -> None:
        """
        Give back whatever this object's session holds: after an acquire cancelled while it ran.
        """
        d = self._session.execute(_SQL["giveBack"], reconnect=False)
        d.addErrback(self._logUnlessConnectionError, "give back a cancelled grant")

    # Releasing

    def _give(self, writer: bool) -> Deferred[bool]:
        """
        Give the advisory lock back, for L{SharedHold}.

        @return: a L{Deferred} of whether it was still held (not if the session ended).
        """
        query = _SQL["writerRelease" if writer else "readerRelease"]
        d = self._session.execute(query, self._key, reconnect=False)
        return d.addCallbacks(lambda row: bool(row[0]), self._heldIfConnected)

    @staticmethod
    def _heldIfConnected(failure: Failure) -> bool | Failure:
        # A session that ended took its locks with it.
        return False if isConnectionError(failure) else failure

    # Leases

    def _renewLeases(self, held: list[str]) -> Deferred[None] | None:
        if not held:
            return None
        sent = self._clock.seconds()

        def renewed(row: tuple[bool]) -> None:
            self._since = max(self._since, sent)
            if row[0]:
                self._hold.contend()  # another session waits
            self._holdsRenewed(held, (), sent)

        def failed(failure: Failure) -> Failure | None:
            if not isConnectionError(failure):
                return failure
            self._holdsRenewed(held, held, sent)  # the session ended, and its locks with it
            return None

        d = self._session.execute(_SQL["heartbeat"], *self._keyHalves, reconnect=False)
        return d.addCallbacks(renewed, failed)

    def _close(self) -> None:
        """
        Cancel the acquires in flight and give up the holds, as lost: for
        L{PostgresLocks.disconnect}.
        """
        # The waiters first: otherwise the holds given up below would let them in.
        for d in list(self._waiting):
            d.cancel()
        DeferredList(self._loseAll(), consumeErrors=True)
