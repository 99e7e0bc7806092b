#!/usr/bin/env python3
"""
Two processes share one lock through Redis (L{txrwlock.redis}).

The parent starts two copies of this script.  Each, five times, takes the write lock, reads a
counter from a file, pauses (long enough for the other to try to get in), writes the counter plus
one with the fencing token it was given, and releases; in between it reads the file under the read
lock.  At the end the counter is 10: no update was lost, and the tokens in the file only grew.

Usage::

    python examples/redis_two_process.py                  # Redis on localhost:6379
    python examples/redis_two_process.py --port 6380      # elsewhere
    python examples/redis_two_process.py --redis-server   # start a throwaway redis-server

Needs C{pip install txrwlock[redis]}, and Redis (or C{redis-server} installed, with
C{--redis-server}).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from txrwlock._ports import freeLoopbackPort
from txrwlock.redis import connect

__all__ = ["main", "worker"]

ROUNDS = 5


async def worker(reactor: IReactorTime, name: str, port: int, store: Path) -> None:
    """
    One process: C{ROUNDS} increments of the counter in C{store} under the write lock.
    """
    locks = await connect("127.0.0.1", port, reactor=reactor)
    lock = locks.lock("example-counter", lease=5.0)
    for _ in range(ROUNDS):
        async with lock.writer:
            counter, _, tokens = store.read_text().partition(" ")
            await task.deferLater(reactor, 0.05, lambda: None)  # the other one tries meanwhile
            token = lock.fencingToken
            store.write_text(f"{int(counter) + 1} {tokens} {token}".strip())
            print(f"{name}: wrote {int(counter) + 1} with fencing token {token}", flush=True)
        async with lock.reader:
            print(f"{name}: read {store.read_text().split()[0]}", flush=True)
        await task.deferLater(reactor, 0.2, lambda: None)  # other work, without the lock
    await locks.disconnect()


def _waitForPort(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Two processes share one lock through Redis.")
    parser.add_argument("--port", type=int, default=6379, help="Redis's port on 127.0.0.1")
    parser.add_argument("--redis-server", action="store_true", help="start a throwaway one")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="txrwlock-example-"))
    server = None
    try:
        if args.redis_server:
            executable = shutil.which("redis-server")
            if executable is None:
                sys.exit("redis-server is not installed (apt-get install redis-server)")
            args.port = freeLoopbackPort()
            command = [executable, "--port", str(args.port), "--bind", "127.0.0.1"]
            command += ["--save", "", "--dir", str(folder)]
            server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            _waitForPort(args.port)
        store = folder / "counter"
        store.write_text("0")
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", name, str(args.port), str(store)]
            )
            for name in ("A", "B")
        ]
        if any(w.wait() for w in workers):
            return 1
        counter, *tokens = map(int, store.read_text().split())
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(folder)
    print(f"counter: {counter} (expected {2 * ROUNDS}); fencing tokens: {tokens}")
    return 0 if counter == 2 * ROUNDS and tokens == sorted(set(tokens)) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        name, port, store = sys.argv[2:5]
        task.react(
            lambda reactor: Deferred.fromCoroutine(worker(reactor, name, int(port), Path(store)))
        )
    sys.exit(main(sys.argv[1:]))
