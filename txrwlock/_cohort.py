# -*- test-case-name: tests.test_cohort -*-
"""
A local lock in front of a remote hold, so that the coroutines of one lock object share one hold
in the store: what L{txrwlock.postgres} needs (a session must never hold both modes of a key, nor
one key twice), and the Redis readers could use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from txrwlock.txrwlock import TxReadersWriterLock

__all__: list[str] = []

_T = TypeVar("_T")


class SharedHold(Generic[_T]):
    """
    The holds of one lock object: a local fair lock decides who of this object's coroutines goes,
    and one remote hold, taken for the first of them and given back after the last, stands for
    them all.

    Local readers share the remote read hold: the first takes it, those that come while it is
    being taken wait for the same grant, later ones join it at once, and the last to leave gives
    it back.  Local writers take and give back the remote write hold one at a time.  So the store
    sees at most one hold of this object, or one acquire of it, at a time: a remote acquire only
    starts when the local lock grants, which it does once the previous remote hold is given back
    (its give-back is sent first, so a store that runs one object's commands in order runs them
    in that order).

    @ivar local: the local lock, fair, so that the policy here is the one across clients.
    """

    # Invariants:
    #   - _mode is None when this object neither holds nor takes a remote hold, else whether that
    #     hold writes.
    #   - _taking is the remote acquire in flight, or None; then _joiners are the local holders
    #     waiting for it (dropping those cancelled), and _sharers is 0.
    #   - Else _sharers is the number of local holds that share the remote hold (1 for a writer),
    #     and _value is what the grant fired with (a writer's fencing token).
    #   - The local lock's holders are the _sharers and the _joiners: one whose remote part
    #     fails, or whose try the store refuses, gives its local hold back before it is told.

    def __init__(
        self,
        take: Callable[[bool, bool], Deferred[_T | None]],
        give: Callable[[bool], Deferred[Any]],
    ) -> None:
        """
        @param take: C{take(writer, queue)} acquires the remote hold, waiting for it if C{queue}
            (a L{Deferred} of the grant's value, which gives the hold back if cancelled), else
            trying once (L{None} if not taken).
        @param give: C{give(writer)} gives the remote hold back.
        """
        self._take = take
        self._give = give
        self.local = TxReadersWriterLock(fair=True)
        self._mode: bool | None = None
        self._taking: Deferred[_T | None] | None = None
        # A dict, as an ordered set: a cancel removes its joiner in O(1).
        self._joiners: dict[Deferred[_T | None], None] = {}
        self._sharers = 0
        self._value: _T | None = None

    @property
    def writing(self) -> bool | None:
        """
        Whether the remote hold (held or being taken) writes; L{None} if there is none.
        """
        return self._mode

    def acquire(self, writer: bool, queue: bool) -> Deferred[_T | None]:
        """
        Acquire a hold: the local lock's, then the remote one's, or a share of it.

        @return: a L{Deferred} of the grant's value; L{None} if C{not queue} and the hold was not
            taken at once.  Cancelling it gives up the wait, local or remote.
        """
        if not queue:
            local = self.local
            if not (local.tryWriterAcquire() if writer else local.tryReaderAcquire()):
                return succeed(None)
            return self._join(writer, False).addBoth(self._keepIfTaken, writer)
        waiting = self.local.writerAcquire() if writer else self.local.readerAcquire()
        return waiting.addCallback(self._joinOrLeave, writer)

    def release(self, writer: bool) -> Deferred[Any]:
        """
        Give back one hold of this object, C{writer}'s, which must be held: the remote hold too
        if it was the last sharing it.

        @return: the remote give-back's L{Deferred}, or L{None} in one if others still share it.
        """
        self._sharers -= 1
        if self._sharers:
            given: Deferred[Any] = succeed(None)
        else:
            self._mode = self._value = None
            given = self._give(writer)
        # After the give-back is sent: a local waiter let in now sends its acquire after it.
        self._localRelease(writer)
        return given

    def drop(self) -> Deferred[Any]:
        """
        Give back one hold of this object that was lost, unless there is none left (a downgrade
        that failed gave them all up).

        @return: as L{release}.
        """
        if not self._sharers:
            return succeed(None)
        return self.release(bool(self._mode))

    def downgrade(self, remote: Callable[[], Deferred[_T | None]]) -> Deferred[_T | None]:
        """
        Turn the write hold, which must be held, into a read hold, as C{remote()} does for the
        remote one: a L{Deferred} of the read hold's value, or of L{None} if the write hold was
        gone.  Then the local readers first in line share it; if it was gone, the hold is given
        up here.  If it was dropped meanwhile (L{drop}), the read hold the store may have made
        is given back.

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

        return remote().addCallback(done)

    def _joinOrLeave(self, _: object, writer: bool) -> Deferred[_T | None]:
        # The local lock is held from here: if the remote part fails, or is cancelled, give it
        # back.
        return self._join(writer, True).addErrback(self._leave, writer)

    def _leave(self, failure: Failure, writer: bool) -> Failure:
        self._localRelease(writer)
        return failure

    def _keepIfTaken(self, result: _T | Failure | None, writer: bool) -> _T | Failure | None:
        if result is None or isinstance(result, Failure):
            self._localRelease(writer)
        return result

    def _localRelease(self, writer: bool) -> None:
        if writer:
            self.local.writerRelease()
        else:
            self.local.readerRelease()

    def _join(self, writer: bool, queue: bool) -> Deferred[_T | None]:
        """
        Share the remote hold of this object, taking it if there is none.
        """
        if self._sharers and self._mode == writer:
            self._sharers += 1  # a reader: a writer holds the local lock alone
            return succeed(self._value)
        if self._taking is not None:
            if not queue:
                return succeed(None)  # a try does not wait for another's acquire
            joined: Deferred[_T | None] = Deferred(self._unjoin)
            self._joiners[joined] = None
            return joined
        self._mode = writer
        joined = Deferred(self._unjoin)
        self._joiners[joined] = None
        self._taking = self._take(writer, queue)
        self._taking.addBoth(self._taken)
        return joined

    def _unjoin(self, joined: Deferred[_T | None]) -> None:
        del self._joiners[joined]
        if not self._joiners and self._taking is not None:
            self._taking.cancel()  # nobody wants it any more

    def _taken(self, result: _T | Failure | None) -> None:
        self._taking = None
        joiners, self._joiners = list(self._joiners), {}
        # Never a grant with no joiners: the last one's cancel cancelled the take, which then
        # failed, here or in take()'s canceller (which gives back a grant that crossed it).
        if result is None or isinstance(result, Failure):
            self._mode = None
        else:
            self._sharers = len(joiners)
            self._value = result
        for joined in joiners:
            joined.callback(result)  # a Failure errbacks
