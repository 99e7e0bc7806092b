"""
Tests for watching a L{RedisReadersWriterLock}: its counters, events, C{describe()} and logs,
through what it shares with every remote lock (L{txrwlock._remote}), against a real
C{redis-server} (see L{tests.test_redis}); the tests are L{tests.observing}'s.
"""

from __future__ import annotations

from typing import Any

from tests.observing import ObservingMixin
from tests.test_redis import _RedisTestCase
from txrwlock.redis import RedisReadersWriterLock

__all__ = ["ObservingTests"]


class ObservingTests(_RedisTestCase, ObservingMixin):
    """
    One client's lock, watched, beside others.
    """

    async def lockObjects(self, n: int, debug: bool = False) -> list[Any]:
        return [(await self.connect()).lock("inventory", debug=debug) for _ in range(n)]

    async def losingLock(self) -> RedisReadersWriterLock:
        return (await self.connect()).lock("x", lease=0.6)
