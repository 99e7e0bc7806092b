"""
A throwaway PostgreSQL 15 server for the tests of L{txrwlock.postgres}: initdb into a temporary
folder, a server on a free loopback port, run as an unprivileged user (PostgreSQL refuses root,
and the tests and CI run as root), stopped after the tests.

The server has two roles with passwords: C{postgres}, the superuser, and C{app}, a plain role
that can only log in, as the locks need no privilege.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.redisserver import skipOrFail, stopProcess
from txrwlock._ports import freeLoopbackPort

__all__ = ["PG_BIN", "PostgresServer", "requirePostgres"]

PG_BIN = Path(os.environ.get("TXRWLOCK_PG_BIN", "/usr/lib/postgresql/15/bin"))

_HOW_TO_ENABLE = (
    f"PostgreSQL 15 is not installed ({PG_BIN}/postgres is missing): run `apt-get install"
    " postgresql` (or, as root, `bash .ci/ensure-postgres`) to run the PostgreSQL tests"
)

PASSWORD = "s3cret"


def requirePostgres(testCase: TestCase) -> Path:
    """
    @return: the folder of PostgreSQL's programs.
    @raise SkipTest: if they are missing, unless C{CI=true}: in CI the test fails instead.
    """
    if (PG_BIN / "postgres").exists() and (PG_BIN / "initdb").exists():
        return PG_BIN
    skipOrFail(testCase, _HOW_TO_ENABLE)


def _asUnprivileged() -> list[str]:
    """
    @return: the prefix that runs a command as C{nobody} when we are root, else nothing.
    """
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class PostgresServer:
    """
    One PostgreSQL server, restartable on the same port and data folder (so with its data).

    Its methods block, briefly: they run in setUp, at exit, or while a test
    deliberately takes the server away.
    """

    def __init__(self, bin: Path, *options: str) -> None:
        """
        @param options: C{postgres} options after the defaults (no fsync, for speed), e.g.
            C{"-c", "fsync=on"}.
        """
        self.bin = bin
        self.options = options
        # Not under trial's folder: the unprivileged user must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="txrwlock-pg-"))
        self.data = self.directory / "data"
        self.port = freeLoopbackPort()
        self.process: subprocess.Popen[bytes] | None = None
        self._initdb()

    def conninfo(self, user: str = "app", password: str = PASSWORD, dbname: str = "app") -> str:
        """
        @return: the libpq conninfo of the server, as C{user} with C{password}.
        """
        return f"host=127.0.0.1 port={self.port} user={user} password={password} dbname={dbname}"

    def _initdb(self) -> None:
        pwfile = self.directory / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.directory, "nobody", "nogroup")
            shutil.chown(pwfile, "nobody", "nogroup")
        args = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
        args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"]
        self._run(args)

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(
            _asUnprivileged() + args, capture_output=True, text=True, cwd=self.directory
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        """
        Start the server and wait until it answers; create the role and database C{app} if
        missing.
        """
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        args += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}"]
        args += ["-c", "fsync=off", "-c", "max_connections=200", "-c", "log_min_messages=fatal"]
        args += self.options
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            _asUnprivileged() + args, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while self.sql("SELECT 1") != "1":
            if self.process.poll() is not None or time.monotonic() > deadline:
                text = (self.directory / "server.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"postgres did not start on port {self.port}:\n{text}")
            time.sleep(0.05)
        if self.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'app'") == "0":
            self.sql(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")
            self.sql("CREATE DATABASE app OWNER app")

    def sql(self, query: str, dbname: str = "postgres") -> str | None:
        """
        Run C{query} as the superuser, through the server's socket, with psql.

        @return: its output, stripped; L{None} if psql failed (as when the server is down).
        """
        args = [str(self.bin.parent / "bin" / "psql")]
        if not Path(args[0]).exists():
            args = ["psql"]
        args += ["-h", str(self.data), "-p", str(self.port), "-U", "postgres", "-d", dbname]
        args += ["-XAtq", "-c", query]
        done = subprocess.run(_asUnprivileged() + args, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def stop(self, sig: int = signal.SIGINT) -> None:
        """
        Stop the server with C{sig} (SIGINT: fast shutdown, with a checkpoint; SIGQUIT:
        immediate, a crash) and wait for it to exit.
        """
        process, self.process = self.process, None
        if process is not None:
            stopProcess(process, sig)

    def restart(self) -> None:
        """
        Stop the server (fast shutdown) and start it again, on the same port and data.
        """
        self.stop()
        self.start()

    def destroy(self) -> None:
        """
        Stop the server and delete its folder.
        """
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
