"""
What every benchmark section shares: the run's settings, the records a section returns, timing
helpers, and a heap-ordered L{Clock}.

A section is a module C{benchmarks/bench_*.py} with a function C{run(ctx: Context) -> Report};
C{run.py} imports the sections it knows, in order, and prints all their rows in one table.  A
section that cannot run here (a server or a module missing) raises L{SectionUnavailableError}
with a line saying why and how to enable it.
"""

from __future__ import annotations

import gc
import heapq
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock

__all__ = [
    "Context",
    "Curve",
    "HeapClock",
    "Report",
    "Row",
    "SectionUnavailableError",
    "Value",
    "asReactor",
    "atLeast",
    "atMost",
    "cpuTime",
    "gcOff",
    "machine",
]


def cpuTime() -> float:
    """
    The clock of every timing: CPU seconds of this thread.

    Every workload here is CPU-bound, in one thread, with no I/O and no sleep, so on an idle
    machine this is the wall time; on a shared one it leaves out the time the scheduler gives to
    other processes, which best-of-repeats of wall time cannot remove once a round lasts longer
    than a time slice.
    """
    return time.thread_time()


Value = float | str | None
"""A table cell: a measurement in the row's unit, a word on why there is none, or nothing."""


class SectionUnavailableError(Exception):
    """
    Raised by a section's C{run} when it cannot run here; the message says why and how to enable
    it, and is printed as one line.
    """


@dataclass(frozen=True)
class Context:
    """
    The settings of one run, handed to every section.

    @ivar smoke: small sizes, for CI: the whole suite in seconds, figures only indicative.
    @ivar cacheDir: where downloads (txrwlock 1.1.4's sdist) are kept between runs.
    @ivar pointBudget: a peer's series stops after a point that took longer than this many
        seconds, so that a quadratic peer does not hold the run for minutes.
    @ivar repeat: how many times each timing is repeated; the best is kept.
    """

    smoke: bool
    cacheDir: Path
    pointBudget: float
    repeat: int


@dataclass
class Row:
    """
    One line of the table: one figure, measured for several subjects side by side.

    @ivar figure: what is measured.
    @ivar unit: the unit of the numbers in C{values}.
    @ivar values: the measurement of each subject (a column), by subject name.
    @ivar goal: the goal, in words ("≤ 0.8x DeferredLock"); empty for a figure without one.
    @ivar measured: the figure the goal is judged on, in words ("0.61 / 0.63").
    @ivar met: whether the goal is met; L{None} for a figure without a goal.
    """

    figure: str
    unit: str
    values: dict[str, Value]
    goal: str = ""
    measured: str = ""
    met: bool | None = None


@dataclass
class Curve:
    """
    A series of one subject against a size, for the plot: C{points} of (N, seconds) for as long
    as the subject survived, and C{end}, why it stopped early (L{None} if it did not).
    """

    figure: str
    subject: str
    points: list[tuple[int, float]] = field(default_factory=list)
    end: str | None = None


@dataclass
class Report:
    """
    What a section returns: its rows, its curves, anything else worth keeping in the JSON, and
    plots of its own: by file name, a function that draws into that path, with a caption.
    """

    rows: list[Row] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Callable[[Path, str], None]] = field(default_factory=dict)


def _ratioText(ratios: Mapping[str, float]) -> str:
    return " / ".join(f"{r:.2f}x" for r in ratios.values())


def atMost(values: Mapping[str, Value], ours: tuple[str, ...], ref: str, limit: float) -> Row:
    """
    Judge "C{values[s] / values[ref]} ≤ C{limit}" for each subject C{s} of C{ours}.

    @return: a L{Row} holding only the goal, the ratios and the verdict: met only if every
        subject of C{ours} meets it; not met if any measurement is missing.
    """
    return _judge(values, ours, ref, limit, speedUp=False)


