"""
A worker process for the multi-process tests of L{txrwlock.redis}, run by C{tests.test_redis}
as C{python tests/redisworker.py MODE PORT NAME LEASE ARG}.

Modes:
  - C{counter}: ARG times, under the write lock, a non-atomic read-modify-write of two Redis keys
    (C{a}, then C{b}, to the same new value) and the fencing token pushed on C{tokens}; every
    other time, under the read lock, check that C{a} equals C{b}.  Prints C{DONE <json>} with
    the torn reads seen and the holds lost.
  - C{hold}: take the write lock, print C{HOLDING <token>}, keep it ARG seconds, print
    C{KEPT} if it still holds it (else C{LOST}), release it and print C{RELEASED}.
  - C{check}: take the write lock, print C{HOLDING <token>}, and half a lease later print
    C{WRITING <isWriting>}: if the worker is paused past its lease meanwhile, this runs on resume
    before the timer that loses the hold, due at the end of the lease.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred

from txrwlock.redis import RedisReadersWriterLock, connect

__all__ = ["main"]


def say(line: str) -> None:
    print(line, flush=True)


async def counter(reactor: Any, port: int, name: str, lease: float, times: int) -> None:
    lost = []

    def onLost(lock: RedisReadersWriterLock, writer: bool) -> None:
        lost.append(writer)

    locks = await connect("127.0.0.1", port, reactor=reactor)
    store = locks._client
    lock = locks.lock(name, lease=lease, lost=onLost)
    torn = 0
    for i in range(times):
        async with lock.writer:
            value = int((await store.execute("GET", "a")) or 0) + 1
            await store.execute("SET", "a", value)
            await store.execute("SET", "b", value)
            await store.execute("RPUSH", "tokens", str(lock.fencingToken))
        if i % 2:
            async with lock.reader:
                a = await store.execute("GET", "a")
                b = await store.execute("GET", "b")
                torn += a != b
    await locks.disconnect()
    say("DONE " + json.dumps({"torn": torn, "lost": len(lost)}))


async def hold(reactor: Any, port: int, name: str, lease: float, seconds: float) -> None:
    lost = []

    def onLost(lock: RedisReadersWriterLock, writer: bool) -> None:
        lost.append(writer)

    locks = await connect("127.0.0.1", port, reactor=reactor)
    lock = locks.lock(name, lease=lease, lost=onLost)
    await lock.writerAcquire()
    say(f"HOLDING {lock.fencingToken}")
    await task.deferLater(reactor, seconds, lambda: None)
    say("KEPT" if lock.isWriting and not lost else "LOST")
    await lock.writerRelease()
    say("RELEASED")
    await locks.disconnect()


async def check(reactor: Any, port: int, name: str, lease: float) -> None:
    locks = await connect("127.0.0.1", port, reactor=reactor)
    lock = locks.lock(name, lease=lease)
    await lock.writerAcquire()
    say(f"HOLDING {lock.fencingToken}")
    await task.deferLater(reactor, lease / 2, lambda: None)
    say(f"WRITING {lock.isWriting}")


def main(reactor: Any, mode: str, port: str, name: str, lease: str, arg: str) -> Deferred[None]:
    if mode == "counter":
        work = counter(reactor, int(port), name, float(lease), int(arg))
    elif mode == "check":
        work = check(reactor, int(port), name, float(lease))
    else:
        work = hold(reactor, int(port), name, float(lease), float(arg))
    return Deferred.fromCoroutine(work)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
