"""
A throwaway C{redis-server} for the tests of L{txrwlock.redis}: on a free loopback port, in a
temporary folder, stopped after the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

from twisted.trial.unittest import SkipTest, TestCase

__all__ = ["REDIS_SERVER", "RedisServer", "requireRedis", "skipOrFail", "stopProcess"]

REDIS_SERVER = shutil.which("redis-server")

_HOW_TO_ENABLE = (
    "redis-server is not installed: run `apt-get install redis-server` (or, as root, "
    "`bash .ci/ensure-redis`) to run the Redis tests"
)


def requireRedis(testCase: TestCase) -> str:
    """
    @return: the path of C{redis-server}.
    @raise SkipTest: if it is missing, unless C{CI=true}: in CI the test fails instead.
    """
    if REDIS_SERVER is not None:
        return REDIS_SERVER
    skipOrFail(testCase, _HOW_TO_ENABLE)


def skipOrFail(testCase: TestCase, howToEnable: str) -> NoReturn:
    """
    A server the test needs is missing: skip it, saying C{howToEnable}, unless C{CI=true}: in CI
    the test fails instead.
    """
    if os.environ.get("CI") == "true":
        testCase.fail(howToEnable)
    raise SkipTest(howToEnable)


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """
    One C{redis-server} process, restartable on the same port and folder (so with its data, if
    its options persist any).

    Its methods block, briefly: they run in setUp, tearDown, or while the test deliberately takes
    Redis away.
    """

    def __init__(self, executable: str, directory: str, *options: str) -> None:
        """
        @param options: C{redis-server} options after the defaults (no persistence), e.g.
            C{"--appendonly", "yes"}.
        """
        self.executable = executable
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.port = _freePort()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """
        Start the server and wait until it answers.
        """
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        args += ["--logfile", "redis.log", *self.options]
        self.process = subprocess.Popen(args, cwd=self.directory, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.command("PING")  # any reply will do: +PONG, or -NOAUTH with a password
                return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """
        Stop the server with C{sig} (SIGTERM: cleanly, persisting what its options persist) and
        wait for it to exit.
        """
        process, self.process = self.process, None
        if process is not None:
            stopProcess(process, sig)

    def restart(self) -> None:
        """
        Stop the server cleanly and start it again, on the same port and folder.
        """
        self.stop()
        self.start()

    def pause(self) -> None:
        """
        Freeze the server (SIGSTOP): connections stay open, commands go unanswered.
        """
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def command(self, *args: str) -> bytes:
        """
        Run one command on a fresh connection.

        @return: the first line of the reply (for a bulk reply, its payload), without CRLF.
        """
        request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(request.encode())
            reply = b""
            while not reply.endswith(b"\r\n") or (reply.startswith(b"$") and _short(reply)):
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                reply += chunk
        if reply.startswith(b"$"):
            header, _, payload = reply.partition(b"\r\n")
            return payload[: int(header[1:])] if int(header[1:]) >= 0 else b""
        return reply.rstrip(b"\r\n")


def stopProcess(process: subprocess.Popen[bytes], sig: int, timeout: float = 30.0) -> None:
    """
    Send C{sig} to a server's C{process} (resumed first, if paused: it must run to exit), and
    wait for it to exit; kill it if it has not within C{timeout} seconds.
    """
    if process.poll() is None:
        if sig != signal.SIGKILL:
            os.kill(process.pid, signal.SIGCONT)
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _short(reply: bytes) -> bool:
    header, _, payload = reply.partition(b"\r\n")
    size = int(header[1:])
    return size >= 0 and len(payload) < size + 2
