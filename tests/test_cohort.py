"""
Tests for L{txrwlock._cohort.SharedHold}: a local lock in front of one remote hold, here a remote
whose takes and give-backs are Deferreds the test fires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed

from txrwlock import TxTestCase
from txrwlock._cohort import SharedHold


class _Remote:
    """
    A remote store as the test plays it: every take and give-back is recorded with its
    L{Deferred}, fired by the test.
    """

    def __init__(self, passOn: Callable[[int], int | None] | None = None) -> None:
        self.takes: list[tuple[bool, bool, Deferred[int | None]]] = []
        self.gives: list[bool] = []
        self.log: list[str] = []  # "take"s and "give"s, in order
        self.cancelled = 0
        self.hold: SharedHold[int] = SharedHold(self.take, self.give, passOn)

    def take(self, writer: bool, queue: bool) -> Deferred[int | None]:
        def cancel(d: Deferred[int | None]) -> None:
            self.cancelled += 1

        d: Deferred[int | None] = Deferred(cancel)
        self.takes.append((writer, queue, d))
        self.log.append("take")
        return d

    def give(self, writer: bool) -> Deferred[bool]:
        self.gives.append(writer)
        self.log.append("give")
        return succeed(True)


def _acquire(hold: SharedHold[int], writer: bool, queue: bool) -> Deferred[int | None]:
    """
    Acquire a hold of C{hold}, as a lock does: through a L{Deferred} whose cancel cancels it.
    """
    d: Deferred[int | None] = Deferred(hold.cancel)
    hold.acquire(writer, queue, d)
    return d


def _result(d: Deferred[Any] | None) -> list[object]:
    assert d is not None, "no Deferred: the remote hold stays"
    results: list[object] = []
    d.addBoth(results.append)
    return results


class SharedHoldTests(TxTestCase):
    """
    One remote hold per lock object: readers share it, writers take turns.
    """

    def setUp(self) -> None:
        self.remote = _Remote()
        self.hold = self.remote.hold

    def test_readersShare(self) -> None:
        """
        The first reader takes the remote read hold; readers coming while it is taken wait for
        the same grant; later ones join at once; the last to leave gives it back.
        """
        first, second = _result(_acquire(self.hold, False, True)), None
        second = _result(_acquire(self.hold, False, True))
        self.assertEqual(len(self.remote.takes), 1)
        self.assertEqual((first, second), ([], []))
        self.remote.takes[0][2].callback(0)
        self.assertEqual((first, second), ([0], [0]))
        self.assertEqual(_result(_acquire(self.hold, False, True)), [0])
        self.assertEqual(_result(_acquire(self.hold, False, False)), [0])
        self.assertEqual(len(self.remote.takes), 1)
        for _ in range(3):
            self.assertIsNone(self.hold.release(False))
            self.assertEqual(self.remote.gives, [])
        self.assertEqual(_result(self.hold.release(False)), [True])
        self.assertEqual(self.remote.gives, [False])
        self.assertIsNone(self.hold.writing)

    def test_writersTakeTurns(self) -> None:
        """
        A writer waits in the local lock for the readers, and takes the remote write hold after
        their give-back; a second writer waits for the first's give-back.
        """
        _acquire(self.hold, False, True)
        self.remote.takes[0][2].callback(0)
        writing = _result(_acquire(self.hold, True, True))
        second = _result(_acquire(self.hold, True, True))
        self.assertEqual(len(self.remote.takes), 1)
        self.hold.release(False)
        self.assertEqual(self.remote.gives, [False])
        self.assertEqual(self.remote.takes[1][:2], (True, True))
        self.remote.takes[1][2].callback(33)
        self.assertEqual((writing, second), ([33], []))
        self.assertTrue(self.hold.writing)
        self.hold.release(True)
        self.assertEqual(self.remote.gives, [False, True])
        self.remote.takes[2][2].callback(34)
        self.assertEqual(second, [34])

    def test_cancelJoiner(self) -> None:
        """
        A reader cancelled while the remote hold is taken for it and another leaves the take
        alone; when the last is cancelled, the take is cancelled, and the local lock is free.
        """
        first = _acquire(self.hold, False, True)
        second = _acquire(self.hold, False, True)
        first.cancel()
        self.assertEqual(self.remote.cancelled, 0)
        second.cancel()
        self.assertEqual(self.remote.cancelled, 1)
        for d in (first, second):
            self.assertIsInstance(_result(d)[0].value, CancelledError)  # type: ignore[attr-defined]
        self.assertIsNone(self.hold.writing)
        self.assertTrue(self.hold.local.tryWriterAcquire())

    def test_takeFails(self) -> None:
        """
        A failed take fails every reader waiting for it and frees the local lock.
        """
        first = _result(_acquire(self.hold, False, True))
        second = _result(_acquire(self.hold, False, True))
        self.remote.takes[0][2].errback(ZeroDivisionError())
        for results in (first, second):
            self.assertTrue(results[0].check(ZeroDivisionError))  # type: ignore[attr-defined]
        self.assertIsNone(self.hold.writing)
        self.assertTrue(self.hold.local.tryWriterAcquire())

    def test_tries(self) -> None:
        """
        A try that the local lock refuses, or that would wait for another's take, gets L{None}
        at once; one the store refuses gives the local lock back.
        """
        _acquire(self.hold, False, True)
        self.assertEqual(_result(_acquire(self.hold, True, False)), [None])
        self.assertEqual(_result(_acquire(self.hold, False, False)), [None])
        self.assertEqual(len(self.remote.takes), 1)
        self.remote.takes[0][2].callback(0)
        self.hold.release(False)
        tried = _result(_acquire(self.hold, True, False))
        self.assertEqual(self.remote.takes[1][:2], (True, False))
        self.remote.takes[1][2].callback(None)
        self.assertEqual(tried, [None])
        self.assertTrue(self.hold.local.tryWriterAcquire())

    def test_waitDuringTry(self) -> None:
        """
        A reader that waits, coming while a try takes the remote hold, does not share the try's
        answer: if refused, it takes its own; if granted, it shares the grant.
        """
        for answer in (None, 0):
            tried = _result(_acquire(self.hold, False, False))
            waiting = _result(_acquire(self.hold, False, True))
            self.remote.takes[-1][2].callback(answer)
            self.assertEqual(tried, [answer])
            if answer is None:
                self.assertEqual(self.remote.takes[-1][:2], (False, True))
                self.remote.takes[-1][2].callback(0)
            else:
                self.hold.release(False)
            self.assertEqual(waiting, [0])
            self.hold.release(False)
            self.assertIsNone(self.hold.writing)

    def test_downgrade(self) -> None:
        """
        A downgrade the store did lets the local readers first in line share the read hold; one
        it could not do (the hold was gone) gives the local lock back.
        """
        _acquire(self.hold, True, True)
        self.remote.takes[0][2].callback(5)
        reading = _result(_acquire(self.hold, False, True))
        self.assertEqual(_result(self.hold.downgrade(lambda: succeed(0))), [0])
        self.assertEqual(reading, [0])
        self.assertIs(self.hold.writing, False)
        self.assertEqual(len(self.remote.takes), 1)
        self.hold.release(False)
        self.hold.release(False)
        self.assertEqual(self.remote.gives, [False])

        _acquire(self.hold, True, True)
        self.remote.takes[1][2].callback(6)
        self.assertEqual(_result(self.hold.downgrade(lambda: succeed(None))), [None])
        self.assertIsNone(self.hold.writing)
        self.assertTrue(self.hold.local.tryWriterAcquire())

    def test_droppedDuringDowngrade(self) -> None:
        """
        A hold dropped as lost while its downgrade runs is given up once: the read hold the store
        made is given back, one the store could not make is not, and the local lock is free.
        """
        for value in (0, None):
            _acquire(self.hold, True, True)
            self.remote.takes[-1][2].callback(5)
            downgrading: Deferred[int | None] = Deferred()

            def remote(d: Deferred[int | None] = downgrading) -> Deferred[int | None]:
                return d

            result = _result(self.hold.downgrade(remote))
            self.assertEqual(_result(self.hold.drop()), [True])
            self.assertEqual(self.remote.gives, [True])
            self.assertIsNone(self.hold.drop())  # nothing left to drop
            downgrading.callback(value)
            self.assertEqual(result, [None])
            self.assertEqual(self.remote.gives, [True] + ([False] if value == 0 else []))
            self.assertIsNone(self.hold.writing)
            self.assertTrue(self.hold.local.tryWriterAcquire())
            self.hold.local.writerRelease()
            self.remote.gives.clear()


def _inBlock(value: int) -> int | None:
    """
    The next value, within blocks of 4 (0-3, 4-7...): a write hold passes on 3 times in a row.
    """
    return value + 1 if value % 4 != 3 else None


class CohortTests(TxTestCase):
    """
    What a shared hold does once told that another client waits, and how a write hold passes
    on to the next local writer.
    """

    def setUp(self) -> None:
        self.remote = _Remote(_inBlock)
        self.hold = self.remote.hold

    def test_contendedTakesNoReader(self) -> None:
        """
        Once contended, the read hold takes no new reader: it waits until the readers inside
        leave and give the hold back, then takes the next one.  The next hold starts
        uncontended.
        """
        _acquire(self.hold, False, True)
        self.remote.takes[0][2].callback(0)
        self.hold.contend()
        later = _result(_acquire(self.hold, False, True))
        self.assertEqual((later, self.remote.log), ([], ["take"]))
        self.hold.release(False)
        self.assertEqual(self.remote.log, ["take", "give", "take"])
        self.assertEqual(self.remote.takes[1][:2], (False, True))
        self.remote.takes[1][2].callback(0)
        self.assertEqual(later, [0])
        self.assertEqual(_result(_acquire(self.hold, False, True)), [0])
        self.assertEqual(_result(_acquire(self.hold, False, False)), [0])
        self.assertEqual(len(self.remote.takes), 2)

    def test_contendedTry(self) -> None:
        """
        A try finds a contended read hold taken: L{None}, and the local lock given back.
        """
        _acquire(self.hold, False, True)
        self.remote.takes[0][2].callback(0)
        self.hold.contend()
        self.assertEqual(_result(_acquire(self.hold, False, False)), [None])
        self.hold.release(False)
        self.assertTrue(self.hold.local.tryWriterAcquire())

    def test_cancelWaitingForNext(self) -> None:
        """
        A reader waiting for the next hold, cancelled, gives the local lock back, and no hold is
        taken for it.
        """
        _acquire(self.hold, False, True)
        self.remote.takes[0][2].callback(0)
        self.hold.contend()
        later = _acquire(self.hold, False, True)
        later.cancel()
        self.assertIsInstance(_result(later)[0].value, CancelledError)  # type: ignore[attr-defined]
        self.hold.release(False)
        self.assertEqual(self.remote.log, ["take", "give"])
        self.assertTrue(self.hold.local.tryWriterAcquire())

    def test_writerPassesOn(self) -> None:
        """
        A writer leaving hands the write hold to the next local writer, with the next value,
        neither giving it back nor taking it again, as long as the values allow; then it is
        given back, and taken again for the next.
        """
        writers = [_result(_acquire(self.hold, True, True)) for _ in range(6)]
        self.remote.takes[0][2].callback(0)
        for i in range(3):
            self.assertIsNone(self.hold.release(True))
            self.assertEqual(writers[i + 1], [i + 1])
        self.assertEqual(self.remote.log, ["take"])
        self.assertEqual(_result(self.hold.release(True)), [True])  # 3: the block's last
        self.assertEqual(self.remote.log, ["take", "give", "take"])
        self.remote.takes[1][2].callback(4)
        self.assertEqual(writers[4], [4])
        self.hold.release(True)
        self.assertEqual(writers[5], [5])
        self.hold.release(True)
        self.assertEqual(self.remote.log, ["take", "give", "take", "give"])
        self.assertIsNone(self.hold.writing)

    def test_contendedWriterGivesBack(self) -> None:
        """
        A contended write hold is not passed on: given back, and taken again for the next
        writer (behind the client that waits).  Nor is a lost one.
        """
        for lost in (False, True):
            first = _acquire(self.hold, True, True)
            second = _result(_acquire(self.hold, True, True))
            self.remote.takes[-1][2].callback(8)
            self.assertEqual(_result(first), [8])
            if lost:
                self.hold.drop()
            else:
                self.hold.contend()
                self.hold.release(True)
            self.assertEqual(self.remote.log[-3:], ["take", "give", "take"])
            self.assertEqual(second, [])
            self.remote.takes[-1][2].callback(12)
            self.assertEqual(second, [12])
            self.hold.release(True)

    def test_readersAfterWriter(self) -> None:
        """
        Readers let in as a writer leaves do not share its write hold: they take a read hold
        once it is given back, in that order.
        """
        _acquire(self.hold, True, True)
        self.remote.takes[0][2].callback(0)
        readers = [_result(_acquire(self.hold, False, True)) for _ in range(2)]
        self.hold.release(True)
        self.assertEqual(self.remote.log, ["take", "give", "take"])
        self.assertEqual(self.remote.takes[1][:2], (False, True))
        self.remote.takes[1][2].callback(0)
        self.assertEqual(readers, [[0], [0]])
