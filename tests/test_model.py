"""
The model test: random programs run against L{TxReadersWriterLock} and, step by step, against a
reference model written here from the contract alone, under both policies.

A program is a sequence of acquires (some with a timeout on a L{Clock}, some through the
C{lock.reader} and C{lock.writer} sides), releases of a random holder, cancels of a random
acquire, clock advances, try-acquires, downgrades, and misuse.  An acquire may carry an action
that its callback runs, re-entrantly, the moment it is granted (release at once, downgrade,
acquire or try again, cancel another acquire that has not fired yet: perhaps one granted in the
same batch, whose grant must then be taken back) and may acquire again when it is cancelled or
times out.

The model is a list of the waiting acquires in arrival order, the holders, and each policy's rule
for who goes next; granted acquires fire in the order of their grants, one after the other (a
callback's own grants fire after it returns, never inside it).  After every step the lock must
agree with it: the same grants, cancellations and timeouts in the same order, the same
L{statistics<TxReadersWriterLock.statistics>} (counters and wait times included), C{isReading},
C{isWriting} and sides' C{locked}, and, on a watched lock (made with a clock and C{debug}, or
given an observer in the middle of a program), the same events told to its observers and the
same waiters in L{describe<TxReadersWriterLock.describe>}.
As the model's holders are never cancelled acquires, an acquire that ends in L{CancelledError} or
L{TimeoutError} has never been counted by the lock either.  The model checks its own rules at
rest: never a writer beside anyone, and nobody waiting who could go now.  At the end of each
program the holders release until nobody holds: every waiter must have been served.

The hypothesis settings come from the profile named by C{$TXRWLOCK_HYPOTHESIS_PROFILE}: C{ci}
(the default: reproducible, and quick enough for every run of the suite) or C{stress} (random, at
least 10^4 programs over the two policies, for C{make stress}).
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from itertools import takewhile
from traceback import format_exception
from typing import TYPE_CHECKING, Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txrwlock import LockEvent, LockNotHeldError, LockStatistics, TxReadersWriterLock

__all__ = ["FairModelTests", "WriterPreferringModelTests"]

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

_PROFILE_VARIABLE = "TXRWLOCK_HYPOTHESIS_PROFILE"
_PROFILE_PREFIX = "txrwlock-"
# Each of the two test classes below runs max_examples programs: stress runs 2 * 5000 = 10^4.
# too_slow is about the speed of drawing data, which a busy CI machine can trip; max_examples
# bounds the run anyway (on 2 busy cores, ci: 11 to 20 s, stress: 7 to 10 min).
settings.register_profile(
    _PROFILE_PREFIX + "ci",
    max_examples=300,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    _PROFILE_PREFIX + "stress",
    max_examples=5000,
    stateful_step_count=80,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _profile() -> settings:
    name = os.environ.get(_PROFILE_VARIABLE, "ci")
    try:
        return settings.get_profile(_PROFILE_PREFIX + name)
    except InvalidArgument as e:
        raise RuntimeError(f"${_PROFILE_VARIABLE}={name!r}: expected 'ci' or 'stress'") from e


class _Action(Enum):
    """
    What an acquire's callback does when it is granted.

    Each does one thing to the lock, or a release and then one more thing: after a release, a
    cancel of an acquire granted in the same batch but not fired yet must take its grant back at
    once, as the following steps of the callback see.
    """

    NOTHING = "nothing"
    RELEASE = "release"
    RELEASE_AND_REACQUIRE = "release, then acquire the same side again"
    DOWNGRADE = "downgrade"  # writers only
    ACQUIRE_READER = "acquire a reader"
    ACQUIRE_WRITER = "acquire a writer"
    TRY_READER = "try a reader"
    TRY_WRITER = "try a writer"
    CANCEL_FIRST = "cancel the oldest other acquire not fired yet"
    CANCEL_LAST = "cancel the newest other acquire not fired yet"
    RELEASE_CANCEL_TRY = "release, cancel the oldest other acquire not fired yet, try a writer"


_RELEASING = {_Action.RELEASE, _Action.RELEASE_AND_REACQUIRE, _Action.RELEASE_CANCEL_TRY}
_CANCELLING = {_Action.CANCEL_FIRST, _Action.CANCEL_LAST, _Action.RELEASE_CANCEL_TRY}

# Outcomes, as both the model and the lock's callbacks log them.
_GRANTED = "granted"
_CANCELLED = "cancelled"
_TIMED_OUT = "timed out"
_TOOK = "took"  # a try-acquire that succeeded; it holds, with no Deferred
_REFUSED = "refused"  # a try-acquire that failed, logged under id -1

_Events = list[tuple[int, str]]
# What an observer is told: kind, writer, waited.
_Told = list[tuple[str, bool, float | None]]


@dataclass(frozen=True)
class _Spec:
    """
    One acquire of a program.

    @ivar writer: a writer's acquire, else a reader's.
    @ivar action: what its callback does once granted.
    @ivar retry: whether it acquires again, the same side, when cancelled or timed out.
    @ivar timeout: its C{addTimeout} on the clock, in seconds, if any.
    @ivar viaSide: whether it acquires, releases and tries through C{lock.reader}/C{lock.writer}.
    """

    writer: bool
    action: _Action = _Action.NOTHING
    retry: bool = False
    timeout: int | None = None
    viaSide: bool = False


def _specs(writer: bool) -> st.SearchStrategy[_Spec]:
    actions = [a for a in _Action if writer or a is not _Action.DOWNGRADE]
    return st.builds(
        _Spec,
        writer=st.just(writer),
        # Half of them do nothing, so that holders stay and waiters queue up behind them.
        action=st.one_of(st.just(_Action.NOTHING), st.sampled_from(actions)),
        retry=st.booleans(),
        timeout=st.one_of(st.none(), st.integers(0, 4)),
        viaSide=st.booleans(),
    )


def _expectEqual(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: the lock gives {actual!r}, the model {expected!r}")


class _State(Enum):
    WAITING = "waiting"
    GRANTED = "granted, not fired yet"
    HOLDING = "holding"
    GONE = "gone"


@dataclass(eq=False, repr=False)
class _Waiter:
    """
    The model's view of one acquire (or successful try-acquire, which has no L{_Spec}).
    """

    id: int
    writer: bool
    spec: _Spec | None
    state: _State
    arrived: int = 0
    deadline: int | None = None
    outcome: str | None = None
    timingOut: bool = False

    def __repr__(self) -> str:
        return f"<{'writer' if self.writer else 'reader'} #{self.id} {self.state.value}>"


class _Model:
    """
    The reference: what the contract says the lock does, with nothing taken from its code.

    @ivar waiters: every acquire so far, by id.
    @ivar queue: the waiting ones, in arrival order.
    @ivar toFire: the granted ones whose Deferreds have not fired yet, in grant order.
    @ivar events: grants, cancellations and timeouts (by Deferreds) and try-acquires, in order.
    @ivar timed: whether the lock has a clock: then waits are timed.
    @ivar observed: whether the lock has an observer: then L{told} grows.
    @ivar told: what the lock's observer is told, while there is one.
    @ivar grants: read and write holds granted.
    """

    def __init__(self, fair: bool, timed: bool) -> None:
        self.fair = fair
        self.timed = timed
        self.observed = False
        self.waiters: list[_Waiter] = []
        self.queue: list[_Waiter] = []
        self.toFire: deque[_Waiter] = deque()
        self.firing = False
        self.events: _Events = []
        self.told: _Told = []
        self.now = 0
        self.grants = {False: 0, True: 0}
        self.waits = 0
        self.cancellations = 0
        self.longestWait = 0

    def holders(self) -> list[_Waiter]:
        return [w for w in self.waiters if w.state in (_State.GRANTED, _State.HOLDING)]

    def pending(self) -> list[_Waiter]:
        """
        @return: the acquires whose Deferreds have not fired, oldest first.
        """
        return [w for w in self.waiters if w.spec is not None and w.outcome is None]

    def statistics(self) -> LockStatistics:
        holders = self.holders()
        writers = sum(w.writer for w in self.queue)
        oldest = self.now - min((w.arrived for w in self.queue), default=self.now)
        return LockStatistics(
            readers=sum(not h.writer for h in holders),
            writing=any(h.writer for h in holders),
            readersWaiting=len(self.queue) - writers,
            writersWaiting=writers,
            readerGrants=self.grants[False],
            writerGrants=self.grants[True],
            waits=self.waits,
            cancellations=self.cancellations,
            longestWait=self.longestWait if self.timed else None,
            oldestWaiting=oldest if self.timed else None,
        )

    def waitingInQueueOrder(self) -> list[_Waiter]:
        """
        @return: the waiters as the lock's queues hold them: under writer preference the writers
            then the readers, in fair mode all in arrival order.
        """
        if self.fair:
            return list(self.queue)
        return [w for w in self.queue if w.writer] + [w for w in self.queue if not w.writer]

    def _tell(self, kind: str, writer: bool, arrived: int | None = None) -> None:
        """
        Count a grant or a cancel, and log what an observer is told of it: C{arrived}, when the
        acquire began to wait (L{None}: it did not).
        """
        waited = 0 if arrived is None else self.now - arrived
        self.longestWait = max(self.longestWait, waited)
        if kind == _GRANTED:
            self.grants[writer] += 1
        elif kind == _CANCELLED:
            self.cancellations += 1
        if self.observed:
            self.told.append(
                (kind, writer, float(waited) if self.timed and kind != "released" else None)
            )

    def _goesAtOnce(self, writer: bool) -> bool:
        """
        Whether an acquire arriving now is granted at once (or a try-acquire succeeds): a writer
        when nobody holds or waits; a reader when no writer holds and, under writer preference,
        no writer waits, in fair mode nobody waits.
        """
        holders = self.holders()
        if any(h.writer for h in holders):
            return False
        if writer:
            return not holders and not self.queue
        if self.fair:
            return not self.queue
        return not any(w.writer for w in self.queue)

    def admissible(self) -> list[_Waiter]:
        """
        @return: the waiters the policy lets in now, in grant order.  Under writer preference:
            the first waiting writer once nobody holds; when no writer waits or holds, every
            waiting reader.  In fair mode: the head of the queue, once nobody holds if it is a
            writer, else with the readers right behind it, when no writer holds.
        """
        holders = self.holders()
        if any(h.writer for h in holders):
            return []
        if self.fair:
            if not self.queue:
                return []
            if self.queue[0].writer:
                return [] if holders else self.queue[:1]
            return list(takewhile(lambda w: not w.writer, self.queue))
        writers = [w for w in self.queue if w.writer]
        if writers:
            return [] if holders else writers[:1]
        return list(self.queue)

    def checkAtRest(self) -> None:
        """
        Between the steps of a program: nothing left to fire, never a writer beside anyone, and
        nobody waiting who could go.
        """
        holders = self.holders()
        if self.toFire or self.firing or any(h.state is not _State.HOLDING for h in holders):
            raise AssertionError(f"the model is not at rest: {holders}, {list(self.toFire)}")
        if any(h.writer for h in holders) and len(holders) > 1:
            raise AssertionError(f"the model has a writer beside others: {holders}")
        if self.admissible():
            raise AssertionError(f"the model leaves {self.admissible()} waiting")

    def acquire(self, spec: _Spec) -> None:
        w = _Waiter(len(self.waiters), spec.writer, spec, _State.WAITING, arrived=self.now)
        if spec.timeout is not None:
            w.deadline = self.now + spec.timeout
        self.waiters.append(w)
        if self._goesAtOnce(spec.writer):
            # Its Deferred has fired before the acquire returns: the callback runs at once.
            self._fire(w, queued=False)
        else:
            self.queue.append(w)
            self.waits += 1

    def tryAcquire(self, writer: bool) -> None:
        if self._goesAtOnce(writer):
            w = _Waiter(len(self.waiters), writer, None, _State.HOLDING, outcome=_TOOK)
            self.waiters.append(w)
            self.events.append((w.id, _TOOK))
            self._tell(_GRANTED, writer)
        else:
            self.events.append((-1, _REFUSED))

    def release(self, holder: _Waiter) -> None:
        holder.state = _State.GONE
        self._tell("released", holder.writer)
        self._wake()

    def downgrade(self, holder: _Waiter) -> None:
        holder.writer = False
        self._tell("released", True)
        self._tell(_GRANTED, False)
        self._wake()

    def cancel(self, w: _Waiter) -> None:
        """
        C{cancel()} on the acquire C{w}'s Deferred, as Twisted runs it: the canceller first (it
        leaves the queue, or gives back a grant not fired yet, and whoever can go now goes), then
        the errback, unless a callback run meanwhile has cancelled it already.
        """
        if w.outcome is not None:
            return  # fired: its caller holds the lock, or it is cancelled already
        if w.state is _State.WAITING:
            self.queue.remove(w)
        if w.state in (_State.WAITING, _State.GRANTED):
            w.state = _State.GONE
            self._tell(_CANCELLED, w.writer, w.arrived)
            self._wake()
        if w.outcome is None:
            w.outcome = _TIMED_OUT if w.timingOut else _CANCELLED
            self.events.append((w.id, w.outcome))
            assert w.spec is not None
            if w.spec.retry:
                self.acquire(_Spec(w.spec.writer))

    def advance(self, seconds: int) -> None:
        self.now += seconds
        while True:
            due = [w for w in self.queue if w.deadline is not None and w.deadline <= self.now]
            if not due:
                return
            # The clock runs its calls by time, then in the order they were scheduled.
            w = min(due, key=lambda w: (w.deadline, w.id))
            w.timingOut = True
            self.cancel(w)

    def _wake(self) -> None:
        """
        Grant whatever the policy admits now; unless a firing is under way further up the stack
        (a callback is running), fire the granted, in grant order, until none is left.
        """
        while admitted := self.admissible():
            for w in admitted:
                self.queue.remove(w)
                w.state = _State.GRANTED
                self.toFire.append(w)
        if self.firing:
            return
        self.firing = True
        try:
            while self.toFire:
                w = self.toFire.popleft()
                if w.state is _State.GRANTED:  # else cancelled after its grant: taken back
                    self._fire(w, queued=True)
        finally:
            self.firing = False

    def _fire(self, w: _Waiter, queued: bool) -> None:
        w.state = _State.HOLDING
        w.outcome = _GRANTED
        self.events.append((w.id, _GRANTED))
        self._tell(_GRANTED, w.writer, w.arrived if queued else None)
        assert w.spec is not None
        action = w.spec.action
        if action in _RELEASING:
            self.release(w)
        if action is _Action.RELEASE_AND_REACQUIRE:
            self.acquire(_Spec(w.spec.writer))
        elif action is _Action.DOWNGRADE:
            self.downgrade(w)
        elif action in (_Action.ACQUIRE_READER, _Action.ACQUIRE_WRITER):
            self.acquire(_Spec(action is _Action.ACQUIRE_WRITER))
        elif action in (_Action.TRY_READER, _Action.TRY_WRITER):
            self.tryAcquire(action is _Action.TRY_WRITER)
        elif action in _CANCELLING:
            others = [v for v in self.pending() if v is not w]
            if others:
                self.cancel(others[-1 if action is _Action.CANCEL_LAST else 0])
        if action is _Action.RELEASE_CANCEL_TRY:
            self.tryAcquire(True)


@dataclass(eq=False)
class _Client:
    """
    One acquire (or successful try-acquire) made on the real lock, as its callbacks saw it.
    """

    id: int
    spec: _Spec | None
    deferred: Deferred[Any] | None
    outcome: str | None = None


@dataclass(eq=False)
class _Harness:
    """
    Runs a program's steps on the real lock, logging what its Deferreds do as the model does.

    @ivar errors: whatever went wrong inside a callback, where raising would only fail its
        Deferred.
    """

    lock: TxReadersWriterLock
    clock: Clock
    clients: list[_Client] = field(default_factory=list)
    events: _Events = field(default_factory=list)
    told: _Told = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def observe(self, event: LockEvent) -> None:
        """
        The lock's observer: log what it is told, as the model does.
        """
        if event.lock is not self.lock:
            self.errors.append(f"an event of {event.lock!r}, not of the lock: {event}")
        self.told.append((event.kind, event.writer, event.waited))

    def acquire(self, spec: _Spec) -> None:
        lock = self.lock
        if spec.viaSide:
            d = (lock.writer if spec.writer else lock.reader).acquire()
        else:
            d = lock.writerAcquire() if spec.writer else lock.readerAcquire()
        client = _Client(len(self.clients), spec, d)
        self.clients.append(client)
        if spec.timeout is not None:
            d.addTimeout(spec.timeout, IReactorTime(self.clock))
        d.addCallbacks(
            lambda result: self._granted(client, result), lambda f: self._failed(client, f)
        )

    def tryAcquire(self, writer: bool, viaSide: bool) -> None:
        lock = self.lock
        if viaSide:
            took = (lock.writer if writer else lock.reader).tryAcquire()
        else:
            took = lock.tryWriterAcquire() if writer else lock.tryReaderAcquire()
        if took:
            client = _Client(len(self.clients), None, None, _TOOK)
            self.clients.append(client)
            self.events.append((client.id, _TOOK))
        else:
            self.events.append((-1, _REFUSED))

    def release(self, writer: bool, viaSide: bool) -> None:
        lock = self.lock
        if viaSide:
            d = (lock.writer if writer else lock.reader).release()
        else:
            d = lock.writerRelease() if writer else lock.readerRelease()
        results: list[object] = []
        d.addCallback(results.append)
        if results != [None]:
            self.errors.append(f"a release fired with {results}, not [None] at once")

    def downgrade(self) -> None:
        results: list[object] = []
        self.lock.writerDowngrade().addCallback(results.append)
        if results != [self.lock]:
            self.errors.append(f"writerDowngrade() fired with {results}, not the lock at once")

    def _granted(self, client: _Client, result: object) -> None:
        if result is not self.lock:
            self.errors.append(f"#{client.id} was granted with {result!r}, not the lock")
        client.outcome = _GRANTED
        self.events.append((client.id, _GRANTED))
        assert client.spec is not None
        try:
            self._act(client, client.spec)
        except Exception as e:
            self.errors.append(f"#{client.id}'s callback, doing {client.spec.action}: {e!r}")

    def _act(self, client: _Client, spec: _Spec) -> None:
        action = spec.action
        if action in _RELEASING:
            self.release(spec.writer, spec.viaSide)
        if action is _Action.RELEASE_AND_REACQUIRE:
            self.acquire(_Spec(spec.writer))
        elif action is _Action.DOWNGRADE:
            self.downgrade()
        elif action in (_Action.ACQUIRE_READER, _Action.ACQUIRE_WRITER):
            self.acquire(_Spec(action is _Action.ACQUIRE_WRITER))
        elif action in (_Action.TRY_READER, _Action.TRY_WRITER):
            self.tryAcquire(action is _Action.TRY_WRITER, spec.viaSide)
        elif action in _CANCELLING:
            others = [
                c
                for c in self.clients
                if c.deferred is not None and c.outcome is None and c is not client
            ]
            if others:
                target = others[-1 if action is _Action.CANCEL_LAST else 0].deferred
                assert target is not None
                target.cancel()
        if action is _Action.RELEASE_CANCEL_TRY:
            self.tryAcquire(True, spec.viaSide)

    def _failed(self, client: _Client, failure: Failure) -> None:
        if isinstance(failure.value, TimeoutError):
            client.outcome = _TIMED_OUT
        elif isinstance(failure.value, CancelledError):
            client.outcome = _CANCELLED
        else:
            client.outcome = "failed"
            self.errors.append(f"#{client.id} failed: {failure.getTraceback()}")
        self.events.append((client.id, client.outcome))
        assert client.spec is not None
        if client.spec.retry:
            try:
                self.acquire(_Spec(client.spec.writer))
            except Exception as e:
                self.errors.append(f"#{client.id}'s retry: {e!r}")


class _LockMachine(RuleBasedStateMachine):
    """
    Programs on one lock, checked against the model after every step.
    """

    fair: ClassVar[bool]
    lock: TxReadersWriterLock
    real: _Harness
    model: _Model

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        # Whether the last step was checked and passed: only then does teardown drain the lock.
        self.agreed = False

    @initialize(watched=st.booleans())
    def makeLock(self, watched: bool) -> None:
        """
        A plain lock, or one watched from the start: with a clock, C{debug} and an observer.
        """
        if watched:
            self.lock = TxReadersWriterLock(fair=self.fair, clock=self.clock, debug=True)
        else:
            self.lock = TxReadersWriterLock(fair=self.fair)
        self.real = _Harness(self.lock, self.clock)
        self.model = _Model(self.fair, timed=watched)
        if watched:
            self.startObserving()

    @precondition(lambda self: not self.model.observed)
    @rule()
    def startObserving(self) -> None:
        """
        An observer added in the middle of a program is told of what happens from then on, to
        waiters queued before it came too.
        """
        self._step()
        self.lock.addObserver(self.real.observe)
        self.model.observed = True

    @precondition(lambda self: self.model.observed)
    @rule()
    def stopObserving(self) -> None:
        self._step()
        self.lock.removeObserver(self.real.observe)
        self.model.observed = False

    def _step(self) -> None:
        self.agreed = False

    def _holderOf(self, writer: bool) -> bool:
        return any(h.writer is writer for h in self.model.holders())

    @rule(spec=_specs(writer=False))
    def readerAcquires(self, spec: _Spec) -> None:
        self._step()
        self.real.acquire(spec)
        self.model.acquire(spec)

    @rule(spec=_specs(writer=True))
    def writerAcquires(self, spec: _Spec) -> None:
        self._step()
        self.real.acquire(spec)
        self.model.acquire(spec)

    @precondition(lambda self: self.model.holders())
    @rule(data=st.data(), viaSide=st.booleans())
    def holderReleases(self, data: st.DataObject, viaSide: bool) -> None:
        self._step()
        holder = self._draw(data, self.model.holders(), "holder")
        self.real.release(holder.writer, viaSide)
        self.model.release(holder)

    @precondition(lambda self: self.model.queue)
    @rule(data=st.data())
    def waiterCancels(self, data: st.DataObject) -> None:
        self._step()
        self._cancel(self._draw(data, self.model.queue, "waiter"))

    @precondition(lambda self: any(w.spec is not None for w in self.model.waiters))
    @rule(data=st.data())
    def anyAcquireCancels(self, data: st.DataObject) -> None:
        """
        Most of these have fired already, and the cancel must then do nothing.
        """
        self._step()
        acquires = [w for w in self.model.waiters if w.spec is not None]
        self._cancel(self._draw(data, acquires, "acquire"))

    def _draw(self, data: st.DataObject, waiters: list[_Waiter], label: str) -> _Waiter:
        """
        Draw one of C{waiters} by id, which is all a failing program's report needs to show.
        """
        return self.model.waiters[data.draw(st.sampled_from([w.id for w in waiters]), label)]

    def _cancel(self, w: _Waiter) -> None:
        d = self.real.clients[w.id].deferred
        assert d is not None
        d.cancel()
        self.model.cancel(w)

    @rule(seconds=st.integers(0, 3))
    def timePasses(self, seconds: int) -> None:
        self._step()
        self.clock.advance(seconds)
        self.model.advance(seconds)

    @rule(writer=st.booleans(), viaSide=st.booleans())
    def tryAcquire(self, writer: bool, viaSide: bool) -> None:
        self._step()
        self.real.tryAcquire(writer, viaSide)
        self.model.tryAcquire(writer)

    @precondition(lambda self: self._holderOf(writer=True))
    @rule()
    def writerDowngrades(self) -> None:
        self._step()
        (writer,) = [h for h in self.model.holders() if h.writer]
        self.real.downgrade()
        self.model.downgrade(writer)

    @precondition(lambda self: not self._holderOf(writer=False))
    @rule(viaSide=st.booleans())
    def unheldReaderReleases(self, viaSide: bool) -> None:
        self._step()
        side = self.lock.reader
        self._misuse("readerRelease()", side.release if viaSide else self.lock.readerRelease)

    @precondition(lambda self: not self._holderOf(writer=True))
    @rule(viaSide=st.booleans())
    def unheldWriterReleases(self, viaSide: bool) -> None:
        self._step()
        side = self.lock.writer
        self._misuse("writerRelease()", side.release if viaSide else self.lock.writerRelease)

    @precondition(lambda self: not self._holderOf(writer=True))
    @rule()
    def unheldWriterDowngrades(self) -> None:
        self._step()
        self._misuse("writerDowngrade()", self.lock.writerDowngrade)

    def _misuse(self, name: str, call: Callable[[], object]) -> None:
        """
        Misuse raises L{LockNotHeldError} naming the call, and changes nothing: the model is
        left alone, and the lock must still agree with it.
        """
        before = self.lock.statistics(), repr(self.lock), len(self.real.events)
        try:
            call()
        except LockNotHeldError as e:
            if name not in str(e):
                raise AssertionError(f"{name}'s LockNotHeldError does not name it: {e}") from e
        else:
            raise AssertionError(f"{name} with that side not held raised nothing")
        after = self.lock.statistics(), repr(self.lock), len(self.real.events)
        _expectEqual(after, before, f"the state after a misused {name}")

    @invariant()
    def agreesWithModel(self) -> None:
        lock, model = self.lock, self.model
        if self.real.errors:
            raise AssertionError("in callbacks: " + "; ".join(self.real.errors))
        if self.real.events != model.events:
            same = 0
            for got, want in zip(self.real.events, model.events, strict=False):
                if got != want:
                    break
                same += 1
            _expectEqual(self.real.events[same:], model.events[same:], f"events after {same}")
        stats = lock.statistics()
        _expectEqual(stats, model.statistics(), "statistics()")
        _expectEqual(self.real.told, model.told, "what the observer was told")
        _expectEqual(self._describedWaiters(), self._modelWaiters(), "the waiters described")
        _expectEqual(
            (lock.isReading, lock.isWriting, lock.reader.locked, lock.writer.locked),
            (stats.readers > 0, stats.writing) * 2,
            "(isReading, isWriting, reader.locked, writer.locked)",
        )
        model.checkAtRest()
        timers = sum(w.deadline is not None for w in model.queue)
        _expectEqual(len(self.clock.getDelayedCalls()), timers, "pending timeouts")
        self.agreed = True

    def _describedWaiters(self) -> list[str]:
        """
        @return: the waiters' lines of C{describe()}; checked, on a watched lock, to name
            this module as the site of each (the caller of the lock or of its side).
        """
        lines = self.lock.describe().splitlines()
        waiters = lines[lines.index(next(x for x in lines if x.startswith("waiting"))) + 1 :]
        if self.model.timed:
            for line in waiters:
                site = line.rpartition(", from ")[2]
                if site.rpartition(":")[0] != __file__:
                    raise AssertionError(f"describe() shows {site}, not this module, in {line}")
            waiters = [line.rpartition(", from ")[0] for line in waiters]
        return waiters

    def _modelWaiters(self) -> list[str]:
        model = self.model
        return [
            "  "
            + ("writer" if w.writer else "reader")
            + (f" for {model.now - w.arrived:.3f} s" if model.timed else "")
            for w in model.waitingInQueueOrder()
        ]

    def teardown(self) -> None:
        """
        Once the holders all leave, every waiter is served: release, one holder at a time, until
        nobody holds; then nobody may wait.
        """
        if not self.agreed:
            return  # the program has failed already; its own error says how
        # Each acquire holds at most once, and makes at most one more (by its action or retry).
        for _ in range(3 * len(self.model.waiters) + 1):
            holders = self.model.holders()
            if not holders:
                break
            self.real.release(holders[0].writer, viaSide=False)
            self.model.release(holders[0])
            self.agreesWithModel()
        stats = self.lock.statistics()
        _expectEqual((stats.readers, stats.writing), (0, False), "the drained lock")
        _expectEqual((stats.readersWaiting, stats.writersWaiting), (0, 0), "the drained lock")
        _expectEqual(self.model.pending(), [], "acquires never served")


class _WriterPreferringMachine(_LockMachine):
    fair = False


class _FairMachine(_LockMachine):
    fair = True


class _Programs(_Base):
    """
    Runs the programs of L{machine} under the profile's settings.
    """

    machine: ClassVar[type[_LockMachine]]

    def test_programs(self) -> None:
        """
        The lock agrees with the model over every program hypothesis makes.

        A failure is reported with the steps of the shortest failing program hypothesis found,
        which it attaches to the exception as notes: trial would not show them.
        """
        try:
            run_state_machine_as_test(self.machine, settings=_profile())
        except Exception as e:
            report = "".join(format_exception(type(e), e, e.__traceback__))
            if sys.version_info < (3, 11):  # format_exception shows the notes from 3.11 on
                report += "\n".join(getattr(e, "__notes__", ()))
            raise self.failureException(report) from e


class WriterPreferringModelTests(_Programs, SynchronousTestCase):
    machine = _WriterPreferringMachine


class FairModelTests(_Programs, SynchronousTestCase):
    machine = _FairMachine