def atLeast(values: Mapping[str, Value], ours: tuple[str, ...], ref: str, limit: float) -> Row:
    """
    Judge the speed-up "C{values[ref] / values[s]} ≥ C{limit}" for each subject C{s} of C{ours}.

    @return: as L{atMost}.
    """
    return _judge(values, ours, ref, limit, speedUp=True)


def _judge(
    values: Mapping[str, Value], ours: tuple[str, ...], ref: str, limit: float, speedUp: bool
) -> Row:
    sign = "≥" if speedUp else "≤"
    goal = f"{sign} {limit:.1f}x {ref}" if limit < 2 else f"{sign} {limit:g}x {ref}"
    refValue = values.get(ref)
    ratios: dict[str, float] = {}
    for subject in ours:
        mine = values.get(subject)
        missing = ref if not isinstance(refValue, float) else subject
        if not isinstance(mine, float) or not isinstance(refValue, float):
            return Row("", "", {}, goal, f"no figure for {missing}", False)
        ratios[subject] = refValue / mine if speedUp else mine / refValue
    met = all((r >= limit) if speedUp else (r <= limit) for r in ratios.values())
    return Row("", "", {}, goal, _ratioText(ratios), met)


@contextmanager
def gcOff() -> Iterator[None]:
    """
    Run the body with the cyclic garbage collector off (as C{timeit} does), after a collection,
    so that no collection of earlier garbage lands inside a timing.
    """
    gc.collect()
    wasOn = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if wasOn:
            gc.enable()


def machine() -> dict[str, str]:
    """
    @return: what a figure depends on: CPU model and cores, OS, Python and Twisted versions, and
        the load average (1, 5, 15 minutes) when the run started: other work on the machine
        makes every figure noisier.
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "twisted": version("twisted"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def asReactor(clock: Clock) -> IReactorTime:
    """
    @return: C{clock}, typed as the L{IReactorTime} it provides (which mypy learns only through
        the mypy-zope plugin).
    """
    return cast(IReactorTime, clock)


class HeapClock(Clock):
    """
    A L{Clock} that keeps its calls in a heap.

    C{Clock} re-sorts its whole list of calls on every C{callLater} and after every call it runs:
    with 50,000 timeouts pending that is minutes of sorting, which would drown the lock being
    measured.  Here scheduling is O(log n), a cancelled call is dropped when it comes up, and a
    reset call is pushed again (its older entry is then stale and skipped).
    """

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._pushed = 0

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        call = DelayedCall(
            self.seconds() + delay, callable, args, kw, _forget, self._push, self.seconds
        )
        self._push(call)
        return _provides(call)

    def _push(self, call: DelayedCall) -> None:
        self._pushed += 1
        heapq.heappush(self._heap, (call.getTime(), self._pushed, call))

    def _prune(self) -> None:
        heap = self._heap
        while heap:
            when, _, call = heap[0]
            if not (call.cancelled or call.called) and when == call.getTime():
                return
            heapq.heappop(heap)

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        return [
            _provides(c)
            for c in sorted(
                (c for w, _, c in self._heap if not (c.cancelled or c.called) and w == c.getTime()),
                key=DelayedCall.getTime,
            )
        ]

    def nextCall(self) -> float | None:
        """
        @return: when the earliest pending call is due; L{None} if none is pending.
        """
        self._prune()
        return self._heap[0][0] if self._heap else None

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        heap = self._heap
        while True:
            self._prune()
            if not heap or heap[0][0] > self.rightNow:
                return
            call = heapq.heappop(heap)[2]
            call.called = 1
            call.func(*call.args, **call.kw)


def _provides(call: DelayedCall) -> IDelayedCall:
    # DelayedCall implements IDelayedCall, which mypy learns only through the mypy-zope plugin.
    return cast(IDelayedCall, call)


def _forget(call: DelayedCall) -> None:
    # A cancelled call stays in the heap, marked cancelled, until it comes up: removing it now
    # would cost a scan.
    pass
