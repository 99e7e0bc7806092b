"""
A throwaway C{redis-server} for the tests of L{txrwlock.redis}: on a free loopback port, in a
temporary folder, stopped after the test (or, shared by a class, after its last test); a
sentinel; and a loopback TCP proxy that can go silent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, NoReturn

from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from txrwlock._ports import freeLoopbackPort
from txrwlock.redis._client import _IncompleteError, _parse, encode

__all__ = [
    "REDIS_SERVER",
    "RedisServer",
    "SentinelServer",
    "SilentProxy",
    "requireRedis",
    "sharedServer",
    "skipOrFail",
    "stopProcess",
]

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
        self.port = freeLoopbackPort()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """
        Start the server and wait until it answers.
        """
        args = [*self._args(), *self.options]
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

    def _args(self) -> list[str]:
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        return [*args, "--logfile", "redis.log"]

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

    def query(self, *args: str) -> Any:
        """
        Run one command on a fresh connection.

        @return: the whole reply, parsed as the client parses it.
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(encode(*args))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                data += chunk
                try:
                    return _parse(data, 0)[0]
                except _IncompleteError:
                    pass


class SentinelServer(RedisServer):
    """
    A C{redis-server --sentinel} watching the primary at C{primaryPort} as C{service}, with a
    quorum of 1 and a short C{down-after-milliseconds}.
    """

    def __init__(
        self, executable: str, directory: str, primaryPort: int, service: str = "mymaster"
    ) -> None:
        super().__init__(executable, directory)
        self.service = service
        conf = [
            f"sentinel monitor {service} 127.0.0.1 {primaryPort} 1",
            f"sentinel down-after-milliseconds {service} 500",
            f"sentinel failover-timeout {service} 2000",
        ]
        (self.directory / "sentinel.conf").write_text("\n".join(conf) + "\n")

    def _args(self) -> list[str]:
        args = [self.executable, str(self.directory / "sentinel.conf"), "--sentinel"]
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        return [*args, "--logfile", "redis.log"]


def sharedServer(testCase: TestCase, *options: str) -> RedisServer:
    """
    The C{redis-server} of C{testCase}'s class, started with C{options} by its first test and
    stopped after its last (or at exit, if only some of its tests run): a server per class, not
    per test, keeps the suite fast.  Each test starts with an empty database.
    """
    cls = type(testCase)
    shared = cls.__dict__.get("_sharedServer")
    if shared is None or shared.process is None:
        directory = Path(f"{cls.__module__}.{cls.__name__}.redis").resolve()
        shared = RedisServer(requireRedis(testCase), str(directory), *options)
        shared.start()
        atexit.register(shared.stop)
        cls._sharedServer = shared  # type: ignore[attr-defined]
        cls._sharedLeft = len([n for n in dir(cls) if n.startswith("test_")])  # type: ignore[attr-defined]
    shared.command("FLUSHALL")

    def done() -> None:
        cls._sharedLeft -= 1  # type: ignore[attr-defined]
        if not cls._sharedLeft:  # type: ignore[attr-defined]
            shared.stop()

    testCase.addCleanup(done)
    return shared


class _Forward(Protocol):
    """
    One side of a proxied connection: what it receives goes to C{peer}, unless silenced.
    """

    peer: _Forward | None = None
    silent = False
    transport: Any

    def __init__(self, proxy: SilentProxy) -> None:
        self.proxy = proxy

    def connectionMade(self) -> None:
        self.proxy.connections.add(self)
        if self.peer is None:  # the client's side: connect to Redis, forward once there
            self.transport.pauseProducing()
            outgoing = _Forward(self.proxy)
            outgoing.peer = self
            self.peer = outgoing
            factory = ClientFactory.forProtocol(lambda: outgoing)
            self.proxy.reactor.connectTCP("127.0.0.1", self.proxy.targetPort, factory)
        else:
            self.peer.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if not self.silent and self.peer is not None:
            self.peer.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.proxy.connections.discard(self)
        if self.peer is not None and self.peer.transport is not None and not self.silent:
            self.peer.transport.loseConnection()


class SilentProxy:
    """
    A TCP proxy on loopback to the server at C{targetPort}, on C{reactor}: L{silence} makes the
    connections it carries stop forwarding, in both directions, without closing: a network that
    drops everything, or a host gone without a word.  New connections are forwarded.
    """

    def __init__(self, reactor: Any, targetPort: int) -> None:
        self.reactor = reactor
        self.targetPort = targetPort
        self.connections: set[_Forward] = set()
        self._port = reactor.listenTCP(
            0, Factory.forProtocol(lambda: _Forward(self)), 50, "127.0.0.1"
        )
        self.port: int = self._port.getHost().port

    def silence(self) -> None:
        """
        Stop forwarding on every connection open now.
        """
        for connection in self.connections:
            connection.silent = True

    def close(self) -> Any:
        """
        Close every connection, and stop listening.

        @return: a L{Deferred} that fires once the proxy no longer listens.
        """
        for connection in list(self.connections):
            connection.transport.abortConnection()
        return self._port.stopListening()


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
