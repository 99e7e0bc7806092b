# -*- test-case-name: tests.test_postgres -*-
"""
The PostgreSQL client boundary of L{txrwlock.postgres}: psycopg's blocking connections, each
used by one thread at a time of a thread pool of our own, their statements run in order, and
the cancellation of a statement that waits.  The only module that knows psycopg, imported on the
first connection only.
"""

from __future__ import annotations

import threading
from collections import deque
from functools import cache
from types import ModuleType
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

__all__: list[str] = []


@cache
def psycopg() -> ModuleType:
    """
    Import psycopg, lazily: C{pip install txrwlock[postgres]}.
    """
    import psycopg

    return psycopg


def isConnectionError(failure: Failure) -> bool:
    """
    @return: whether C{failure} says that the connection to PostgreSQL is gone (or never came):
        not a statement cancelled, nor an error in SQL.
    """
    error = failure.value
    return isinstance(error, psycopg().OperationalError) and not isinstance(
        error, psycopg().errors.QueryCanceled
    )


class _Statement:
    """
    One statement of a L{Session}: its query, its L{Deferred}, and where it is, for a cancel.
    The thread and the reactor both read and write C{state}, under the session's mutex.
    """

    __slots__ = ("deferred", "params", "query", "reconnect", "state")

    def __init__(self, query: str, params: tuple[object, ...], reconnect: bool) -> None:
        self.query = query
        self.params = params
        self.reconnect = reconnect
        self.deferred: Deferred[Any] = Deferred()
        self.state = "queued"  # then "running", then "done"; or "skipped" if cancelled queued


class Session:
    """
    One PostgreSQL connection (a session), opened when first needed, whose statements run one at
    a time, in the order they came, on a thread of the pool.  So a statement that waits (a
    blocked acquire) holds up this session only, and its thread.
    """

    # Invariants:
    #   - _running is the statement whose thread work is in flight, or None; _queue holds the
    #     statements not yet started, in order.
    #   - _barrier, while not None, is a cancel in flight: the next statement waits for it, so
    #     that a cancel never reaches a statement sent after the one it was meant for.

    def __init__(
        self, client: PostgresClient, setup: str | None, setupParams: tuple[object, ...]
    ) -> None:
        """
        @param setup: run on each new connection, first: it must return the backend's pid.
        """
        self._client = client
        self._setup = setup
        self._setupParams = setupParams
        self._connection: Any = None
        self.pid: int | None = None
        self._mutex = threading.Lock()
        self._queue: deque[_Statement] = deque()
        self._running: _Statement | None = None
        self._barrier: Deferred[None] | None = None
        self.closed = False

    def execute(self, query: str, *params: object, reconnect: bool = True) -> Deferred[Any]:
        """
        Run C{query} with C{params}, once the statements before it are done.

        @param reconnect: if the connection is found broken, open a new one and run C{query}
            there (else fail): only for what may run on another session (this object holds
            nothing, or it does not matter).
        @return: a L{Deferred} of the first row of the result (L{None} if none).
        """
        if self.closed:
            return fail(psycopg().OperationalError("the session was closed by disconnect()"))
        statement = _Statement(query, params, reconnect)
        self._queue.append(statement)
        self._next()
        return statement.deferred

    def cancel(self, deferred: Deferred[Any]) -> None:
        """
        Cancel the statement of C{deferred}: one not started is skipped (its L{Deferred} then
        fails with L{CancelledError}); one running is cancelled in PostgreSQL, from the control
        session (its L{Deferred} then fails with psycopg's C{QueryCanceled}, or fires if it was
        done first).
        """
        with self._mutex:
            running = self._running
            if running is not None and running.deferred is deferred:
                if running.state == "queued":
                    running.state = "skipped"  # sent to its thread, not begun: it will not be
                if running.state != "running":
                    return  # skipped, or done: its result is on its way
                pid = self.pid
            else:
                for statement in self._queue:
                    if statement.deferred is deferred:
                        statement.state = "skipped"
                return
        self._barrier = self._client.control.execute(self._client.cancelQuery, pid)
        self._barrier.addBoth(self._fallen)

    def close(self) -> Deferred[None]:
        """
        Close the connection once the statements already sent are done.
        """
        closing = self.execute("", reconnect=False)
        self.closed = True
        return closing

    def _next(self) -> None:
        while self._running is None and self._barrier is None and self._queue:
            statement = self._queue.popleft()
            if statement.state == "skipped":
                statement.deferred.errback(CancelledError())
                continue
            self._running = statement
            d = deferToThreadPool(self._client.reactor, self._client.pool, self._work, statement)
            d.addBoth(self._done, statement)

    def _fallen(self, _: object) -> None:
        self._barrier = None
        self._next()

    def _done(self, result: object, statement: _Statement) -> None:
        self._running = None
        self._next()
        statement.deferred.callback(result)  # a Failure errbacks

    def _work(self, statement: _Statement) -> Any:
        """
        In a thread of the pool: run C{statement}.
        """
        if not statement.query:
            if self._connection is not None:
                self._connection.close()
            return None
        connection = self._connection
        if connection is None or connection.closed:
            if not statement.reconnect and connection is not None:
                raise psycopg().OperationalError("the connection was lost")
            connection = self._open()
        with self._mutex:
            if statement.state == "skipped":
                raise CancelledError()
            statement.state = "running"
        try:
            try:
                return connection.execute(statement.query, statement.params).fetchone()
            except psycopg().OperationalError:
                if not (statement.reconnect and connection.closed):
                    raise
                # Found broken (the server ended an idle session, or restarted): once more.
                return self._open().execute(statement.query, statement.params).fetchone()
        finally:
            with self._mutex:
                statement.state = "done"

    def _open(self) -> Any:
        """
        In a thread of the pool: open a new connection, and run the setup statement.
        """
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        connection = self._client.openConnection()
        if self._setup is not None:
            self.pid = connection.execute(self._setup, self._setupParams).fetchone()[0]
        self._connection = connection
        return connection


