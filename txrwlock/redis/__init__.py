# -*- test-case-name: tests.test_redis -*-
"""
The readers/writer lock of L{txrwlock}, shared by processes and hosts through Redis.

    from txrwlock.redis import connect

    locks = yield connect("localhost", 6379)
    lock = locks.lock("inventory", lease=30.0)
    yield lock.writerAcquire()
    try:
        writeToStore(data, fence=lock.fencingToken)
    finally:
        yield lock.writerRelease()
    yield locks.disconnect()

Needs txredisapi (C{pip install txrwlock[redis]}), imported by L{connect} only: txredisapi
imports the global reactor, and importing this package must not.
"""

from txrwlock._remote import LockLostError
from txrwlock.redis._lock import RedisLocks, RedisLockSide, RedisReadersWriterLock, connect

__all__ = ["LockLostError", "RedisLockSide", "RedisLocks", "RedisReadersWriterLock", "connect"]
