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

Needs nothing but Twisted: the Redis client is our own (L{txrwlock.redis._client}).  Importing
this package imports no reactor.
"""

from txrwlock._remote import LockLostError
from txrwlock.redis._client import RedisConnectionError, RedisError
from txrwlock.redis._lock import RedisLocks, RedisLockSide, RedisReadersWriterLock, connect

__all__ = [
    "LockLostError",
    "RedisConnectionError",
    "RedisError",
    "RedisLockSide",
    "RedisLocks",
    "RedisReadersWriterLock",
    "connect",
]
