# -*- test-case-name: tests.test_cohort -*-
"""
Lock cohorting (Dice, Marathe and Shavit, 2012): a local lock in front of a remote hold, so that
the coroutines of one lock object share one hold in the store.  Both backends are built on it:
L{txrwlock.postgres} needs it (a session must never hold both modes of a key, nor one key
twice), and L{txrwlock.redis} gains its speed from it (issue 12: readers of one process each made
their own round trips, ~147 µs a pair where the local lock takes ~1 µs).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from txrwlock._remote import _ignore, _RemoteLock
from txrwlock.txrwlock import TxReadersWriterLock

__all__: list[str] = []

_T = TypeVar("_T")
_Cohort = TypeVar("_Cohort", bound="_CohortLock")

# What a remote grant fires with: the fencing token (0 for a reader), and whether the acquire
# queued in the store.
_Grant = tuple[int, bool]


class SharedHold(Generic[_T]):
    """
    The holds of one lock object: a local fair lock decides who of this object's coroutines goes,
    and one remote hold, taken for the first of them and given back after the last, stands for
    them all.

    Local readers share the remote read hold: the first takes it, those that come while it is
    being taken wait for the same grant, later ones join it at once, and the last to leave gives
    it back.  Local writers take the remote write hold in turn; or, with C{passOn}, a writer
    leaving hands the remote write hold to the next local writer, with a new value, as long as
    C{passOn} allows.  So the store sees at most one hold of this object, or one acquire of it, at
    a time: a remote acquire only starts once the previous remote hold is given back (its
    give-back is sent first, so a store that runs one object's commands in order runs them in
    that order).

    B{Contention.}  Once told that a client of the store waits (L{contend}), the remote hold takes
    no new local reader and is not passed on: it is given back when its holders leave, and
    readers that came meanwhile take the next one, behind the client that waits.  So a cohort
    never keeps the store's writers out for longer than its current holders hold.

    @ivar local: the local lock, fair: the object's coroutines go in the order they came (for
        PostgreSQL, the policy across clients too).
    """

    # Invariants:
    #   - _mode is None when this object neither holds nor takes a remote hold, else whether that
    #     hold writes.
    #   - _taking is the remote acquire in flight, or None; then _joiners are the local holders
    #     waiting for it (dropping those cancelled), and _sharers is 0; _takeWaits is whether it
    #     waits (else it is a try, whose joiner is the one trying).
    #   - Else _sharers is the number of local holds that share the remote hold (1 for a writer),
    #     and _value is what the grant fired with (a writer's fencing token).  _passing is the
    #     value of the next local writer while a leaving writer offers it the hold (within
    #     release), else None.
    #   - _next are the local holders waiting for the remote hold to be given back, to take the
    #     next one (readers who found it contended, or being passed on), or for a try's answer.
    #   - _contended: a client of the store waits for the remote hold, as the store said, or the
    #     hold was lost; reset when a remote acquire starts, and by a downgrade.
    #   - The local lock's holders are the _sharers, the _joiners and the _next; its waiters are
    #     the _letting.  One whose remote part fails, whose try the store refuses, or who is
    #     cancelled, gives its local hold back before it is told.

    def __init__(
        self,
        take: Callable[[bool, bool], Deferred[_T | None]],
        give: Callable[[bool], Deferred[bool]],
        passOn: Callable[[_T], _T | None] | None = None,
    ) -> None:
        """
        @param take: C{take(writer, queue)} acquires the remote hold, waiting for it if C{queue}
            (a L{Deferred} of the grant's value, which gives the hold back if cancelled), else
            trying once (L{None} if not taken).
        @param give: C{give(writer)} gives the remote hold back: a L{Deferred} of whether the
            store still had it.
        @param passOn: C{passOn(value)} is the value of the next local writer, if the write hold
            of value C{value} may pass on to it, else L{None}; L{None} if it never may.
        """
        self._take = take
        self._give = give
        self._passOn = passOn
        self.local = TxReadersWriterLock(fair=True)
        self._mode: bool | None = None
        self._taking: Deferred[_T | None] | None = None
        self._takeWaits = True
        # Dicts, as ordered sets: a cancel removes its joiner in O(1).
        self._joiners: dict[Deferred[_T | None], None] = {}
        # The acquires the local lock makes wait, with their waits.
        self._letting: dict[Deferred[_T | None], Deferred[Any]] = {}
        self._next: dict[Deferred[_T | None], None] = {}
        self._sharers = 0
        self._value: _T | None = None
        self._passing: _T | None = None
        self._contended = False

    @property
    def writing(self) -> bool | None:
        """
        Whether the remote hold (held or being taken) writes; L{None} if there is none.
        """
        return self._mode

    @property
    def remoteWaiters(self) -> int:
        """
        How many local holders wait for a remote grant.
        """
        return len(self._joiners) + len(self._next)

    def contend(self) -> None:
        """
        A client of the store waits for the remote hold, or the hold was lost: take no new local
        reader into it, and do not pass it on.
        """
        self._contended = True

    def acquire(
        self,
        writer: bool,
        queue: bool,
        joined: Deferred[_T | None],
        queued: Callable[[], object] | None = None,
    ) -> None:
        """
        Acquire a hold: the local lock's, then the remote one's, or a share of it; fire
        C{joined} with the grant's value, or L{None} if C{not queue} and the hold was not taken
        at once, or a failure.  The caller makes C{joined}, with its callbacks (so that one
        L{Deferred} per acquire carries it: the uncontended pair's CPU time), and a canceller
        that calls L{cancel}.  It may fire before this returns.

        @param queued: called, before this returns, if the local lock makes the acquire wait.
        """
        local = self.local
        if local.tryWriterAcquire() if writer else local.tryReaderAcquire():
            self._join(writer, queue, joined)
        elif not queue:
            joined.callback(None)
        else:
            waiting = local.writerAcquire() if writer else local.readerAcquire()
            if queued is not None:
                queued()
            self._letting[joined] = waiting
            waiting.addCallbacks(self._letIn, _ignore, (writer, joined))

    def cancel(self, joined: Deferred[_T | None]) -> None:
        """
        Give up the acquire of C{joined}, which has not fired: its wait in the local lock, or
        its share of the remote hold being taken (cancelled if nobody else wants it), or its
        wait for the next.  Its local hold, if any, is given back.
        """
        waiting = self._letting.pop(joined, None)
        if waiting is not None:
            waiting.cancel()
        elif joined in self._next:
            del self._next[joined]
            self._localRelease(False)
        else:
            writer = bool(self._mode)
            del self._joiners[joined]
            if not self._joiners and self._taking is not None:
                self._taking.cancel()  # nobody wants it any more
            # After the take is cancelled: whoever the local lock lets in now takes anew.
            self._localRelease(writer)

    def release(self, writer: bool) -> Deferred[bool] | None:
        """
        Give back one hold of this object, C{writer}'s, which must be held: the remote hold too
        if it was the last sharing it, unless it passes on to the next local writer.

        @return: the remote give-back's L{Deferred}, or L{None} if the remote hold stays.
        """
        self._sharers -= 1
        if self._sharers:
            self._localRelease(writer)
            return None
        # Only a local waiter (in _letting) can take the hold on: with none, passOn is not asked.
        if writer and self._letting and not self._contended and self._passOn is not None:
            self._passing = self._passOn(self._value)  # type: ignore[arg-type]
            if self._passing is not None:
                # The local lock lets the next in line in at once, unless this runs within its
                # firing loop: then whoever it lets in comes after the give-back.
                self._localRelease(writer)
                if self._passing is None:
                    return None  # taken (the taker may even have given it back since)
                self._passing = None
                return self._giveBack(writer)
        given = self._giveBack(writer)
        # After the give-back is sent: a local waiter let in now sends its acquire after it.
        self._localRelease(writer)
        return given

    def drop(self) -> Deferred[bool] | None:
        """
        Give back one hold of this object that was lost, unless there is none left (a downgrade
        that failed gave them all up).  A lost remote hold takes nobody new.

        @return: as L{release}.
        """
        if not self._sharers:
            return None
        self._contended = True
        return self.release(bool(self._mode))

    def downgrade(self, remote: Callable[[], Deferred[_T | None]]) -> Deferred[_T | None]:
        """
        Turn the write hold, which must be held, into a read hold, as C{remote()} does for the
        remote one: a L{Deferred} of the read hold's value, or of L{None} if the write hold was
        gone, which calls L{contend} before it fires if a writer waits.  Then the local readers
        first in line share it; if it was gone, the hold is given up here.  If it was dropped
        meanwhile (L{drop}), the read hold the store may have made is given back.

        @return: C{remote()}'s L{Deferred}.
        """

        def done(value: _T | None) -> _T | None:
            if not self._sharers:
                if value is not None:
                    self._give(False)  # a store counting holds per client drops just this one
                return None
            self._value = value
            if value is None:
                self._sharers = 0
                self._mode = None
                self.local.writerRelease()
            else:
                self._mode = False
                self.local.writerDowngrade()
            return value

        # A read hold is contended by the writers only: the store says if one waits.
        self._contended = False
        return remote().addCallback(done)

    def _letIn(self, _: object, writer: bool, joined: Deferred[_T | None]) -> None:
        del self._letting[joined]
        self._join(writer, True, joined)

    def _refuse(self, writer: bool, joined: Deferred[_T | None]) -> None:
        self._localRelease(writer)
        joined.callback(None)

    def _localRelease(self, writer: bool) -> None:
        if writer:
            self.local.writerRelease()
        else:
            self.local.readerRelease()

    def _join(self, writer: bool, queue: bool, joined: Deferred[_T | None]) -> None:
        """
        Share the remote hold of this object, or the one being taken; take one if there is
        none; or wait for the next, if this one may not be shared.  The local lock is held.
        """
        if self._mode is None:
            self._joiners[joined] = None
            self._start(writer, queue)
        elif self._taking is not None:
            # Those that come while it is taken share its grant: the store granted nobody else
            # in between.  (The local lock lets in only the taker's mode meanwhile.)  But a try
            # may be refused: who waits, waits for its answer.
            if not queue:
                self._refuse(writer, joined)
            else:
                (self._joiners if self._takeWaits else self._next)[joined] = None
        elif writer and self._passing is not None:
            self._sharers = 1
            self._value, self._passing = self._passing, None
            joined.callback(self._value)
        elif not writer and self._mode is False and not self._contended:
            self._sharers += 1  # a writer holds the local lock alone: a reader joins readers
            joined.callback(self._value)
        elif queue:
            self._next[joined] = None
        else:
            self._refuse(writer, joined)

    def _start(self, writer: bool, queue: bool) -> None:
        """
        Take a new remote hold, for the L{_joiners} and those that wait for the next one.
        """
        self._mode = writer
        self._contended = False
        if self._next:
            self._joiners.update(self._next)
            self._next = {}
        self._takeWaits = queue
        self._taking = self._take(writer, queue)
        self._taking.addBoth(self._taken)

    def _giveBack(self, writer: bool) -> Deferred[bool]:
        """
        Give the remote hold back; then take the next for the local holders waiting for it.
        """
        self._mode = self._value = None
        given = self._give(writer)
        if self._next:
            self._start(False, True)  # readers: the local lock lets in one mode at a time
        return given

    def _taken(self, result: _T | Failure | None) -> None:
        self._taking = None
        joiners, self._joiners = list(self._joiners), {}
        # Never a grant with no joiners: the last one's cancel cancelled the take, which then
        # failed, here or in take()'s canceller (which gives back a grant that crossed it).
        if result is not None and not isinstance(result, Failure):
            self._value = result
            if not self._contended:
                joiners += self._next  # readers that came during a try share its grant
                self._next = {}
            self._sharers = len(joiners)
            for joined in joiners:
                joined.callback(result)
            return
        writer, self._mode = bool(self._mode), None
        if self._next:
            self._start(False, True)  # readers that came during a try take their own
        for joined in joiners:
            # The local hold goes back before the acquire hears.
            self._localRelease(writer)
            if result is None:
                joined.callback(None)  # a try, refused
            else:
                joined.errback(result)


class _CohortLock(_RemoteLock):
    """
    A remote lock whose acquires go through a L{SharedHold}: the holds of this object (its ids
    count from 0) share one remote hold.  A backend says how to take (L{_take}) and give back
    (L{_give}) the remote hold, when its lease started (L{_leaseStart}) and how to downgrade it
    (L{_downgradeRemote}); this base turns the shared hold's grants into holds.

    A wait runs from the acquire's call, through this object's local lock and the store's queue;
    an acquire granted at its first try waited C{0.0}.
    """

    # Invariants, besides those of _RemoteLock:
    #   - _waiting maps the Deferreds of the acquires that have not fired (and did not at once)
    #     to whether each has been counted as queued (in the local lock, or in the store).
    #   - The remote hold of _hold is held exactly while _holds is not empty, but for the moments
    #     a give-back or a downgrade is on its way.

    def __init__(
        self,
        clock: Any,
        name: str,
        lease: float,
        lost: Callable[[Any, bool], object] | None,
        debug: bool,
        passOn: Callable[[_Grant], _Grant | None] | None = None,
    ) -> None:
        super().__init__(clock, name, lease, lost, debug)
        self._hold: SharedHold[_Grant] = SharedHold(self._take, self._give, passOn)
        self._ids = 0
        self._waiting: dict[Deferred[Any], bool] = {}

    def writerDowngrade(self: _Cohort) -> Deferred[_Cohort]:
        """
        Turn the write hold, atomically, into a read hold, to be released by L{readerRelease};
        waiting readers of every client then go in, as the policy allows.

        No upgrade, as with the local lock: two readers upgrading at once would wait for each
        other for ever.

        @return: a L{Deferred} that fires with the lock once the store has downgraded the hold,
            or fails with L{LockLostError<txrwlock._remote.LockLostError>} if it was lost.
        @raise LockNotHeldError: if this object does not hold the write hold.
        """
        holdId = self._downgrading()

        def downgraded(value: _Grant | None) -> _Cohort:
            if value is None or holdId not in self._holds:
                raise self._downgradeLost(holdId)
            return self

        return self._hold.downgrade(lambda: self._downgradeRemote(holdId)).addCallback(downgraded)

    def __repr__(self) -> str:
        readers = sum(not w for w in self._holds.values())
        local = self._hold.local.statistics()
        return (
            f"<{type(self).__name__} {self.name!r} readers={readers} writing={self.isWriting}"
            f" waiting={local.readersWaiting}r/{local.writersWaiting}w lease={self.lease}>"
        )

    # What a backend provides, besides _RemoteLock's

    @abstractmethod
    def _take(self, writer: bool, queue: bool) -> Deferred[_Grant | None]:
        """
        Take the remote hold, for L{SharedHold}: waiting for it if C{queue}, else trying once
        (L{None} if not taken).  Cancelling the L{Deferred} gives up the wait, and gives back a
        grant that crossed the cancel.
        """

    @abstractmethod
    def _give(self, writer: bool) -> Deferred[bool]:
        """
        Give the remote hold back, for L{SharedHold}.

        @return: a L{Deferred} of whether it was still held; never failing because the store is
            away (a hold given back then is not held, or runs out by itself).
        """

    @abstractmethod
    def _leaseStart(self) -> float:
        """
        @return: when the lease of the remote hold last started, by this object's clock.
        """

    @abstractmethod
    def _downgradeRemote(self, holdId: str) -> Deferred[_Grant | None]:
        """
        Turn the remote write hold, whose local hold is C{holdId}, into a read hold.

        @return: a L{Deferred} of the read hold's value, or of L{None} if the write hold was gone.
        """

    @abstractmethod
    def _closedError(self) -> Exception:
        """
        @return: what an acquire made after this object's connection closed fails with.
        """

    # Acquiring

    def _acquire(self, writer: bool, queue: bool) -> Deferred[Any]:
        if self._closed():
            return fail(self._closedError())
        d: Deferred[Any] = Deferred(self._cancel)
        d.addBoth(self._answered, writer, queue, d)
        waits = self._waits
        self._hold.acquire(writer, queue, d, self._queued)
        if not d.called:
            # The local lock queued it if it called self._queued, which counted it.
            self._waiting[d] = self._waits > waits
        return d

    def _answered(
        self, result: _Grant | Failure | None, writer: bool, queue: bool, d: Deferred[Any]
    ) -> Any:
        """
        The acquire of Deferred C{d} was answered: granted the L{_Grant} C{result}, or, a try,
        refused (L{None}), or failed (cancelled, or the store away).  One callback, the first,
        does it all: two (the grant, then forgetting the wait) cost the uncontended pair eight
        calls more.
        """
        counted = self._waiting.pop(d, None)  # None: answered before _acquire returned
        if result is None or isinstance(result, Failure):
            self._settledUnheld()
            return False if result is None else result
        token, queued = result
        holdId = f"{self._ids}"
        self._ids += 1  # first: _granted's observers may acquire again, at once
        if counted is None:
            self._granted(holdId, writer, token, self._leaseStart())
        else:
            if queued and not counted:
                self._queued()
            self._granted(holdId, writer, token, self._leaseStart(), d, counted or queued)
        return self if queue else True

    def _settledUnheld(self) -> None:
        """
        An acquire ended without a hold: refused, cancelled or failed.
        """

    def _cancel(self, d: Deferred[Any]) -> None:
        """
        Cancel the acquire of Deferred C{d}, still waiting.
        """
        # Whether a cancelled acquire had queued in the store, a store may not say: counted as
        # queued, for waits never to be fewer than cancellations.
        if not self._waiting[d]:
            self._queued()
        self._cancelled(d)
        self._hold.cancel(d)

    # Releasing

    def _sendRelease(self, holdId: str, writer: bool, deadline: float) -> Deferred[None]:
        # Never fails for the store being away (see _give), so the base never sends it again.
        given = self._hold.release(writer)
        if given is not None:
            return given.addCallback(self._released, writer)
        # The remote hold stays, shared or passed on, and the store is not asked: a lease run
        # out by the clock (the process was paused) is a hold lost.
        if self._clock.seconds() >= deadline:
            return fail(self._lostError(writer))
        return succeed(None)

    def _remove(self, holdId: str) -> Deferred[None]:
        d = self._hold.drop()
        if d is None:
            return succeed(None)
        d.addErrback(self._logUnlessConnectionError, "give up a hold")
        return d.addCallback(lambda _: None)