class PostgresClient:
    """
    What the locks of one L{PostgresLocks<txrwlock.postgres.PostgresLocks>} share: the thread
    pool, how to open a connection, and the control session (cancels, statistics).
    """

    def __init__(
        self,
        reactor: Any,
        conninfo: str,
        kwargs: dict[str, Any],
        timeout: int,
        lease: float,
        cancel: str,
    ) -> None:
        """
        @param kwargs: connection parameters beside C{conninfo}.
        @param timeout: the connect timeout, in seconds.
        @param lease: the locks' lease, for the TCP timeouts.
        @param cancel: the statement that cancels the statement of the session whose pid it
            takes.
        """
        self.cancelQuery = cancel
        self.reactor = reactor
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.lease = lease
        self.timeout = timeout
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="txrwlock.postgres")
        self.control = Session(self, None, ())
        self._sessions: list[Session] = []
        self._trigger: Any = None

    def start(self) -> Deferred[None]:
        """
        Start the pool and open the control session: a L{Deferred} that fails with psycopg's
        error if PostgreSQL cannot be reached, or refuses the login.
        """
        self.pool.start()
        self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._shutdown)
        opened = self.control.execute("SELECT 1", reconnect=True)

        def failed(failure: Failure) -> Failure:
            self._stopPool()
            return failure

        return opened.addCallbacks(lambda _: None, failed)

    def session(self, setup: str, *setupParams: object) -> Session:
        """
        A new session, opened when first used, with a thread of its own in the pool.
        """
        session = Session(self, setup, setupParams)
        self._sessions.append(session)
        self.pool.adjustPoolsize(maxthreads=len(self._sessions) + 1)
        return session

    def openConnection(self) -> Any:
        """
        In a thread of the pool: connect, in autocommit mode.
        """
        given = {**psycopg().conninfo.conninfo_to_dict(self.conninfo), **self.kwargs}
        # TCP keepalives and a TCP user timeout, unless given: a connection whose server is cut
        # off then fails within about a lease, not TCP's retransmission timeout (many minutes),
        # and frees its thread.
        probe = max(1, round(self.lease / 3))
        defaults = {
            "keepalives": 1,
            "keepalives_idle": probe,
            "keepalives_interval": probe,
            "keepalives_count": 3,
            "tcp_user_timeout": max(1, round(self.lease * 1000)),
        }
        kwargs = {key: value for key, value in defaults.items() if key not in given}
        # connect()'s own connectTimeout, unless kwargs say otherwise.
        kwargs.update({"connect_timeout": self.timeout, **self.kwargs})
        return psycopg().connect(self.conninfo, autocommit=True, **kwargs)

    def close(self) -> Deferred[None]:
        """
        Close every session once its statements are done, then stop the pool.
        """
        closing = [session.close() for session in [*self._sessions, self.control]]
        done: Deferred[Any] = DeferredList(closing, consumeErrors=True)
        return done.addCallback(lambda _: self._stopPool())

    def _stopPool(self) -> None:
        if self._trigger is not None:
            self.reactor.removeSystemEventTrigger(self._trigger)
            self._shutdown()

    def _shutdown(self) -> None:
        # As the reactor's own pool: its threads would keep the process alive.
        self._trigger = None
        self.pool.stop()
