# -*- test-case-name: tests.test_txrwlock -*-
"""
A readers/writer lock for Twisted, built on Deferreds.

Everything here runs in the reactor thread and needs no reactor: a grant fires the waiter's
Deferred at once, and time (for timeouts) comes from whoever calls C{addTimeout}.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from inspect import iscoroutine
from types import TracebackType
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from twisted.internet.defer import Deferred, ensureDeferred, succeed

__all__ = ["LockNotHeldError", "LockSide", "LockStatistics", "TxReadersWriterLock"]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_Lock = TypeVar("_Lock", bound="TxReadersWriterLock")


class LockNotHeldError(RuntimeError):
    """
    A release or downgrade was called for a side of the lock that nobody holds.

    The lock is left exactly as it was, and keeps working.
    """


@dataclass(frozen=True)
class LockStatistics:
    """
    A snapshot of a L{TxReadersWriterLock}, from L{TxReadersWriterLock.statistics}.

    @ivar readers: how many readers hold the lock.
    @ivar writing: whether a writer holds it.
    @ivar readersWaiting: readers queued for it (cancelled ones are not counted).
    @ivar writersWaiting: writers queued for it (cancelled ones are not counted).
    """

    readers: int
    writing: bool
    readersWaiting: int
    writersWaiting: int


class _Waiters(ABC):
    """
    The queue of waiting acquires, in the order the policy serves them.

    A cancelled waiter is dropped at once when it heads its queue, else left in place (dead,
    counted in _dead) and skipped when it gets there: finding it would cost a scan.  Invariants:
    the head of each queue is live; the dead never outnumber the live, since the queues are
    compacted (one linear pass) whenever they would.  So a cancel costs amortised O(1), and a
    lock held for hours by a stuck holder, with waiters timing out and retrying, does not grow
    without bound.  (A waiter whose Deferred its caller fired, a misuse, is skipped as dead
    though never counted: the count then runs low, which only delays a compaction.)

    @ivar blockers: the waiters that a reader arriving at a lock held by readers queues behind:
        the waiting writers under writer preference, every waiter in fair mode.  Non-empty
        exactly when someone waits whom the last reader's leaving may let in.
    """

    __slots__ = ("_dead", "blockers")

    def __init__(self) -> None:
        self.blockers: deque[Deferred[Any]] = deque()
        self._dead = 0

    @abstractmethod
    def append(self, d: Deferred[Any], writer: bool) -> None:
        """
        Queue the waiter C{d}, a writer or a reader.
        """

    @abstractmethod
    def nextIsWriter(self) -> bool | None:
        """
        @return: whether the next waiter to serve is a writer; L{None} if nobody waits.
        """

    def popNext(self) -> Deferred[Any]:
        """
        Remove and return the next waiter to serve, which must exist.
        """
        d = self._popHead(self._nextQueue())
        self._compactIfMostlyDead(None)
        return d

    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """
        @return: how many live readers and writers wait.
        """

    @abstractmethod
    def _queues(self) -> tuple[deque[Deferred[Any]], ...]:
        """
        @return: the queues of waiters, for L{discard} and L{_compact}.
        """

    def discard(self, d: Deferred[Any]) -> bool:
        """
        Forget the waiter C{d}, which is being cancelled.

        @return: whether it headed a queue: only then can its leaving let others go, since
            whoever waits behind a waiter waits at least as long as it does.
        """
        for queue in self._queues():
            if queue and queue[0] is d:
                self._popHead(queue)
                self._compactIfMostlyDead(None)
                return True
        # Not at a head: it stays queued, known by its fired Deferred once it gets there.
        self._dead += 1
        self._compactIfMostlyDead(d)
        return False

    def _compactIfMostlyDead(self, cancelling: Deferred[Any] | None) -> None:
        if self._dead and self._dead * 2 > sum(map(len, self._queues())):
            self._compact(cancelling)

    @abstractmethod
    def _nextQueue(self) -> deque[Deferred[Any]]:
        """
        @return: the queue whose head is the next waiter to serve.
        """

    @abstractmethod
    def _popHead(self, queue: deque[Deferred[Any]]) -> Deferred[Any]:
        """
        Remove and return the head of C{queue}, then drop the cancelled waiters that now head it.
        """

    @abstractmethod
    def _compact(self, cancelling: Deferred[Any] | None) -> None:
        """
        Drop every cancelled waiter, and C{cancelling}, whose Deferred is not fired yet.
        """


class _WriterPreferring(_Waiters):
    """
    Readers and writers in two FIFO queues: any waiting writer goes before every waiting reader.
    """

    __slots__ = ("_readers",)

    def __init__(self) -> None:
        super().__init__()  # blockers holds the writers
        self._readers: deque[Deferred[Any]] = deque()

    def append(self, d: Deferred[Any], writer: bool) -> None:
        (self.blockers if writer else self._readers).append(d)

    def nextIsWriter(self) -> bool | None:
        if self.blockers:
            return True
        return False if self._readers else None

    def _nextQueue(self) -> deque[Deferred[Any]]:
        return self.blockers or self._readers

    def counts(self) -> tuple[int, int]:
        return _live(self._readers), _live(self.blockers)

    def _queues(self) -> tuple[deque[Deferred[Any]], ...]:
        return self.blockers, self._readers

    def _popHead(self, queue: deque[Deferred[Any]]) -> Deferred[Any]:
        d = queue.popleft()
        while queue and queue[0].called:
            queue.popleft()
            self._dead -= 1
        return d

    def _compact(self, cancelling: Deferred[Any] | None) -> None:
        for queue in self._queues():
            live = [d for d in queue if not d.called and d is not cancelling]
            queue.clear()
            queue.extend(live)
        self._dead = 0


class _Fair(_Waiters):
    """
    Readers and writers in one FIFO queue, in arrival order.
    """

    __slots__ = ("_writers",)

    def __init__(self) -> None:
        super().__init__()  # blockers holds every waiter
        # Parallel to blockers: whether each waiter is a writer.  Two deques of plain
        # references cost no allocation per waiter, where one deque of pairs would.
        self._writers: deque[bool] = deque()

    def append(self, d: Deferred[Any], writer: bool) -> None:
        self.blockers.append(d)
        self._writers.append(writer)

    def nextIsWriter(self) -> bool | None:
        return self._writers[0] if self._writers else None

    def _nextQueue(self) -> deque[Deferred[Any]]:
        return self.blockers

    def counts(self) -> tuple[int, int]:
        writers = sum(
            1 for d, w in zip(self.blockers, self._writers, strict=True) if w and not d.called
        )
        return _live(self.blockers) - writers, writers

    def _queues(self) -> tuple[deque[Deferred[Any]], ...]:
        return (self.blockers,)

    def _popHead(self, queue: deque[Deferred[Any]]) -> Deferred[Any]:
        self._writers.popleft()
        d = queue.popleft()
        while queue and queue[0].called:
            queue.popleft()
            self._writers.popleft()
            self._dead -= 1
        return d

    def _compact(self, cancelling: Deferred[Any] | None) -> None:
        live = [
            (d, w)
            for d, w in zip(self.blockers, self._writers, strict=True)
            if not d.called and d is not cancelling
        ]
        self.blockers.clear()
        self._writers.clear()
        for d, w in live:
            self.append(d, w)
        self._dead = 0


def _live(queue: deque[Deferred[Any]]) -> int:
    return sum(1 for d in queue if not d.called)


class TxReadersWriterLock:
    """
    A readers/writer lock for Deferreds: many readers may hold it at once, a writer holds it
    alone.

    Readers use L{readerAcquire} and L{readerRelease}, writers L{writerAcquire} and
    L{writerRelease}.  An acquire returns a L{Deferred} that fires with the lock once it is
    granted: at once (synchronously) when it can be, else when holders release.  A release
    returns an already-fired Deferred, so both read the same in C{inlineCallbacks}::

        @inlineCallbacks
        def readSomething():
            yield lock.readerAcquire()
            try:
                ...  # read the shared data
            finally:
                yield lock.readerRelease()

    and in coroutines, more shortly, through the L{reader} and L{writer} sides::

        async def writeSomething():
            async with lock.writer:
                ...  # change the shared data

    B{Policy.}  By default, as txrwlock 1.1, the lock prefers writers: while a writer holds or
    waits, new readers queue; writers are served in arrival order; when no writer holds or waits,
    every waiting reader goes in, all together, their Deferreds fired in arrival order.  Readers
    can starve under a steady stream of writers.  With C{fair=True}, waiters are served strictly
    in arrival order, as in the fair modes of Java's C{ReentrantReadWriteLock} and tokio's
    C{RwLock}: the readers at the head of the queue go in together, a reader queued behind a
    waiting writer waits for it, and a reader arriving while anyone waits queues.  Nobody
    starves.  A timeline (C{=} holding, C{.} waiting), where R1 reads when W1, R2 and W2 arrive
    in that order::

        writer preference            fair
        R1 ====|                     R1 ====|
        W1  ...|====|                W1  ...|====|
        R2   ..|....|....|====       R2   ..|....|====|
        W2    .|....|====|           W2    .|....|....|====

    Under writer preference W2 overtakes R2, who came first; in fair mode it does not.

    B{Cancellation.}  C{cancel()} on a waiting acquire (directly, by C{addTimeout}, or by
    cancelling an C{inlineCallbacks} or coroutine waiting on it) removes the waiter, lets in
    whoever can go then (readers queued behind a cancelled writer go in, unless another writer
    waits under writer preference, or is ahead of them in fair mode), and only then errbacks the
    acquire with L{CancelledError<twisted.internet.defer.CancelledError>}.  Cancelling an
    acquire whose Deferred has fired does nothing to the lock: its caller holds it, and must
    release it even if a Deferred chained to the acquire is cancelled (L{LockSide.run} and
    C{async with} do).  An acquire whose Deferred ends in C{CancelledError} never holds the
    lock, even one cancelled after its grant but before its Deferred fired (by the callback of
    a reader admitted in the same batch): the cancel takes its grant back at once.

    B{Misuse.}  Releasing a side that is not held raises L{LockNotHeldError} and changes nothing.

    The lock belongs to the reactor thread; use it from no other.

    @ivar reader: the L{LockSide} of readers, made once per lock.
    @ivar writer: the L{LockSide} of writers, made once per lock.
    """

    # Invariants, kept by every method:
    #   - _writing implies _readers == 0.
    #   - If the lock is free (no reader, no writer), nobody waits: _grant runs, to completion,
    #     wherever a holder leaves or a waiter at the head of a queue is cancelled.
    #   - _readers and _writing count the waiters granted whose Deferreds are not fired yet:
    #     _ready holds them in grant order, _granted maps each to whether it is a writer (so that a
    #     cancel finds it in O(1) to take its grant back).  _ready is non-empty exactly while the
    #     firing loop of _wake runs; it may also hold Deferreds whose grant was taken back.
    #   - _cancelling is the waiter whose cancel is running (the innermost, if a callback fired
    #     by one cancels another), else None: the cancel handler is entered once per waiter.
    #   - _blockers is _waiters.blockers: an alias that saves the uncontended reader
    #     pair two attribute look-ups, 1 to 4% of its time (measured on a shared machine).
    __slots__ = (
        "__weakref__",
        "_blockers",
        "_cancelling",
        "_granted",
        "_readers",
        "_ready",
        "_waiters",
        "_writing",
        "reader",
        "writer",
    )

    def __init__(self, fair: bool = False) -> None:
        """
        @param fair: serve waiters strictly in arrival order, instead of preferring writers.
        """
        self._readers = 0
        self._writing = False
        self._waiters: _Waiters = _Fair() if fair else _WriterPreferring()
        self._blockers = self._waiters.blockers
        self._ready: deque[Deferred[Any]] = deque()
        self._granted: dict[Deferred[Any], bool] = {}
        self._cancelling: Deferred[Any] | None = None
        self.reader = LockSide(self, writer=False)
        self.writer = LockSide(self, writer=True)

    @property
    def fair(self) -> bool:
        """
        Whether waiters are served strictly in arrival order (else writers are preferred).
        """
        return isinstance(self._waiters, _Fair)

    @property
    def isReading(self) -> bool:
        """
        Whether at least one reader holds the lock (waiters do not count).
        """
        return self._readers > 0

    @property
    def isWriting(self) -> bool:
        """
        Whether a writer holds the lock (waiters do not count).
        """
        return self._writing

    def readerAcquire(self: _Lock) -> Deferred[_Lock]:
        """
        Acquire the lock for reading.

        @return: a L{Deferred} that fires with the lock once a read hold is granted: at once if no
            writer holds the lock and nobody who goes first waits (under writer preference: no
            writer; in fair mode: nobody), else when the policy lets this reader in.  Cancel it
            to give up waiting.
        """
        # tryReaderAcquire, inlined: this is the hot path.
        if not self._writing and not self._blockers:
            self._readers += 1
            return succeed(self)
        return self._wait(writer=False)

    def writerAcquire(self: _Lock) -> Deferred[_Lock]:
        """
        Acquire the lock for writing.

        @return: a L{Deferred} that fires with the lock once this writer holds it alone: at once
            if the lock is free, else after the holders, and the waiters served before it, leave.
            Cancel it to give up waiting.
        """
        if not self._readers and not self._writing:
            self._writing = True
            return succeed(self)
        return self._wait(writer=True)

    def tryReaderAcquire(self) -> bool:
        """
        Take a read hold if that needs neither waiting nor jumping the queue.

        @return: whether the hold was taken.  Never queues.
        """
        if self._writing or self._blockers:
            return False
        self._readers += 1
        return True

    def tryWriterAcquire(self) -> bool:
        """
        Take the write hold if the lock is free (then nobody waits).

        @return: whether the hold was taken.  Never queues.
        """
        if self._readers or self._writing:
            return False
        self._writing = True
        return True

    def readerRelease(self) -> Deferred[None]:
        """
        Give back one read hold; when it is the last, let in whoever can go now.

        @return: an already-fired L{Deferred}, so that C{yield lock.readerRelease()} reads as with
            txrwlock 1.1.
        @raise LockNotHeldError: if no reader holds the lock; nothing then changes.
        """
        # One read of self._readers, into a local: about 4% of the uncontended reader pair.
        readers = self._readers - 1
        if readers < 0:
            raise LockNotHeldError(
                f"readerRelease() called, but no reader holds the lock: {self!r}"
            )
        self._readers = readers
        # Only the last reader's leaving can let anyone in, and only someone readers block.
        if not readers and self._blockers:
            self._wake()
        return succeed(None)

    def writerRelease(self) -> Deferred[None]:
        """
        Give back the write hold and let in whoever can go now.

        @return: an already-fired L{Deferred}.
        @raise LockNotHeldError: if no writer holds the lock; nothing then changes.
        """
        if not self._writing:
            raise LockNotHeldError(
                f"writerRelease() called, but no writer holds the lock: {self!r}"
            )
        self._writing = False
        if self._waiters.nextIsWriter() is not None:
            self._wake()
        return succeed(None)

    def writerDowngrade(self: _Lock) -> Deferred[_Lock]:
        """
        Turn the write hold, atomically, into a read hold, to be given back by L{readerRelease}.

        No writer can get in between.  Waiting readers are then admitted as the policy allows:
        under writer preference, all of them if no writer waits; in fair mode, those at the head
        of the queue.

        There is no upgrade, from reader to writer: two readers upgrading at once would each wait
        for the other to leave, for ever.  Release the read hold, then acquire for writing.

        @return: an already-fired L{Deferred} of the lock.
        @raise LockNotHeldError: if no writer holds the lock; nothing then changes.
        """
        if not self._writing:
            raise LockNotHeldError(
                f"writerDowngrade() called, but no writer holds the lock: {self!r}"
            )
        self._writing = False
        self._readers = 1
        self._wake()
        return succeed(self)

    def statistics(self) -> LockStatistics:
        """
        @return: a snapshot of the lock's holders and waiters.  Counting the waiters takes time
            linear in their number.
        """
        readersWaiting, writersWaiting = self._waiters.counts()
        return LockStatistics(self._readers, self._writing, readersWaiting, writersWaiting)

    def __repr__(self) -> str:
        stats = self.statistics()
        policy = "fair" if self.fair else "writer-preferring"
        return (
            f"<{type(self).__name__} readers={stats.readers} writing={stats.writing}"
            f" waiting={stats.readersWaiting}r/{stats.writersWaiting}w {policy}>"
        )

    def _wait(self, writer: bool) -> Deferred[Any]:
        d: Deferred[Any] = Deferred(canceller=self._cancel)
        self._waiters.append(d, writer)
        return d

    def _cancel(self, d: Deferred[Any]) -> None:
        if d is self._cancelling:
            # Cancelled again, by a callback that the wake below fired (a reader let in by d's
            # leaving cancels d's task): d is out of the lock already, and counting it once more
            # as a dead waiter would leave the count one too high for good.
            return
        outer, self._cancelling = self._cancelling, d
        try:
            writer = self._granted.pop(d, None)
            if writer is not None:  # granted, not yet fired
                self._takeBack(writer)
            elif self._waiters.discard(d):
                self._wake()
        finally:
            self._cancelling = outer
        # Deferred.cancel now errbacks d with CancelledError: it never held the lock.

    def _takeBack(self, writer: bool) -> None:
        if writer:
            self._writing = False
        else:
            self._readers -= 1
        self._wake()

    def _grant(self) -> None:
        """
        Grant the lock to every waiter that may have it now, in policy order, and queue their
        Deferreds in _ready: the only place that grants to waiters.  It runs no user code, so the
        state it leaves is exact.
        """
        waiters = self._waiters
        while not self._writing:
            writer = waiters.nextIsWriter()
            if writer is None or (writer and self._readers):
                return
            d = waiters.popNext()
            if d.called:
                continue  # fired by its caller, a misuse (see _wake): it gets nothing
            if writer:
                self._writing = True
            else:
                self._readers += 1
            self._granted[d] = writer
            self._ready.append(d)

    def _wake(self) -> None:
        """
        Grant what can be granted, then fire the granted waiters' Deferreds in order.

        A callback that releases, acquires or cancels comes back here only to grant: the firing
        is left to the loop already running below it.  So a chain of a million waiters, each
        releasing in its callback, runs in constant stack depth and linear time (where Twisted's
        DeferredLock recurses: twisted#9304).
        """
        ready = self._ready
        firing = bool(ready)
        self._grant()
        if firing:
            return
        granted = self._granted
        while ready:
            d = ready[0]
            try:
                writer = granted.pop(d, None)  # None if its cancel took the grant back
                if writer is None:
                    continue
                if d.called:
                    # Fired by its caller, not by this lock: a misuse, which would leave a hold
                    # that nobody releases.  It holds nothing, as a waiter cancelled.
                    self._takeBack(writer)
                else:
                    d.callback(self)
            finally:
                ready.popleft()


class _Held(Protocol):
    """
    What a side reads of its lock: the local lock, or the Redis one of L{txrwlock.redis}.
    """

    @property
    def isReading(self) -> bool: ...

    @property
    def isWriting(self) -> bool: ...


_HeldLock = TypeVar("_HeldLock", bound=_Held)


class _Side(ABC, Generic[_HeldLock]):
    """
    A side, reader or writer, of a local or a Redis lock: an asynchronous context manager and
    L{run}, over the side's C{acquire} and C{release}.
    """

    # __weakref__: a side can be weakly referenced, as trio asks of every primitive (gh-331).
    __slots__ = ("__weakref__", "_lock", "_writer")

    acquire: Callable[[], Deferred[_HeldLock]]
    release: Callable[[], Deferred[None]]

    def __init__(self, lock: _HeldLock, writer: bool) -> None:
        self._lock = lock
        self._writer = writer

    @property
    def locked(self) -> bool:
        """
        Whether this side is held: C{lock.isWriting} or C{lock.isReading}.
        """
        return self._lock.isWriting if self._writer else self._lock.isReading

    @overload
    def run(
        self, f: Callable[_P, Deferred[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]: ...

    @overload
    def run(
        self, f: Callable[_P, Coroutine[Any, Any, _T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]: ...

    @overload
    def run(self, f: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]: ...

    def run(self, f: Callable[_P, Any], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[Any]:
        """
        Acquire this side, call C{f(*args, **kwargs)}, and release once its result is done, as
        L{DeferredLock.run<twisted.internet.defer._ConcurrencyPrimitive.run>}.

        C{f} may return a plain value, a L{Deferred} or a coroutine (an C{async def} function);
        the side is released when that is done, in success or failure.

        @return: a L{Deferred} of C{f}'s result.  Cancelling it while it waits for the lock gives
            up the acquire; cancelling it later cancels C{f}'s Deferred.
        """
        return self.acquire().addCallback(lambda _: self._call(f, args, kwargs))

    @abstractmethod
    def _call(self, f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """
        Call C{f} while this side is held, for L{run}, and release once its result is done.

        @return: C{f}'s result, or a L{Deferred} of it.
        """

    def __aenter__(self) -> Deferred[_HeldLock]:
        return self.acquire()

    def __repr__(self) -> str:
        return f"<{'writer' if self._writer else 'reader'} side of {self._lock!r}>"


class LockSide(_Side[_Lock]):
    """
    One side, reader or writer, of a L{TxReadersWriterLock}: C{lock.reader} or C{lock.writer}.

    A side is an asynchronous context manager (C{async with lock.reader:}) and offers L{run},
    as L{DeferredLock<twisted.internet.defer.DeferredLock>} does.

    @ivar acquire: acquire this side: L{TxReadersWriterLock.readerAcquire} or
        L{TxReadersWriterLock.writerAcquire}.
    @ivar release: release this side: L{TxReadersWriterLock.readerRelease} or
        L{TxReadersWriterLock.writerRelease}.
    @ivar tryAcquire: take this side if that needs no waiting:
        L{TxReadersWriterLock.tryReaderAcquire} or L{TxReadersWriterLock.tryWriterAcquire}.
    """

    __slots__ = ("acquire", "release", "tryAcquire")

    def __init__(self, lock: _Lock, writer: bool) -> None:
        super().__init__(lock, writer)
        self.tryAcquire: Callable[[], bool]
        if writer:
            self.acquire, self.release = lock.writerAcquire, lock.writerRelease
            self.tryAcquire = lock.tryWriterAcquire
        else:
            self.acquire, self.release = lock.readerAcquire, lock.readerRelease
            self.tryAcquire = lock.tryReaderAcquire

    def _call(self, f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        try:
            result = f(*args, **kwargs)
        except BaseException:
            self.release()
            raise
        if iscoroutine(result):
            result = ensureDeferred(result)
        if isinstance(result, Deferred):
            return result.addBoth(self._releaseAndPass)
        self.release()
        return result

    def _releaseAndPass(self, result: _T) -> _T:
        self.release()
        return result

    def __aexit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> Deferred[None]:
        # The release's Deferred fires with None: false, so an exception goes on.
        return self.release()
