# -*- test-case-name: tests -*-
"""
txrwlock: a readers/writer lock for Twisted, built on Deferreds.

Importing it imports no reactor, nor L{twisted.trial}: L{TxTestCase} is imported from
L{txrwlock.txtestcase} when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from txrwlock.txrwlock import LockNotHeldError, LockSide, LockStatistics, TxReadersWriterLock

if TYPE_CHECKING:
    from txrwlock.txtestcase import TxTestCase

__all__ = ["LockNotHeldError", "LockSide", "LockStatistics", "TxReadersWriterLock", "TxTestCase"]


def __getattr__(name: str) -> Any:
    # TxTestCase needs twisted.trial.unittest: importing it eagerly made `import txrwlock` load
    # 316 modules instead of 263 (len(sys.modules) after the import, Twisted 26.10), for every
    # user of the lock, not only for test suites.
    if name == "TxTestCase":
        from txrwlock.txtestcase import TxTestCase

        return TxTestCase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
