"""
The model test of L{SharedHold}: random programs of acquires, tries, releases, cancels, losses,
contention and the store's answers, checked step by step against what a cohort must keep.

The store is played here: it grants, refuses or fails the take in flight, and keeps the one
remote hold.  After every step: the local holders are readers only, or one writer; the store sees
at most one hold or take of the object at a time, in the holders' mode while they hold; a write
hold's values grow strictly (fencing tokens), and passes on only within its block and while
uncontended; no reader joins a contended hold.  At the end of each program the store grants and
the holders release until nobody holds: every acquire must have been answered, the remote hold
given back and the local lock free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.test_cohort import _acquire
from tests.test_model import _profile
from txrwlock._cohort import SharedHold

_BLOCK = 4  # values per write grant: a write hold passes on 3 times in a row at most


@dataclass
class _Acquire:
    writer: bool
    deferred: Deferred[int | None]
    results: list[Any] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return bool(self.results)


class _Store:
    """
    The store, as the model plays it: one take in flight at most, one remote hold at most.
    """

    def __init__(self, onTake: Callable[[], object]) -> None:
        self.onTake = onTake
        self.taking: tuple[bool, bool, Deferred[int | None]] | None = None
        self.held: bool | None = None  # the remote hold's mode
        self.counter = 0
        self.takes = 0

    def take(self, writer: bool, queue: bool) -> Deferred[int | None]:
        assert self.taking is None and self.held is None, "two holds or takes at once"
        self.takes += 1
        self.onTake()

        def cancel(d: Deferred[int | None]) -> None:
            self.taking = None

        d: Deferred[int | None] = Deferred(cancel)
        self.taking = (writer, queue, d)
        return d

    def give(self, writer: bool) -> Deferred[bool]:
        assert self.held == writer, f"gave back {writer} holding {self.held}"
        self.held = None
        d: Deferred[bool] = Deferred()
        d.callback(True)
        return d

    def answer(self, how: str) -> None:
        assert self.taking is not None
        writer, queue, d = self.taking
        self.taking = None
        if how == "grant" or (how == "refuse" and queue):  # only a try is refused
            self.held = writer
            self.counter += _BLOCK
            d.callback(self.counter if writer else 0)
        elif how == "refuse":
            d.callback(None)
        else:
            d.errback(ZeroDivisionError())


class CohortMachine(RuleBasedStateMachine):
    """
    One L{SharedHold} in front of the store played by L{_Store}, and the model's own record of
    its holders and whether the remote hold was told of contention since it was taken.
    """

    def __init__(self) -> None:
        super().__init__()
        self.store = _Store(self._taken)
        self.hold: SharedHold[int] = SharedHold(
            self.store.take, self.store.give, lambda v: v + 1 if v % _BLOCK < _BLOCK - 1 else None
        )
        self.acquires: list[_Acquire] = []
        self.holders: list[_Acquire] = []
        self.contended = False  # told since the last take
        self.lastToken = 0

    def _taken(self) -> None:
        self.contended = False  # a new remote hold

    def _track(self, a: _Acquire) -> None:
        def answered(result: int | Failure | None) -> None:
            a.results.append(result)
            if isinstance(result, Failure):
                result.trap(CancelledError, ZeroDivisionError)
                return
            if result is None:
                return
            if a.writer:
                assert result > self.lastToken, f"token {result} after {self.lastToken}"
                self.lastToken = result
            self.holders.append(a)

        a.deferred.addBoth(answered)
        self.acquires.append(a)

    @rule(writer=st.booleans(), queue=st.booleans())
    def acquire(self, writer: bool, queue: bool) -> None:
        takes, holders = self.store.takes, len(self.holders)
        self._track(_Acquire(writer, _acquire(self.hold, writer, queue)))
        joined = self.store.takes == takes and len(self.holders) > holders
        if joined and not writer and self.contended:
            raise AssertionError("a reader joined a contended hold")

    @precondition(lambda self: self.store.taking is not None)
    @rule(how=st.sampled_from(["grant", "grant", "refuse", "fail"]))
    def answer(self, how: str) -> None:
        self.store.answer(how)

    @precondition(lambda self: bool(self.holders))
    @rule(data=st.data(), lost=st.booleans())
    def release(self, data: st.DataObject, lost: bool) -> None:
        a = data.draw(st.sampled_from(self.holders))
        self.holders.remove(a)
        takes, holders = self.store.takes, len(self.holders)
        if lost:
            self.contended = True  # a lost hold takes nobody new, until the next is taken
            self.hold.drop()
        else:
            self.hold.release(a.writer)
        passed = self.store.takes == takes and len(self.holders) > holders
        if passed and self.holders[-1].writer and self.contended:
            raise AssertionError("a contended write hold passed on")

    @rule()
    def contend(self) -> None:
        self.hold.contend()
        self.contended = True

    @precondition(lambda self: any(not a.answered for a in self.acquires))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        waiting = [a for a in self.acquires if not a.answered]
        data.draw(st.sampled_from(waiting)).deferred.cancel()

    @invariant()
    def oneMode(self) -> None:
        modes = {a.writer for a in self.holders}
        assert len(modes) <= 1 and (True not in modes or len(self.holders) == 1), self.holders
        if self.holders:
            assert self.store.held == self.holders[0].writer
            assert self.store.taking is None

    def teardown(self) -> None:
        while True:
            if self.store.taking is not None:
                self.store.answer("grant")
            elif self.holders:
                a = self.holders.pop(0)
                self.hold.release(a.writer)
            else:
                break
        assert all(a.answered for a in self.acquires), "an acquire never answered"
        assert self.store.held is None
        assert self.hold.local.tryWriterAcquire(), "the local lock is still held"


class CohortModelTests(SynchronousTestCase):
    def test_model(self) -> None:
        """
        Random programs keep what a cohort must keep (see the module's docstring).
        """
        run_state_machine_as_test(CohortMachine, settings=_profile())
