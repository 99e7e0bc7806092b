"""
Tests for the scripts in C{examples/}: their logic on a L{Clock}, and the demo once for real.
"""

from __future__ import annotations

import importlib.util
import sys
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from txrwlock import TxReadersWriterLock

__all__ = ["CacheTests", "DemoTests"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    """
    Import C{examples/<name>.py}, which is a script, not part of a package.
    """
    moduleName = f"_txrwlock_example_{name}"
    if moduleName in sys.modules:
        return sys.modules[moduleName]
    spec = importlib.util.spec_from_file_location(moduleName, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[moduleName] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


demo = _load("demo")
cache = _load("cache")


def _runToEnd(clock: Clock, d: Deferred[Any]) -> Any:
    """
    Advance C{clock} from one delayed call to the next until C{d} fires.

    @return: C{d}'s result.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    while not results:
        assert clock.calls, "nothing left to run, and the Deferred has not fired"
        clock.advance(clock.calls[0].getTime() - clock.seconds())  # clock.calls is sorted
    return results[0]


class DemoTests(TestCase):
    """
    The demo (C{examples/demo.py}): its run, its picture and its check.
    """

    tick = 0.1

    def run_(self, fair: bool, seed: int = 1) -> tuple[Any, list[Any]]:
        workers = demo.makeWorkers(seed)
        clock = Clock()
        recorder = demo.Recorder(clock)
        d = demo.runWorkers(workers, TxReadersWriterLock(fair=fair), clock, self.tick, recorder)
        self.assertIsNone(_runToEnd(clock, d))
        return workers, recorder.events

    def test_everyRoundIsRecorded(self) -> None:
        """
        Each worker asks, gets and is done once per round of its script, in that order.
        """
        workers, events = self.run_(fair=False)
        for index, worker in enumerate(workers):
            kinds = [e.kind for e in events if e.worker == index]
            self.assertEqual(kinds, ["ask", "got", "done"] * len(worker.steps))

    def test_checkPasses(self) -> None:
        """
        Under both policies and several seeds, the check finds no overlap and writers in order;
        under writer preference some reader is overtaken by a later writer, in fair mode none.
        """
        for seed in range(1, 6):
            for fair in (False, True):
                workers, events = self.run_(fair, seed)
                verdict = demo.check(workers, events, fair)
                self.assertTrue(verdict.ok, (seed, fair, verdict))
                self.assertTrue(verdict.line().endswith("=> OK"))
        workers, events = self.run_(fair=False, seed=1)
        self.assertGreater(demo.check(workers, events, False).overtaken, 0)
        workers, events = self.run_(fair=True, seed=1)
        self.assertEqual(demo.check(workers, events, True).overtaken, 0)

    def test_checkFindsOverlap(self) -> None:
        """
        A writer granted while a reader holds, or the reverse, fails the check.
        """
        workers = [demo.Worker("R1", False, ()), demo.Worker("W1", True, ())]
        E = demo.Event
        for first, second in ((0, 1), (1, 0)):
            events = [
                E(0.0, first, "ask"),
                E(0.0, first, "got"),
                E(0.1, second, "ask"),
                E(0.1, second, "got"),
                E(0.2, first, "done"),
                E(0.2, second, "done"),
            ]
            verdict = demo.check(workers, events, False)
            self.assertFalse(verdict.exclusive)
            self.assertFalse(verdict.ok)
            self.assertIn("no writer overlapped anyone: NO", verdict.line())
            self.assertTrue(verdict.line().endswith("=> FAILED"))

    def test_checkFindsWritersOutOfOrder(self) -> None:
        """
        A writer granted before one that asked earlier fails the check; in fair mode so does a
        reader overtaken by a later writer.
        """
        workers = [
            demo.Worker("R1", False, ()),
            demo.Worker("W1", True, ()),
            demo.Worker("W2", True, ()),
        ]
        E = demo.Event
        events = [
            E(0.0, 1, "ask"),
            E(0.0, 0, "ask"),
            E(0.0, 2, "ask"),
            E(0.0, 2, "got"),
            E(0.1, 2, "done"),
            E(0.1, 1, "got"),
            E(0.2, 1, "done"),
            E(0.2, 0, "got"),
            E(0.3, 0, "done"),
        ]
        verdict = demo.check(workers, events, False)
        self.assertTrue(verdict.exclusive)
        self.assertFalse(verdict.writersInOrder)
        self.assertEqual(verdict.overtaken, 1)  # W2 asked after R1 and went first
        self.assertEqual(verdict.longestWait, (0.2, "R1"))
        self.assertFalse(verdict.ok)

    def test_checkFair(self) -> None:
        """
        A reader overtaken by a later writer is allowed under writer preference, not in fair mode.
        """
        workers = [demo.Worker("R1", False, ()), demo.Worker("W1", True, ())]
        E = demo.Event
        events = [
            E(0.0, 0, "ask"),
            E(0.0, 1, "ask"),
            E(0.0, 1, "got"),
            E(0.1, 1, "done"),
            E(0.1, 0, "got"),
            E(0.2, 0, "done"),
        ]
        self.assertTrue(demo.check(workers, events, False).ok)
        verdict = demo.check(workers, events, True)
        self.assertEqual((verdict.exclusive, verdict.writersInOrder), (True, True))
        self.assertFalse(verdict.ok)

    def test_asciiPicture(self) -> None:
        """
        The picture has a ruler and one row per worker; it marks holds with the worker's side
        and never shows a writer in a column beside another holder.
        """
        workers, events = self.run_(fair=False)
        end = events[-1].time
        lines = demo.renderAscii(workers, events, end, self.tick)
        self.assertEqual(len(lines), 1 + len(workers))
        self.assertTrue(lines[0].startswith("    |0s"))
        rows = [line[4:].ljust(round(end / self.tick)) for line in lines[1:]]
        for worker, line, row in zip(workers, lines[1:], rows, strict=True):
            self.assertEqual(line[:4].strip(), worker.name)
            self.assertLessEqual(set(row), {" ", ".", "W" if worker.writer else "R"})
        holding = 0
        for column in zip(*rows, strict=True):
            holders = [c for c in column if c in "RW"]
            holding += len(holders)
            self.assertFalse("W" in holders and len(holders) > 1, column)
        held = sum(h for w in workers for _, h in w.steps)
        self.assertEqual(holding, held)  # every tick held shows once

    def test_asciiPictureLive(self) -> None:
        """
        Drawn while the run goes on, a worker that asked and waits shows dots up to now.
        """
        workers = [demo.Worker("W1", True, ((0, 3),)), demo.Worker("W2", True, ((0, 3),))]
        clock = Clock()
        recorder = demo.Recorder(clock)
        d = demo.runWorkers(workers, TxReadersWriterLock(), clock, self.tick, recorder)
        clock.advance(0)  # both ask at 0
        clock.advance(0.2)
        lines = demo.renderAscii(workers, recorder.events, recorder.now(), self.tick)
        self.assertEqual(lines[1:], ["W1  WW", "W2  .."])
        _runToEnd(clock, d)
        lines = demo.renderAscii(workers, recorder.events, recorder.now(), self.tick)
        self.assertEqual(lines[1:], ["W1  WWW", "W2  ...WWW"])

    def test_svg(self) -> None:
        """
        The SVG picture is well-formed and draws one bar per hold and one line per wait.
        """
        workers, events = self.run_(fair=True)
        verdict = demo.check(workers, events, True)
        svg = demo.renderSvg(workers, events, self.tick, "title & more", verdict)
        root = ElementTree.fromstring(svg)
        ns = "{http://www.w3.org/2000/svg}"
        bars = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
        self.assertEqual(len(bars), sum(len(w.steps) for w in workers))
        texts = [t.text for t in root.iter(f"{ns}text")]
        self.assertIn("title & more", texts)
        self.assertIn("verdict: OK", texts)

    def test_main(self) -> None:
        """
        The script's entry point draws the picture once (not on a terminal), ends with the
        check line, and writes the SVG file when asked.
        """
        svg = Path(self.mktemp())
        out = StringIO()
        clock = Clock()
        d = ensureDeferred(demo.main(clock, "--fair", "--seed", "3", "--svg", str(svg), out=out))
        self.assertIsNone(_runToEnd(clock, d))
        lines = out.getvalue().splitlines()
        self.assertIn("fair policy, seed 3", lines[0])
        self.assertEqual(len(lines), 1 + 1 + 8 + 2)  # title, ruler, 8 workers, check, svg
        self.assertTrue(lines[-2].startswith("check: ") and lines[-2].endswith("=> OK"))
        self.assertEqual(lines[-1], f"timeline drawn into {svg}")
        ElementTree.parse(svg)

    def test_mainOnATerminal(self) -> None:
        """
        On a terminal, the picture is redrawn in place every tick while the run goes on.
        """

        class Terminal(StringIO):
            def isatty(self) -> bool:
                return True

        out = Terminal()
        clock = Clock()
        d = ensureDeferred(demo.main(clock, "--seed", "3", out=out))
        clock.advance(0)
        clock.advance(self.tick)
        self.assertEqual(out.getvalue().count("\x1b[9F\x1b[J"), 1)  # back over ruler + 8 rows
        _runToEnd(clock, d)
        redraws = out.getvalue().count("\x1b[9F\x1b[J")
        self.assertGreater(redraws, 20)
        final = out.getvalue().rsplit("\x1b[9F\x1b[J", 1)[1].splitlines()
        self.assertEqual(len(final), 1 + 8 + 1)  # ruler, 8 workers, check
        self.assertTrue(final[-1].endswith("=> OK"))
        self.assertEqual(clock.getDelayedCalls(), [])  # the redrawing stopped


class CacheTests(TestCase):
    """
    The config store (C{examples/cache.py}).
    """

    def test_scenario(self) -> None:
        """
        No request sees two versions; the refresh that meets the slow report times out, and
        the next goes through.
        """
        log: list[str] = []
        clock = Clock()
        summary = _runToEnd(clock, cache.runScenario(clock, 1, log.append))
        self.assertEqual(summary.torn, 0)
        self.assertEqual(sum(summary.served.values()), 41)
        self.assertEqual(summary.applied, [2, 4])
        self.assertEqual(summary.timedOut, [3])
        self.assertEqual(summary.served, {1: 14, 2: 27})  # nobody came after v4
        gaveUp = [line for line in log if "gave up on v3" in line]
        self.assertEqual(len(gaveUp), 1)
        self.assertTrue(gaveUp[0].lstrip().startswith("2.48s"), gaveUp[0])  # 0.4 s after it asked

    def test_replaceTimesOut(self) -> None:
        """
        L{ConfigStore.replace} waits for readers, up to its timeout: then it gives up, the
        config stays, and readers queued behind it get in.
        """
        clock = Clock()
        old, new = cache.Config(1, {}), cache.Config(2, {})
        store = cache.ConfigStore(old)
        store.lock.readerAcquire()
        replaced = ensureDeferred(store.replace(new, 0.4, clock))
        queued = store.lock.readerAcquire()
        self.assertNoResult(queued)
        clock.advance(0.4)
        self.assertIs(self.successResultOf(replaced), False)
        self.assertIs(store.current, old)
        self.assertIs(self.successResultOf(queued), store.lock)
        store.lock.readerRelease()
        store.lock.readerRelease()
        self.assertIs(self.successResultOf(ensureDeferred(store.replace(new, 0.4, clock))), True)
        self.assertIs(store.current, new)
        self.assertFalse(store.lock.isWriting)

    def test_main(self) -> None:
        """
        The script's entry point logs and ends with the summary line.
        """
        out = StringIO()
        clock = Clock()
        _runToEnd(clock, ensureDeferred(cache.main(clock, "--seed", "1", out=out)))
        last = out.getvalue().splitlines()[-1]
        self.assertTrue(last.startswith("served 41 requests"), last)
        self.assertIn("0 saw two versions", last)
