# -*- test-case-name: tests.test_redis -*-
"""
What the locks kept in a remote store (L{txrwlock.redis}, L{txrwlock.postgres}) share, written
once: holds and their leases, the watchdog that renews them, C{lost} and L{LockLostError}, the
reader and writer sides, and what watches them (counters, observers, C{describe()}).  A backend
adds how to acquire, release, renew and give up a hold.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from inspect import isawaitable
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from txrwlock._observe import Observation, Observer
from txrwlock.txrwlock import LockNotHeldError, LockStatistics, _Side

__all__ = ["MINIMUM_LEASE", "LockLostError", "RemoteLockSide", "checkLease"]

# The shortest lease a lock takes, in seconds: a lease must outlast a round trip to the store with
# room to spare, or every grant is lost at once.
MINIMUM_LEASE = 0.01

# Seconds between two sends of a release or removal that failed with the store away (see
# _RemoteLock._sendAgain).
_RESEND_DELAY = 0.05

_T = TypeVar("_T")
_Remote = TypeVar("_Remote", bound="_RemoteLock")

_log = Logger()


class LockLostError(LockNotHeldError):
    """
    The hold being released was lost: its lease ran out (its renewal failed, or came too late)
    before the release, and another client may have held the lock since.
    """


def checkLease(lease: float) -> None:
    """
    @raise ValueError: if C{lease} is not a finite number of seconds of at least
        L{MINIMUM_LEASE}.
    """
    if not (math.isfinite(lease) and lease >= MINIMUM_LEASE):
        raise ValueError(
            f"lock(): a lease must be a finite number of seconds, at least {MINIMUM_LEASE},"
            f" not {lease!r}"
        )


def _ignore(*args: object) -> None:
    """
    Take any answer, and do nothing with it.
    """


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


class _RemoteLock(ABC):
    """
    A readers/writer lock kept in a remote store: the local lock's API, where a release, a
    try-acquire and L{statistics} wait for the store and so return Deferreds.

    This base keeps the holds of one lock object and their leases: every hold lasts C{lease}
    seconds unless renewed, and this object renews its holds every C{lease / 3} seconds.  A hold
    not renewed in time is lost: it is forgotten here, given up in the store, the C{lost}
    callback is called, and its release fails with L{LockLostError}.  A release or removal that
    fails with the store away is sent again until the store answers or its lease is over.  A
    backend says how to acquire (L{_acquire}), release (L{_sendRelease}), renew
    (L{_renewLeases}) and give up (L{_remove}) a hold in its store, and tells this base when an
    acquire queues (L{_queued}), is granted (L{_granted}) or cancelled (L{_cancelled}).

    It is watched as the local lock is, on its reactor's clock: L{statistics} counts this
    object's grants, waits and cancellations, and times its waits (from the acquire's call, so
    a wait includes the round trips to the store; C{0.0} for an acquire granted at its first
    try); observers (L{addObserver}) hear of its grants, releases (a hold lost is told as
    released) and cancellations; L{describe} lists its holds and waiting acquires, from where
    they came if made with C{debug=True}.  A lost hold is logged, at warn level.
    """

    # Invariants:
    #   - _holds maps the ids this object holds (as the store granted them and has not released
    #     them) to whether the hold writes; at most one writes, and then it is alone.
    #   - _deadlines has the keys of _holds: the local time by which each hold's lease surely
    #     runs out unless renewed (the send time of the last command that set it, plus a lease).
    #     A hold past its deadline is not reported as held (isReading, isWriting, fencingToken),
    #     though _expire, which forgets it, may not have run yet.
    #   - _fencingToken is not None exactly while a hold of _holds writes.
    #   - While there are holds (or a backend's _needsRenewal()), a renewal is scheduled or
    #     running (it may outlive them by one tick), and _expiry is due, at _expiryDue, no
    #     later than the earliest deadline (it fires a few µs after: callLater reads the clock
    #     again).
    #   - _observation knows the acquires whose Deferreds have not fired; _grants counts the
    #     holds granted to this object by side (downgrades too), _waits its acquires that
    #     queued, _cancellations those cancelled.

    _sideType: type[RemoteLockSide[Any]]

    def __init__(
        self,
        clock: _Clock,
        name: str,
        lease: float,
        lost: Callable[[Any, bool], object] | None,
        debug: bool = False,
    ) -> None:
        self._clock = clock
        self._observation = Observation(self, clock, debug)
        self._grants = {False: 0, True: 0}
        self._waits = self._cancellations = 0
        self.name = name
        self.lease = lease
        self._lost = lost
        self._holds: dict[str, bool] = {}
        self._deadlines: dict[str, float] = {}
        self._fencingToken: int | None = None
        self._lostHolds = {False: 0, True: 0}
        self._renewal: _Timer | None = None
        self._renewing = False
        self._expiry: _Timer | None = None
        self._expiryDue = 0.0
        self.reader = self._sideType(self, False)
        self.writer = self._sideType(self, True)

    @property
    def isReading(self) -> bool:
        """
        Whether this object holds at least one read hold whose lease has not run out by the
        clock.
        """
        now = self._clock.seconds()
        return any(not w and self._deadlines[h] > now for h, w in self._holds.items())

    @property
    def isWriting(self) -> bool:
        """
        Whether this object holds the write hold, and its lease has not run out by the clock
        (though the timer that says it is lost may not have run yet: the process was paused).
        """
        return self.fencingToken is not None

    @property
    def fencingToken(self) -> int | None:
        """
        While this object holds the write hold (as L{isWriting}), its fencing token: every write
        acquisition of the name, by any client, gets a larger one.  L{None} otherwise.
        """
        if self._fencingToken is None:
            return None
        # Writing, the hold is alone in _deadlines.
        for deadline in self._deadlines.values():
            if deadline <= self._clock.seconds():
                return None
        return self._fencingToken

    def readerAcquire(self: _Remote) -> Deferred[_Remote]:
        """
        Acquire a read hold.

        @return: a L{Deferred} that fires with the lock once granted.  Cancel it to give up
            waiting.
        """
        return self._acquireWatched(False, True)

    def writerAcquire(self: _Remote) -> Deferred[_Remote]:
        """
        Acquire the write hold.

        @return: a L{Deferred} that fires with the lock once this object holds it alone, after
            the holders and the writers that came before.  Cancel it to give up waiting.
        """
        return self._acquireWatched(True, True)

    def tryReaderAcquire(self) -> Deferred[bool]:
        """
        Take a read hold if that needs no waiting; never wait.

        @return: a L{Deferred} of whether the hold was taken.
        """
        return self._acquireWatched(False, False)

    def tryWriterAcquire(self) -> Deferred[bool]:
        """
        Take the write hold if nobody holds or waits; never wait.

        @return: a L{Deferred} of whether the hold was taken.
        """
        return self._acquireWatched(True, False)

    def readerRelease(self) -> Deferred[None]:
        """
        Give back one read hold of this object: free here at once, and in the store once the
        release reaches it (sent again while the store is away, until the hold's lease is over).

        @return: a L{Deferred} that fires once the store has released it (or the lease is over),
            or fails with L{LockLostError} if it was lost.
        @raise LockNotHeldError: if this object holds no read hold (nor lost one).
        """
        return self._release(False)

    def writerRelease(self) -> Deferred[None]:
        """
        Give back the write hold: free here at once, and in the store once the release reaches
        it (sent again while the store is away, until the hold's lease is over).

        @return: a L{Deferred} that fires once the store has released it (or the lease is over),
            or fails with L{LockLostError} if it was lost.
        @raise LockNotHeldError: if this object does not hold the write hold (nor lost it).
        """
        return self._release(True)

    @abstractmethod
    def writerDowngrade(self: _Remote) -> Deferred[_Remote]:
        """
        Turn the write hold, atomically, into a read hold, to be released by L{readerRelease}.

        @return: a L{Deferred} that fires with the lock once the store has downgraded the hold,
            or fails with L{LockLostError} if it was lost.
        @raise LockNotHeldError: if this object does not hold the write hold.
        """

    @abstractmethod
    def statistics(self) -> Deferred[LockStatistics]:
        """
        @return: a L{Deferred} of a snapshot of the lock's holders and waiters, and of this
            object's counters.
        """

    def addObserver(self, observer: Observer) -> None:
        """
        Call C{observer} with a L{LockEvent<txrwlock.LockEvent>} at every grant to this object,
        release (or loss) of one of its holds, and cancellation of one of its acquires, as
        L{TxReadersWriterLock.addObserver<txrwlock.TxReadersWriterLock.addObserver>}.
        """
        self._observation.add(observer)

    def removeObserver(self, observer: Observer) -> None:
        """
        Stop calling C{observer} (once, if it was added more than once).

        @raise ValueError: if C{observer} does not observe this lock; nothing then changes.
        """
        self._observation.remove(observer)

    def describe(self) -> str:
        """
        Say what this object holds and which of its acquires wait, for a human debugging a
        stuck service, as L{TxReadersWriterLock.describe<txrwlock.TxReadersWriterLock.describe>}:
        the holds and waiters of other clients are not known here (L{statistics} counts them).
        """
        readers = sum(not writer for writer in self._holds.values())
        observation = self._observation
        return observation.describe(repr(self), readers, self.isWriting, observation.waiters())

    def _statistics(
        self, readers: int, writing: bool, readersWaiting: int, writersWaiting: int
    ) -> LockStatistics:
        """
        @return: a snapshot of the store's holders and waiters, as given, with this object's
            counters.
        """
        return LockStatistics(
            readers,
            writing,
            readersWaiting,
            writersWaiting,
            readerGrants=self._grants[False],
            writerGrants=self._grants[True],
            waits=self._waits,
            cancellations=self._cancellations,
            longestWait=self._observation.longestWait,
            oldestWaiting=self._observation.oldestWaiting(),
        )

    def _acquireWatched(self, writer: bool, queue: bool) -> Deferred[Any]:
        d = self._acquire(writer, queue)
        if not d.called:  # else answered at once: granted, refused, or closed
            self._observation.waiting(d, writer)
            d.addBoth(self._observation.settled, d)
        return d

    # What a backend provides

    @abstractmethod
    def _acquire(self, writer: bool, queue: bool) -> Deferred[Any]:
        """
        Acquire a hold, waiting for it if C{queue}, else trying once; call L{_granted} when the
        store grants it.

        @return: a L{Deferred} of the lock when C{queue}, else of whether the hold was taken.
        """

    @abstractmethod
    def _sendRelease(self, holdId: str, writer: bool, deadline: float) -> Deferred[None]:
        """
        Release the hold C{holdId}, of deadline C{deadline}, in the store, already forgotten
        here.  While the store is away, send it again (see L{_sendAgain}) until its lease is
        over; one sent after its lease ran out by the clock (the process was paused) is answered
        as not held, unless the store says otherwise: nobody else may have held it since.

        @return: a L{Deferred} that fires once the store has answered (at once, if the hold
            leaves a remote hold in place: shared, or passed on), and fails as L{_released} says
            if the hold was no longer there.
        """

    @abstractmethod
    def _renewLeases(self, held: list[str]) -> Deferred[None] | None:
        """
        Renew the leases of the holds C{held} (and whatever else of this object's has a lease in
        the store); call L{_holdsRenewed} with the store's answer.

        @return: a L{Deferred} that fires once done, or L{None} if there was nothing to renew.
        """

    @abstractmethod
    def _remove(self, holdId: str) -> Deferred[None]:
        """
        Drop the hold or place C{holdId} in the store, for nobody's sake: sent again while the
        store is away (see L{_sendAgain}), until its lease has run out.  Never fails.
        """

    @abstractmethod
    def _isConnectionError(self, failure: Failure) -> bool:
        """
        @return: whether C{failure} says the store is away, which is no news (a lease runs out,
            or the next renewal tries again).
        """

    def _needsRenewal(self) -> bool:
        """
        @return: whether something besides the holds has a lease to renew: a waiter's place.
        """
        return False

    # Holds

    def _queued(self) -> None:
        """
        An acquire of this object failed its first try: it waits.
        """
        self._waits += 1

    def _granted(
        self,
        holdId: str,
        writer: bool,
        token: int,
        sent: float,
        d: Deferred[Any] | None = None,
        waited: bool = False,
    ) -> None:
        """
        The store granted the hold C{holdId}, by a command sent at C{sent}, to the acquire of
        Deferred C{d} (about to fire; C{waited}: if it had queued), or (C{d} L{None}) to one
        granted before it returned its Deferred; C{token} is its fencing token, if a writer's.
        """
        self._holds[holdId] = writer
        self._deadlines[holdId] = sent + self.lease
        if writer:
            self._fencingToken = token
        self._grants[writer] += 1
        if d is None:
            self._observation.grantedAtOnce(writer)
        else:
            self._observation.granted(d, writer, atOnce=not waited)
        self._watch(sent + self.lease)

    def _cancelled(self, d: Deferred[Any]) -> None:
        """
        The acquire of Deferred C{d} was cancelled before its grant.
        """
        self._cancellations += 1
        self._observation.cancelled(d)

    def _downgrading(self) -> str:
        """
        Make this object's write hold a read hold, here, for C{writerDowngrade()}: the backend
        then has the store do the same.

        @return: the hold's id.
        @raise LockNotHeldError: if this object does not hold the write hold; nothing changes.
        """
        holdId = self._writerId()
        if holdId is None:
            raise LockNotHeldError(f"writerDowngrade() called, but {self!r} does not write")
        self._holds[holdId] = False
        self._fencingToken = None
        self._grants[False] += 1
        self._observation.released(writer=True)
        self._observation.grantedAtOnce(writer=False)
        return holdId

    def _downgradeLost(self, holdId: str) -> LockLostError:
        """
        The store had no longer the write hold C{holdId} that was being downgraded: forget it.

        @return: the error of the downgrade.
        """
        self._forget(holdId)
        return LockLostError(f"writerDowngrade() of {self!r}: the write hold was lost")

    def _writerId(self) -> str | None:
        if self._fencingToken is None:
            return None
        return next(holdId for holdId, writer in self._holds.items() if writer)

    def _release(self, writer: bool) -> Deferred[None]:
        for holdId, w in self._holds.items():
            if w == writer:
                deadline = self._deadlines[holdId]
                self._forget(holdId)
                self._observation.released(writer)
                return self._sendRelease(holdId, writer, deadline)
        if self._lostHolds[writer]:
            self._lostHolds[writer] -= 1
            return fail(self._lostError(writer))
        raise LockNotHeldError(
            f"{self._releaseCall(writer)} called, but {self!r} holds no"
            f" {'write' if writer else 'read'} hold"
        )

    def _released(self, held: bool, writer: bool) -> None:
        """
        The store answered a release: C{held} is whether the hold was still there.

        @raise LockLostError: if it was not.
        """
        if not held:
            raise self._lostError(writer)

    def _sendAgain(
        self, failure: Failure, again: Callable[[], Deferred[None]], deadline: float
    ) -> Deferred[None]:
        """
        A release, or a removal, failed with C{failure}.  If the store is away, send it again
        (C{again()}) once it is back, until the store answers or the lease of what it gives up
        has run out, at C{deadline} (then the store drops it by itself): the waiters of every
        client need not wait for the lease.

        @return: a L{Deferred} that fires once the store answered, or at C{deadline}, or fails
            with a failure other than the store being away.
        """
        if not self._isConnectionError(failure) or self._closed():
            return fail(failure)
        done: Deferred[None] = Deferred()

        def send() -> None:
            again().addCallbacks(finish, failed)

        def failed(failure: Failure) -> None:
            if done.called:
                return
            if not self._isConnectionError(failure) or self._closed():
                finish(failure)
            elif self._clock.seconds() < deadline:
                # A send waits for the connection; one that fails at once is not sent again in
                # the same turn, nor more than 20 times a second.
                self._clock.callLater(_RESEND_DELAY, send)
            else:
                finish(None)

        def finish(result: Failure | None) -> None:
            if done.called:
                return
            if timer.active():
                timer.cancel()
            if result is None:
                done.callback(None)
            else:
                done.errback(result)

        # When the lease runs out, the store drops what is given up if nothing reached it: done.
        timer = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), finish, None)
        failed(failure)
        return done

    def _lostError(self, writer: bool) -> LockLostError:
        return LockLostError(f"{self._releaseCall(writer)}: the hold of {self!r} was lost")

    @staticmethod
    def _releaseCall(writer: bool) -> str:
        return "writerRelease()" if writer else "readerRelease()"

    def _forget(self, holdId: str) -> None:
        if self._holds.pop(holdId, False):
            self._fencingToken = None
        self._deadlines.pop(holdId, None)

    def _logUnlessConnectionError(self, failure: Failure, what: str) -> None:
        if not self._isConnectionError(failure):
            _log.failure("{lock!r} could not {what}", failure, lock=self, what=what)

    # Leases

    def _closed(self) -> bool:
        """
        @return: whether this object's connection to the store is closed for good.
        """
        return False

    def _watch(self, added: float | None = None) -> None:
        """
        Renew the leases every lease/3 while there is anything to renew, and watch the deadline
        of the earliest.

        Timers are left to lapse, not cancelled, when there is nothing left to watch: after the
        first, an uncontended acquire and release set no timer (measured on Redis: setting and
        cancelling two timers cost 6 µs, of about 380 µs of client CPU time per pair).

        @param added: the deadline of a hold just granted, if nothing else changed since the
            invariants last held: the earliest is then found without going over every hold (a
            coroutine joining the object's shared hold cost O(holds)).
        """
        if self._closed():
            return
        if self._renewal is None and not self._renewing and (self._holds or self._needsRenewal()):
            self._renewal = self._clock.callLater(self.lease / 3, self._renew)
        if added is not None and self._expiry is not None:
            first = added  # the earliest, unless the timer is due sooner already
        elif self._deadlines:
            first = min(self._deadlines.values())
        else:
            return
        # A timer that fires early (a renewal pushed the deadline back) comes back here.
        if self._expiry is None or self._expiryDue > first:
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiryDue = first
            self._expiry = self._clock.callLater(
                max(0.0, first - self._clock.seconds()), self._expire
            )

    def _renew(self) -> None:
        self._renewal = None
        renewing = self._renewLeases(list(self._holds))
        if renewing is None:
            return  # idle: _watch sets the timer again when needed
        self._renewing = True

        def done(_: object) -> None:
            # Failed or not, the next tick renews; _expire drops what runs out meanwhile.
            self._renewing = False
            self._watch()

        renewing.addErrback(self._logUnlessConnectionError, "renew its leases").addCallback(done)

    def _holdsRenewed(self, held: list[str], gone: Collection[str], sent: float) -> None:
        """
        The store renewed, by a command sent at C{sent}, the leases of the holds C{held} but
        C{gone}, which it had no longer: those are lost.
        """
        for holdId in held:
            if holdId not in self._holds:
                continue
            if holdId in gone:
                self._loseHold(holdId)
            else:
                self._extend(holdId, sent)

    def _extend(self, holdId: str, sent: float) -> None:
        if holdId in self._deadlines:
            self._deadlines[holdId] = max(self._deadlines[holdId], sent + self.lease)

    def _expire(self) -> None:
        self._expiry = None
        now = self._clock.seconds()
        for holdId, deadline in list(self._deadlines.items()):
            # A lost callback may have released a hold that ran out too.
            if deadline <= now and holdId in self._holds:
                self._loseHold(holdId)
        self._watch()

    def _loseHold(self, holdId: str) -> Deferred[None]:
        """
        Give up the hold C{holdId} as lost, here and in the store, and say so.

        @return: its removal from the store.
        """
        writer = self._holds[holdId]
        self._forget(holdId)
        self._lostHolds[writer] += 1
        _log.warn(
            "Lock {lockName!r} lost a {kind} hold ({lock!r})",
            lock=self,
            lockName=self.name,
            kind="write" if writer else "read",
        )
        self._observation.released(writer)
        removal = self._remove(holdId)
        if self._lost is not None:
            try:
                self._lost(self, writer)
            except Exception:
                _log.failure("the lost callback of {lock!r} failed", lock=self)
        return removal

    def _loseAll(self) -> list[Deferred[None]]:
        """
        Stop the lease timers and give up every hold as lost, for a backend closing its
        connection.

        @return: the removals sent.
        """
        for timer in (self._renewal, self._expiry):
            if timer is not None and timer.active():
                timer.cancel()
        self._renewal = self._expiry = None
        self._deadlines.clear()
        # A lost callback may release a hold not yet given up.
        return [self._loseHold(holdId) for holdId in list(self._holds) if holdId in self._holds]


class RemoteLockSide(_Side[_Remote]):
    """
    One side, reader or writer, of a lock kept in a remote store: C{lock.reader} or
    C{lock.writer}, as L{LockSide<txrwlock.LockSide>} of the local lock, with C{async with} and
    L{run}; the release waits for the store.  So L{run}'s Deferred fires once the release is
    done, and fails with L{LockLostError} if C{f} succeeded but the hold was lost meanwhile.
    """

    __slots__ = ()

    def acquire(self) -> Deferred[_Remote]:
        """
        Acquire this side: a L{Deferred} that fires with the lock once granted.
        """
        return self._lock._acquireWatched(self._writer, True)

    def tryAcquire(self) -> Deferred[bool]:
        """
        Take this side if that needs no waiting: a L{Deferred} of whether it was taken.
        """
        return self._lock._acquireWatched(self._writer, False)

    def release(self) -> Deferred[None]:
        """
        Release this side: a L{Deferred} that fires once the store has released it.

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
            released.addErrback(
                lambda f: _log.failure("release in run() of {lock!r}", f, lock=self._lock)
            )
        return released.addCallback(lambda _: result)

    def __aexit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> Deferred[Literal[False]]:
        released = self.release()
        if excValue is not None:
            released.addErrback(
                lambda f: _log.failure("release in async with of {lock!r}", f, lock=self._lock)
            )
        return released.addCallback(lambda _: False)
