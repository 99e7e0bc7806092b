# -*- test-case-name: tests -*-
"""
txrwlock: a readers/writer lock for Twisted, built on Deferreds.

Importing it imports no reactor.
"""

from txrwlock.txrwlock import (
    LockEvent,
    LockNotHeldError,
    LockSide,
    LockStatistics,
    TxReadersWriterLock,
)
from txrwlock.txtestcase import TxTestCase

__all__ = [
    "LockEvent",
    "LockNotHeldError",
    "LockSide",
    "LockStatistics",
    "TxReadersWriterLock",
    "TxTestCase",
]
