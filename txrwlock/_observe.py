# -*- test-case-name: tests.test_observe -*-
"""
What a lock records so that it can be watched: the events its observers get, its waits timed on
a clock, and who holds and waits, since when and from where, for its C{describe()}.

A lock keeps an L{Observation} only while something watches it (a clock, an observer, or
C{debug}), and calls it at its grant, release and cancel points.  Nothing here knows a lock's
queues or where its state lives: the local lock and the remote ones share it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel

__all__ = ["Clock", "LockEvent", "Observation", "Observer"]

_log = Logger()
_T = TypeVar("_T")


@dataclass(frozen=True)
class LockEvent:
    """
    What happened to a lock, as its observers are told (see C{addObserver}).

    @ivar kind: C{"granted"} (a hold was granted: an acquire fired, a try-acquire took the lock,
        or a downgrade turned a write hold into a read hold), C{"released"} (a hold was given
        back, or turned into a read hold by a downgrade) or C{"cancelled"} (a waiting acquire
        was cancelled or timed out: it never held the lock).
    @ivar writer: whether the hold, or the acquire, is a writer's.
    @ivar lock: the lock.
    @ivar waited: for C{"granted"} and C{"cancelled"}, how many seconds the acquire waited, on
        the lock's clock: C{0.0} for one granted at once.  L{None} for C{"released"}, and when
        the lock has no clock.
    """

    kind: str
    writer: bool
    lock: Any
    waited: float | None


class Clock(Protocol):
    """
    What a lock reads of its clock: an L{IReactorTime<twisted.internet.interfaces.IReactorTime>},
    such as the reactor or a L{task.Clock<twisted.internet.task.Clock>}.
    """

    def seconds(self) -> float: ...


Observer = Callable[[LockEvent], object]
"""An observer of a lock: called synchronously with each L{LockEvent}; its result is ignored."""


_Site = tuple[str, int]
"""A file and a line of code."""

_Entry = tuple[bool, float | None, _Site | None]
"""A hold or a waiting acquire, as C{describe()} shows it: whether it is a writer's; since when
it holds or waits, on the lock's clock (L{None}: no clock); from which site it acquired (L{None}:
not C{debug})."""


def _userSite() -> _Site | None:
    """
    @return: the file and line of the innermost frame outside this package: the user code that
        called an acquire (directly, or through a side's C{acquire}, C{run} or C{async with}).
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("txrwlock."):
        frame = frame.f_back
    return None if frame is None else (frame.f_code.co_filename, frame.f_lineno)


class Observation:
    """
    What a watched lock records, and tells its observers.

    Waiting acquires are known by their Deferreds, which the lock gives to L{waiting}, then to
    L{granted} or L{cancelled}, or to L{forget} if their caller fired them (a misuse).  Holds
    are recorded, for L{describe}, only with a clock or C{debug}.  Read holds are anonymous (a
    read release does not say whose hold it gives back), so a read release drops the newest
    read hold: the oldest then shows how long the lock has been read without a break.

    A release is announced with L{releasing} and told by L{flush}, which the lock calls once its
    state has changed but before it lets anyone in: so observers hear of a release before the
    grants it allows.

    @ivar lock: the lock observed, as events carry it.
    @ivar observers: the observers, in the order they were added.
    @ivar longestWait: the longest completed wait (granted or cancelled), in seconds; L{None}
        without a clock.
    """

    __slots__ = (
        "_atOnce",
        "_clock",
        "_debug",
        "_pending",
        "_readHolds",
        "_recording",
        "_released",
        "_waiting",
        "_writeHold",
        "lock",
        "longestWait",
        "observers",
    )

    def __init__(self, lock: object, clock: Clock | None, debug: bool) -> None:
        self.lock = lock
        self.observers: tuple[Observer, ...] = ()
        self.longestWait: float | None = None if clock is None else 0.0
        self._clock = clock
        self._debug = debug
        self._recording = clock is not None or debug
        self._waiting: dict[Deferred[Any], _Entry] = {}
        self._writeHold: _Entry | None = None
        self._readHolds: list[_Entry] = []
        self._pending: list[tuple[bool, bool]] = []
        # The events that carry nothing particular, made once: an event costs 1.4 us to make.
        atOnce = self.longestWait
        self._atOnce = tuple(LockEvent("granted", w, lock, atOnce) for w in (False, True))
        self._released = tuple(LockEvent("released", w, lock, None) for w in (False, True))

    def add(self, observer: Observer) -> None:
        """
        Tell C{observer} of every event from now on, after the observers added before.
        """
        self.observers += (observer,)

    def remove(self, observer: Observer) -> None:
        """
        Stop telling C{observer} (once, if it was added more than once).

        @raise ValueError: if it is not an observer; nothing then changes.
        """
        observers = self.observers
        if observer not in observers:
            raise ValueError(
                f"removeObserver({observer!r}) called, but it does not observe {self.lock!r}"
            )
        i = observers.index(observer)
        self.observers = observers[:i] + observers[i + 1 :]

    @property
    def needed(self) -> bool:
        """
        Whether anything watches the lock: a clock, an observer, or C{debug}.
        """
        return self._recording or bool(self.observers)

    def waiting(self, d: Deferred[Any], writer: bool) -> None:
        """
        The acquire of Deferred C{d} queues.
        """
        self._waiting[d] = (writer, self._now(), self._site())

    def grantedAtOnce(self, writer: bool) -> None:
        """
        A hold is granted without a wait: to an acquire or a try-acquire, or by a downgrade.
        """
        # On every uncontended acquire of a watched lock: _now, _site and _hold inlined, which
        # takes 0.2 us off what a clock costs a pair (measured: +1.25 us before, +1.06 after).
        if self._recording:
            clock = self._clock
            hold = (
                writer,
                None if clock is None else clock.seconds(),
                _userSite() if self._debug else None,
            )
            if writer:
                self._writeHold = hold
            else:
                self._readHolds.append(hold)
        if self.observers:
            self._emit(self._atOnce[writer])

    def granted(self, d: Deferred[Any], writer: bool, atOnce: bool = False) -> None:
        """
        A hold is granted to the waiting acquire of Deferred C{d}, about to fire; C{atOnce}: it
        did not have to queue (a remote lock's acquire, granted at its first try).
        """
        _, since, site = self._waiting.pop(d)
        now = self._now()
        waited = self._waited(now if atOnce else since, now)
        if self._recording:
            self._hold((writer, now, site))
        if self.observers:
            self._emit(LockEvent("granted", writer, self.lock, waited))

    def _hold(self, hold: _Entry) -> None:
        if hold[0]:
            self._writeHold = hold
        else:
            self._readHolds.append(hold)

    def releasing(self, writer: bool, downgrade: bool = False) -> None:
        """
        A hold is being given back, or (C{downgrade}) a write hold turned into a read hold: what
        observers are told of it waits for L{flush}.
        """
        self._pending.append((False, writer))
        if downgrade:
            self._pending.append((True, False))

    def flush(self) -> None:
        """
        Tell what L{releasing} announced, in order.
        """
        pending = self._pending
        while pending:
            granting, writer = pending.pop(0)
            if granting:
                self.grantedAtOnce(writer)
                continue
            # _release, inlined: on every uncontended release of a watched lock.
            if self._recording:
                if writer:
                    self._writeHold = None
                elif self._readHolds:
                    self._readHolds.pop()
            if self.observers:
                self._emit(self._released[writer])

    def released(self, writer: bool) -> None:
        """
        A hold was given back (or lost), at once: for a lock that lets nobody in meanwhile.
        """
        self.releasing(writer)
        self.flush()

    def cancelled(self, d: Deferred[Any]) -> None:
        """
        The acquire of Deferred C{d} was cancelled (or timed out) while waiting, or after its
        grant but before its Deferred fired: it never held the lock.
        """
        writer, since, _ = self._waiting.pop(d)
        waited = self._waited(since, self._now())
        if self.observers:
            self._emit(LockEvent("cancelled", writer, self.lock, waited))

    def forget(self, d: Deferred[Any]) -> None:
        """
        The acquire of Deferred C{d} leaves without a grant or a cancel: its caller fired it.
        """
        self._waiting.pop(d, None)

    def settled(self, result: _T, d: Deferred[Any]) -> _T:
        """
        The callback, first in line, of an acquire's Deferred C{d}, for a lock whose acquires can
        also end otherwise than granted or cancelled (a try refused, a connection lost): forget
        it, and pass C{result} on.
        """
        self._waiting.pop(d, None)
        return result

    def waiters(self) -> list[tuple[Deferred[Any], bool]]:
        """
        @return: the acquires waiting, in the order they came, each with whether it is a
            writer's.
        """
        return [(d, entry[0]) for d, entry in self._waiting.items() if not d.called]

    def oldestWaiting(self) -> float | None:
        """
        @return: how long the oldest waiting acquire has waited now, in seconds (C{0.0} if none
            waits); L{None} without a clock.
        """
        now = self._now()
        waiting = self._waiting
        while now is not None and waiting:
            d = next(iter(waiting))
            since = waiting[d][1]
            if not d.called and since is not None:
                return now - since
            # Fired by its caller, a misuse: the lock's queue dropped it unseen when compacted.
            del waiting[d]
        return None if now is None else 0.0

    def describe(
        self,
        header: str,
        readers: int,
        writing: bool,
        waiters: Iterable[tuple[Deferred[Any], bool]],
    ) -> str:
        """
        @param header: the first line: the lock's C{repr}.
        @param readers: how many read holds there are.
        @param writing: whether a writer holds.
        @param waiters: the waiting acquires in queue order, each with whether it is a writer's.
        @return: the lock's C{describe()}: C{header}, then a line for each hold and each waiter,
            with its age if the lock has a clock and its site with C{debug}.
        """
        if self._recording:
            holds = [self._writeHold] if writing and self._writeHold is not None else []
            holds += self._readHolds[-readers:] if readers else []
        else:
            anonymous: list[_Entry] = [(False, None, None)] * readers
            holds = [(True, None, None)] * writing + anonymous
        unknown = (False, None, None)
        queued = [(w, *self._waiting.get(d, unknown)[1:]) for d, w in waiters]
        now = self._now()
        lines = [header]
        for title, entries in (("holding", holds), ("waiting, in queue order", queued)):
            lines.append(f"{title}: {len(entries) if entries else 'nobody'}")
            lines += ["  " + _line(entry, now) for entry in entries]
        return "\n".join(lines)

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock.seconds()

    def _site(self) -> _Site | None:
        return _userSite() if self._debug else None

    def _waited(self, since: float | None, now: float | None) -> float | None:
        if now is None or since is None:
            return None
        waited = now - since
        if self.longestWait is not None and waited > self.longestWait:
            self.longestWait = waited
        return waited

    def _emit(self, event: LockEvent) -> None:
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                _log.failure(
                    "Observer {observer!r} of {lock!r} failed on {event}",
                    level=LogLevel.error,
                    observer=observer,
                    lock=self.lock,
                    lockName=getattr(self.lock, "name", None),
                    event=event,
                )


def _line(entry: _Entry, now: float | None) -> str:
    writer, since, site = entry
    line = "writer" if writer else "reader"
    if now is not None and since is not None:
        line += f" for {now - since:.3f} s"
    if site is not None:
        line += f", from {site[0]}:{site[1]}"
    return line
