#!/usr/bin/env python3
# -*- test-case-name: tests.test_examples -*-
"""
Watch a L{TxReadersWriterLock} at work.

A handful of readers and writers, with seeded pseudo-random pauses and work times, share one
resource on a real reactor.  A live timeline shows one row per task, one column per tick::

    R1  RRRR  ...RRR
    W1    ..WWW

C{R} or C{W}: the task holds the lock; C{.}: it waits for it; blank: it does something else.  The
last line checks, from the recorded events, what the picture shows: no writer overlapped anyone,
writers went in arrival order, how often a waiting reader was overtaken by a writer that came
after it (writer preference allows it, the fair policy does not), and the longest wait.

Usage: C{python examples/demo.py [--fair] [--seed N] [--tick SECONDS] [--svg FILE]}
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO
from xml.sax.saxutils import escape

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.interfaces import IReactorTime

from txrwlock import TxReadersWriterLock

__all__ = [
    "Event",
    "Recorder",
    "Verdict",
    "Worker",
    "check",
    "main",
    "makeWorkers",
    "renderAscii",
    "renderSvg",
    "runWorkers",
]

ASK, GOT, DONE = "ask", "got", "done"


@dataclass(frozen=True)
class Worker:
    """
    One task of the demo and its script.

    @ivar name: C{R1}, C{W2}...: its row's label.
    @ivar writer: whether it acquires the lock for writing.
    @ivar steps: per round, how many ticks it does something else before asking for the lock,
        and how many it then holds the lock.
    """

    name: str
    writer: bool
    steps: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Event:
    """
    Something a worker did, at C{time} seconds after the start: C{ask}ed for the lock, C{got} it,
    or was C{done} with it (and released it right after).
    """

    time: float
    worker: int
    kind: str


def makeWorkers(seed: int, readers: int = 5, writers: int = 3, rounds: int = 3) -> list[Worker]:
    """
    @return: C{readers} readers then C{writers} writers, each with C{rounds} rounds of seeded
        pseudo-random pauses and work times.  Readers read longer than writers write, so that
        readers overlap and writers queue behind them.
    """
    rng = random.Random(seed)

    def script(writer: bool) -> tuple[tuple[int, int], ...]:
        holding = (1, 3) if writer else (2, 6)
        return tuple((rng.randint(0, 8), rng.randint(*holding)) for _ in range(rounds))

    return [Worker(f"R{i + 1}", False, script(False)) for i in range(readers)] + [
        Worker(f"W{i + 1}", True, script(True)) for i in range(writers)
    ]


class Recorder:
    """
    The events of a run, in the order they happened.
    """

    def __init__(self, clock: IReactorTime) -> None:
        # Without the mypy-zope plugin, mypy takes an interface's methods for unbound functions.
        self._seconds: Callable[[], float] = clock.seconds  # type: ignore[misc]
        self.start = self._seconds()
        self.events: list[Event] = []

    def now(self) -> float:
        """
        @return: seconds since the start.
        """
        return self._seconds() - self.start

    def record(self, worker: int, kind: str) -> None:
        """
        Record that the worker at index C{worker} did C{kind} now.
        """
        self.events.append(Event(self.now(), worker, kind))


def runWorkers(
    workers: Sequence[Worker],
    lock: TxReadersWriterLock,
    clock: IReactorTime,
    tick: float,
    recorder: Recorder,
) -> Deferred[None]:
    """
    Run every worker's script against C{lock}, with C{tick} seconds of C{clock} per tick.

    @return: a L{Deferred} that fires when all are done.
    """

    async def work(index: int, worker: Worker) -> None:
        side = lock.writer if worker.writer else lock.reader
        for pause, holding in worker.steps:
            await task.deferLater(clock, pause * tick)
            recorder.record(index, ASK)
            async with side:
                recorder.record(index, GOT)
                await task.deferLater(clock, holding * tick)
                # Recorded before the release: the next holder may be granted inside it.
                recorder.record(index, DONE)

    done = gatherResults([ensureDeferred(work(i, w)) for i, w in enumerate(workers)])
    return done.addCallback(lambda _: None)


@dataclass(frozen=True)
class _Acquisition:
    worker: int
    asked: int  # indices into the events: their order is the order things happened in
    got: int
    askedAt: float
    gotAt: float


def _acquisitions(events: Sequence[Event]) -> list[_Acquisition]:
    asked: dict[int, tuple[int, float]] = {}
    result = []
    for seq, e in enumerate(events):
        if e.kind == ASK:
            asked[e.worker] = (seq, e.time)
        elif e.kind == GOT:
            askSeq, askedAt = asked.pop(e.worker)
            result.append(_Acquisition(e.worker, askSeq, seq, askedAt, e.time))
    return result


@dataclass(frozen=True)
class Verdict:
    """
    What the recorded events show.

    @ivar exclusive: no writer held the lock beside anyone.
    @ivar writersInOrder: writers were granted the lock in the order they asked.
    @ivar overtaken: how many times a waiting reader was overtaken by a writer that asked after
        it.
    @ivar mostReaders: the most readers that held the lock at once.
    @ivar longestWait: the longest wait, in seconds, and who waited.
    """

    fair: bool
    exclusive: bool
    writersInOrder: bool
    overtaken: int
    mostReaders: int
    longestWait: tuple[float, str]

    @property
    def ok(self) -> bool:
        """
        Whether the run kept the lock's promises (under the fair policy: nobody overtaken).
        """
        return self.exclusive and self.writersInOrder and not (self.fair and self.overtaken)

    def findings(self) -> list[str]:
        def yes(b: bool) -> str:
            return "yes" if b else "NO"

        wait, who = self.longestWait
        return [
            f"no writer overlapped anyone: {yes(self.exclusive)}",
            f"writers in arrival order: {yes(self.writersInOrder)}",
            f"readers overtaken by later writers: {self.overtaken}",
            f"most readers at once: {self.mostReaders}",
            f"longest wait: {who} {wait:.2f} s",
        ]

    def line(self) -> str:
        """
        @return: the findings on one line, ending with C{OK} or C{FAILED}.
        """
        return f"check: {' | '.join(self.findings())} => {'OK' if self.ok else 'FAILED'}"


def check(workers: Sequence[Worker], events: Sequence[Event], fair: bool) -> Verdict:
    """
    Check a run from its events alone.
    """
    holders: set[int] = set()
    exclusive = True
    mostReaders = 0
    for e in events:
        if e.kind == GOT:
            writing = any(workers[h].writer for h in holders)
            if writing or (workers[e.worker].writer and holders):
                exclusive = False
            holders.add(e.worker)
            mostReaders = max(mostReaders, sum(1 for h in holders if not workers[h].writer))
        elif e.kind == DONE:
            holders.discard(e.worker)
    acquisitions = _acquisitions(events)
    writes = [a for a in acquisitions if workers[a.worker].writer]
    reads = [a for a in acquisitions if not workers[a.worker].writer]
    grants = [a.got for a in sorted(writes, key=lambda a: a.asked)]
    overtaken = sum(1 for r in reads for w in writes if w.asked > r.asked and w.got < r.got)
    longest = max(acquisitions, key=lambda a: a.gotAt - a.askedAt)
    return Verdict(
        fair=fair,
        exclusive=exclusive,
        writersInOrder=grants == sorted(grants),
        overtaken=overtaken,
        mostReaders=mostReaders,
        longestWait=(longest.gotAt - longest.askedAt, workers[longest.worker].name),
    )


def _intervals(
    workers: Sequence[Worker], events: Sequence[Event], now: float
) -> list[list[tuple[str, float, float]]]:
    """
    @return: per worker, its waits C{(".", start, end)} and holds C{("R" or "W", start, end)},
        those still going on ending at C{now}.
    """
    rows: list[list[tuple[str, float, float]]] = [[] for _ in workers]
    last: dict[int, Event] = {}
    for e in events:
        if e.kind != ASK:
            rows[e.worker].append(_span(workers, last[e.worker], e.time))
        last[e.worker] = e
    for e in last.values():
        if e.kind != DONE:
            rows[e.worker].append(_span(workers, e, now))
    return rows


def _span(workers: Sequence[Worker], since: Event, until: float) -> tuple[str, float, float]:
    """
    @return: what the worker did from the event C{since} to C{until}: wait or hold.
    """
    if since.kind == ASK:
        return (".", since.time, until)
    return ("W" if workers[since.worker].writer else "R", since.time, until)


def renderAscii(
    workers: Sequence[Worker], events: Sequence[Event], now: float, tick: float
) -> list[str]:
    """
    @return: the timeline up to C{now}, one line per worker under a ruler marking each second;
        each column shows what the worker did in the middle of its tick.
    """
    columns = int(now / tick + 0.5)
    ruler = [" "] * (columns + 3)
    for second in range(int(now) + 1):
        label, c = f"|{second}s", round(second / tick)
        ruler[c : c + len(label)] = label
    lines = [f"    {''.join(ruler).rstrip()}"]
    for worker, intervals in zip(workers, _intervals(workers, events, now), strict=True):
        cells = [" "] * columns
        for char, start, end in intervals:
            for c in range(columns):
                if start <= (c + 0.5) * tick < end:
                    cells[c] = char
        lines.append(f"{worker.name:<4}{''.join(cells)}".rstrip())
    return lines


def renderSvg(
    workers: Sequence[Worker], events: Sequence[Event], tick: float, title: str, verdict: Verdict
) -> str:
    """
    @return: the same timeline as an SVG picture, drawn from the exact event times (ten pixels
        per tick), with the verdict underneath.
    """
    end = max((e.time for e in events), default=0.0)
    scale, left, top, rowHeight = 10 / tick, 48.0, 62.0, 26.0  # pixels per second, margins, row
    bottom = top + rowHeight * len(workers)
    findings = [*verdict.findings(), "verdict: " + ("OK" if verdict.ok else "FAILED")]
    width = max(left + end * scale + 24, 560.0)
    height = bottom + 24 + 16 * len(findings)
    colours = {"R": "#4c78a8", "W": "#e45756"}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}"'
        f' viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" font-size="13">',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
        f'<text x="8" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<rect x="8" y="30" width="16" height="10" rx="2" fill="{colours["R"]}"/>'
        '<text x="28" y="40">reading</text>'
        f'<rect x="100" y="30" width="16" height="10" rx="2" fill="{colours["W"]}"/>'
        '<text x="120" y="40">writing</text>'
        '<line x1="192" y1="35" x2="208" y2="35" stroke="#999" stroke-width="2"'
        ' stroke-dasharray="2 3"/><text x="212" y="40">waiting</text>',
    ]
    for second in range(int(end) + 1):
        x = left + second * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 6:.0f}" x2="{x:.1f}" y2="{bottom:.0f}"'
            f' stroke="#ddd"/><text x="{x:.1f}" y="{top - 8:.0f}" fill="#888"'
            f' text-anchor="middle" font-size="11">{second}s</text>'
        )
    for row, (worker, intervals) in enumerate(
        zip(workers, _intervals(workers, events, end), strict=True)
    ):
        y = top + row * rowHeight
        out.append(f'<text x="8" y="{y + rowHeight / 2 + 4:.1f}">{worker.name}</text>')
        for char, start, stop in intervals:
            x, w = left + start * scale, (stop - start) * scale
            if char == ".":
                out.append(
                    f'<line x1="{x:.1f}" y1="{y + rowHeight / 2:.1f}" x2="{x + w:.1f}"'
                    f' y2="{y + rowHeight / 2:.1f}" stroke="#999" stroke-width="2"'
                    f' stroke-dasharray="2 3"><title>{worker.name} waits</title></line>'
                )
            else:
                out.append(
                    f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{w:.1f}"'
                    f' height="{rowHeight - 8:.0f}" rx="3" fill="{colours[char]}">'
                    f"<title>{worker.name} {'writes' if char == 'W' else 'reads'}"
                    f" {start:.2f}-{stop:.2f} s</title></rect>"
                )
    for i, finding in enumerate(findings):
        out.append(f'<text x="8" y="{bottom + 28 + 16 * i:.0f}">{escape(finding)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _parseArgs(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Watch a TxReadersWriterLock at work.")
    parser.add_argument("--fair", action="store_true", help="use the fair (FIFO) policy")
    parser.add_argument("--seed", type=int, default=1, help="seed of the tasks' scripts")
    parser.add_argument("--tick", type=float, default=0.1, help="seconds per column")
    parser.add_argument("--svg", metavar="FILE", help="also draw the timeline into FILE")
    return parser.parse_args(argv)


async def main(reactor: IReactorTime, *argv: str, out: TextIO = sys.stdout) -> None:
    """
    Run the demo on C{reactor}, drawing the timeline on C{out}: redrawn each tick if C{out} is
    a terminal, else drawn once at the end.

    @raise SystemExit: with status 1 if the check fails.
    """
    args = _parseArgs(argv)
    workers = makeWorkers(args.seed)
    lock = TxReadersWriterLock(fair=args.fair)
    policy = "fair" if args.fair else "writer-preferring"
    title = f"txrwlock demo: {policy} policy, seed {args.seed}"
    print(f"{title}; {args.tick:g} s per column; R/W: holds the lock, .: waits", file=out)
    recorder = Recorder(reactor)
    live = out.isatty()
    drawn = 0

    def draw() -> None:
        nonlocal drawn
        lines = renderAscii(workers, recorder.events, recorder.now(), args.tick)
        if drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")  # back to the picture's top, then clear below
        out.write("\n".join(lines) + "\n")
        out.flush()
        drawn = len(lines)

    redraw = task.LoopingCall(draw)
    redraw.clock = reactor
    if live:
        redraw.start(args.tick)
    await runWorkers(workers, lock, reactor, args.tick, recorder)
    if live:
        redraw.stop()
    draw()
    verdict = check(workers, recorder.events, args.fair)
    print(verdict.line(), file=out)
    if args.svg:
        with open(args.svg, "w", encoding="utf-8") as f:
            f.write(renderSvg(workers, recorder.events, args.tick, title, verdict))
        print(f"timeline drawn into {args.svg}", file=out)
    if not verdict.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
