#!/usr/bin/env python3
# -*- test-case-name: tests.test_examples -*-
"""
A config store read by many request handlers and refreshed by a writer.

Each request holds a read lock for its whole run, so that every setting it reads, before and
after its slow steps, comes from one version of the config.  A refresher fetches a new version
(without the lock), then takes the write lock to swap it in: the swap waits for the requests in
flight, and new requests queue behind it (writer preference), so it cannot starve.  But a slow
request (a report) could keep it waiting, and the requests queued behind it with it: so the
refresher gives up after a timeout (C{addTimeout}), which lets the queued requests go on, and
tries again at its next round.

Usage: C{python examples/cache.py [--seed N]}; runs for about four seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from txrwlock import TxReadersWriterLock

__all__ = ["ConfigStore", "Summary", "main", "runScenario"]


@dataclass(frozen=True)
class Config:
    """
    One version of the settings.
    """

    version: int
    settings: dict[str, str]


class ConfigStore:
    """
    The current L{Config}, read under the read lock and replaced under the write lock.
    """

    def __init__(self, config: Config) -> None:
        self.lock = TxReadersWriterLock()
        self.current = config

    async def replace(self, config: Config, timeout: float, clock: IReactorTime) -> bool:
        """
        Swap C{config} in once no request is in flight, giving up after C{timeout} seconds.

        @return: whether it was swapped in.
        """
        try:
            await self.lock.writerAcquire().addTimeout(timeout, clock)
        except defer.TimeoutError:
            return False
        try:
            self.current = config
        finally:
            self.lock.writerRelease()
        return True


@dataclass
class Summary:
    """
    What the scenario saw.

    @ivar served: requests served, by the config version they saw.
    @ivar torn: requests that saw two versions in one run (the lock rules it out).
    @ivar applied: versions swapped in, in order.
    @ivar timedOut: versions whose swap timed out.
    @ivar longestWait: the longest a request waited for the read lock, in seconds.
    """

    served: dict[int, int] = field(default_factory=dict)
    torn: int = 0
    applied: list[int] = field(default_factory=list)
    timedOut: list[int] = field(default_factory=list)
    longestWait: float = 0.0


def runScenario(
    clock: IReactorTime, seed: int, log: Callable[[str], None]
) -> defer.Deferred[Summary]:
    """
    Serve 40 seeded pseudo-random requests and one slow report (1.6 s) over three seconds of
    C{clock}, while a refresher fetches a new config every second and swaps it in with a 0.4 s
    timeout.

    @param log: called with one line for each thing worth telling.
    @return: a L{Deferred} that fires with the L{Summary} once all is done.
    """
    # Without the mypy-zope plugin, mypy takes an interface's methods for unbound functions.
    now: Callable[[], float] = clock.seconds  # type: ignore[misc]
    start = now()
    rng = random.Random(seed)
    store = ConfigStore(Config(1, {"greeting": "hello v1", "footer": "v1"}))
    summary = Summary()

    def say(line: str) -> None:
        log(f"{now() - start:5.2f}s  {line}")

    async def request(name: str, steps: Sequence[float]) -> None:
        asked = now()
        async with store.lock.reader:
            waited = now() - asked
            config = store.current
            greeting = config.settings["greeting"]
            if len(steps) == 1:
                say(f"{name}: starts, reads v{config.version}")
            for step in steps:  # slow work (database, templates) between reads of the config
                await task.deferLater(clock, step)
            footer = store.current.settings["footer"]
        summary.longestWait = max(summary.longestWait, waited)
        if not greeting.endswith(footer):
            summary.torn += 1
        summary.served[config.version] = summary.served.get(config.version, 0) + 1
        if len(steps) == 1 or waited > 0.1:
            say(f"{name}: done after waiting {waited:.2f} s, read v{config.version} throughout")

    async def refresher(rounds: int) -> None:
        version = store.current.version
        for _ in range(rounds):
            await task.deferLater(clock, 0.9)
            version += 1
            await task.deferLater(clock, 0.1)  # fetch it, without the lock
            stats = store.lock.statistics()
            say(f"refresher: v{version} fetched; requests in flight: {stats.readers}")
            config = Config(version, {"greeting": f"hello v{version}", "footer": f"v{version}"})
            if await store.replace(config, 0.4, clock):
                summary.applied.append(version)
                say(f"refresher: v{version} swapped in")
            else:
                summary.timedOut.append(version)
                say(
                    f"refresher: gave up on v{version} after 0.4 s, a request is still in flight;"
                    " the requests queued behind it go on"
                )

    async def requestAt(delay: float, name: str, steps: Sequence[float]) -> None:
        await task.deferLater(clock, delay)
        await request(name, steps)

    jobs = [
        defer.Deferred.fromCoroutine(
            requestAt(rng.uniform(0, 3.2), f"request {i}", [rng.uniform(0.02, 0.08)] * 2)
        )
        for i in range(40)
    ]
    jobs.append(defer.Deferred.fromCoroutine(requestAt(1.2, "report", [1.6])))
    jobs.append(defer.Deferred.fromCoroutine(refresher(3)))
    return defer.gatherResults(jobs).addCallback(lambda _: summary)


def _report(summary: Summary) -> str:
    served = ", ".join(f"v{v}: {n}" for v, n in sorted(summary.served.items()))
    return (
        f"served {sum(summary.served.values())} requests ({served}), {summary.torn} saw two"
        f" versions; swapped in {summary.applied}, timed out {summary.timedOut};"
        f" longest wait for the read lock {summary.longestWait:.2f} s"
    )


async def main(reactor: IReactorTime, *argv: str, out: TextIO = sys.stdout) -> None:
    """
    Run the scenario on C{reactor}, logging to C{out}.
    """
    parser = argparse.ArgumentParser(description="A config store guarded by a readers/writer lock.")
    parser.add_argument("--seed", type=int, default=1, help="seed of the requests' times")
    args = parser.parse_args(argv)
    summary = await runScenario(reactor, args.seed, lambda line: print(line, file=out))
    print(_report(summary), file=out)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
