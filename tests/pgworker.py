"""
A worker process for the multi-process tests of L{txrwlock.postgres}, run by
C{tests.test_postgres} as C{python tests/pgworker.py MODE CONNINFO NAME LEASE ARG}.

Modes:
  - C{counter}: ARG times, under the write lock, a non-atomic read-modify-write of the two
    columns of the one row of table C{counter} (C{a}, then C{b}, to the same new value, in
    separate statements) and the fencing token inserted into C{tokens}; every other time, under
    the read lock, check that C{a} equals C{b}.  Prints C{DONE <json>} with the torn reads seen
    and the holds lost.
  - C{hold}: take the write lock, print C{HOLDING <token>}, keep it ARG seconds, print
    C{KEPT} if it still holds it (else C{GONE}), release it and print C{RELEASED} (or
    C{RELEASE-LOST} if the release failed with L{LockLostError}).  Prints C{LOST} as soon as it
    is told that it lost the hold.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import psycopg
from twisted.internet import task
from twisted.internet.defer import Deferred

from txrwlock.postgres import LockLostError, PostgresReadersWriterLock, connect

__all__ = ["main"]


def say(line: str) -> None:
    print(line, flush=True)


async def counter(reactor: Any, conninfo: str, name: str, lease: float, times: int) -> None:
    lost = []

    def onLost(lock: PostgresReadersWriterLock, writer: bool) -> None:
        lost.append(writer)

    locks = await connect(conninfo, lease=lease, reactor=reactor)
    # The store, blocking: a statement at a time, each in its own transaction.
    store = psycopg.connect(conninfo, autocommit=True)
    lock = locks.lock(name, lost=onLost)
    torn = 0
    for i in range(times):
        async with lock.writer:
            (a,) = store.execute("SELECT a FROM counter").fetchone() or (0,)
            store.execute("UPDATE counter SET a = %s", (a + 1,))
            store.execute("UPDATE counter SET b = %s", (a + 1,))
            store.execute("INSERT INTO tokens (t) VALUES (%s)", (lock.fencingToken,))
        if i % 2:
            async with lock.reader:
                (a,) = store.execute("SELECT a FROM counter").fetchone() or (0,)
                (b,) = store.execute("SELECT b FROM counter").fetchone() or (0,)
                torn += a != b
    store.close()
    await locks.disconnect()
    say("DONE " + json.dumps({"torn": torn, "lost": len(lost)}))


async def hold(reactor: Any, conninfo: str, name: str, lease: float, seconds: float) -> None:
    lost = []

    def onLost(lock: PostgresReadersWriterLock, writer: bool) -> None:
        lost.append(writer)
        say("LOST")

    locks = await connect(conninfo, lease=lease, reactor=reactor)
    lock = locks.lock(name, lost=onLost)
    await lock.writerAcquire()
    say(f"HOLDING {lock.fencingToken}")
    await task.deferLater(reactor, seconds, lambda: None)
    say("KEPT" if lock.isWriting and not lost else "GONE")
    try:
        await lock.writerRelease()
        say("RELEASED")
    except LockLostError:
        say("RELEASE-LOST")
    await locks.disconnect()


def main(reactor: Any, mode: str, conninfo: str, name: str, lease: str, arg: str) -> Deferred[None]:
    if mode == "counter":
        work = counter(reactor, conninfo, name, float(lease), int(arg))
    else:
        work = hold(reactor, conninfo, name, float(lease), float(arg))
    return Deferred.fromCoroutine(work)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
