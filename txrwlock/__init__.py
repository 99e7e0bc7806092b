# -*- test-case-name: tests -*-
"""
txrwlock: a readers/writer lock for Twisted, built on Deferreds.

Importing it imports no reactor.
"""

from txrwlock.txrwlock import LockNotHeldError, LockSide, LockStatistics, TxReadersWriterLock
from txrwlock.txtestcase import TxTestCase

__all__ = ["LockNotHeldError", "LockSide", "LockStatistics", "TxReadersWriterLock", "TxTestCase"]
