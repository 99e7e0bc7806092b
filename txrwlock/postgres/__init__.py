# -*- test-case-name: tests.test_postgres -*-
"""
The readers/writer lock of L{txrwlock}, shared by processes and hosts through PostgreSQL's
advisory locks.

    from txrwlock.postgres import connect

    locks = await connect("postgresql://user:secret@db.example/app", lease=30.0)
    lock = locks.lock("inventory", lost=None)
    async with lock.writer:
        store.write(data, fence=lock.fencingToken)
    await locks.disconnect()

Needs psycopg 3 (C{pip install txrwlock[postgres]}), imported by L{connect} only.
"""

from txrwlock._remote import LockLostError
from txrwlock.postgres._lock import (
    PostgresLocks,
    PostgresLockSide,
    PostgresReadersWriterLock,
    connect,
    lockKey,
)

__all__ = [
    "LockLostError",
    "PostgresLockSide",
    "PostgresLocks",
    "PostgresReadersWriterLock",
    "connect",
    "lockKey",
]
