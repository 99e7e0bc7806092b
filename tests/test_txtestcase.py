"""
Tests for L{txrwlock.txtestcase}: each assertion passes when its expectation is met, and fails
the test through C{failureException}, saying what was expected and what happened, when not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Generator
from typing import Any, NoReturn

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.reporter import TestResult

from txrwlock import TxTestCase

__all__ = [
    "AssertInlineCbRaisesTests",
    "AssertInlineCbRaisesWithMsgTests",
    "AssertRaisesWithMessageTests",
    "InsideTrialTests",
    "LazyImportTests",
]


# Module-level functions, so that the messages name them by a short qualified name.


def raiseValueError(message: str = "bad value", *, prefix: str = "") -> NoReturn:
    raise ValueError(prefix + message)


def raiseTypeError() -> NoReturn:
    raise TypeError("bad type")


def returnFortyTwo() -> int:
    return 42


def failedDeferred() -> Deferred[None]:
    return fail(ValueError("bad value"))


def succeededDeferred() -> Deferred[int]:
    return succeed(42)


def unfiredDeferred() -> Deferred[None]:
    return Deferred()


async def raiseInCoroutine(awaited: Deferred[None]) -> NoReturn:
    await awaited
    raise ValueError("bad value")


async def returnInCoroutine() -> int:
    return 42


class _AssertionTests(TxTestCase):
    """
    Helpers to check a failed expectation.
    """

    def assertFailsWith(self, message: str, f: Callable[..., object], *args: object) -> None:
        """
        Assert that C{f(*args)} raises C{self.failureException} with exactly C{message}.
        """
        e = self.assertRaises(self.failureException, f, *args)
        self.assertEqual(str(e), message)

    def assertDeferredFailsWith(self, message: str, d: Deferred[Any]) -> None:
        """
        Assert that C{d} has failed with C{self.failureException}, with exactly C{message}.
        """
        failure = self.failureResultOf(d, self.failureException)
        self.assertEqual(str(failure.value), message)


class AssertRaisesWithMessageTests(_AssertionTests):
    """
    L{TxTestCase.assertRaisesWithMessage}.
    """

    def test_raises(self) -> None:
        """
        It returns the exception raised, with the arguments passed, when its type and message
        match; a subclass of the type matches.
        """
        e = self.assertRaisesWithMessage(
            ValueError, "x: bad", raiseValueError, "bad value", prefix="x: "
        )
        self.assertEqual(e.args, ("x: bad value",))
        e2 = self.assertRaisesWithMessage(Exception, "bad", raiseValueError)
        self.assertIsInstance(e2, ValueError)

    def test_failedDeferred(self) -> None:
        """
        It accepts a function that returns a Deferred that has already failed with the exception.
        """
        e = self.assertRaisesWithMessage(ValueError, "bad value", failedDeferred)
        self.assertEqual(str(e), "bad value")

    def test_returns(self) -> None:
        """
        It fails when the function returns, or returns a Deferred that has fired with a value.
        """
        self.assertFailsWith(
            "expected returnFortyTwo() to raise ValueError, but it returned 42",
            self.assertRaisesWithMessage,
            ValueError,
            "",
            returnFortyTwo,
        )
        self.assertFailsWith(
            "expected succeededDeferred() to raise ValueError, but it returned 42",
            self.assertRaisesWithMessage,
            ValueError,
            "",
            succeededDeferred,
        )

    def test_unfiredDeferred(self) -> None:
        """
        It fails when the function returns a Deferred that has not fired, pointing to the
        asynchronous assertion, and leaves that Deferred alone: its result, when it comes, is not
        swallowed.
        """
        returned: list[Deferred[None]] = []

        def unfired() -> Deferred[None]:
            returned.append(unfiredDeferred())
            return returned[0]

        self.assertFailsWith(
            "expected AssertRaisesWithMessageTests.test_unfiredDeferred.<locals>.unfired() to "
            "raise ValueError, but it returned a Deferred that has not fired: use "
            "assertInlineCbRaisesWithMsg for asynchronous code",
            self.assertRaisesWithMessage,
            ValueError,
            "",
            unfired,
        )
        returned[0].errback(ValueError("later"))
        self.failureResultOf(returned[0], ValueError)

    def test_wrongType(self) -> None:
        """
        It fails when the function raises, or its Deferred fails with, another type, and chains
        that exception.
        """
        e = self.assertRaises(
            self.failureException,
            self.assertRaisesWithMessage,
            ValueError,
            "",
            raiseTypeError,
        )
        self.assertEqual(
            str(e),
            "expected raiseTypeError() to raise ValueError, but it raised TypeError('bad type')",
        )
        self.assertIsInstance(e.__cause__, TypeError)
        self.assertFailsWith(
            "expected failedDeferred() to raise TypeError, but it raised ValueError('bad value')",
            self.assertRaisesWithMessage,
            TypeError,
            "",
            failedDeferred,
        )

    def test_wrongMessage(self) -> None:
        """
        It fails when the message does not contain the expected part.
        """
        self.assertFailsWith(
            "expected raiseValueError() to raise ValueError with 'good' in its message, but it "
            "raised ValueError('bad value')",
            self.assertRaisesWithMessage,
            ValueError,
            "good",
            raiseValueError,
        )


class AssertInlineCbRaisesWithMsgTests(_AssertionTests):
    """
    L{TxTestCase.assertInlineCbRaisesWithMsg}.
    """

    def test_inlineCallbacks(self) -> None:
        """
        Its Deferred fires with the exception once an C{inlineCallbacks} function fails with it,
        and not before.
        """
        clock = Clock()

        @inlineCallbacks
        def later(message: str) -> Generator[Deferred[Any], Any, None]:
            yield deferLater(IReactorTime(clock), 1, lambda: None)
            raise ValueError(message)

        d = self.assertInlineCbRaisesWithMsg(ValueError, "bad", later, message="bad value")
        self.assertNoResult(d)
        clock.advance(1)
        self.assertEqual(self.successResultOf(d).args, ("bad value",))

    def test_coroutineFunction(self) -> None:
        """
        It runs a coroutine function, and fires with the exception once the coroutine raises it.
        """
        awaited: Deferred[None] = Deferred()
        d = self.assertInlineCbRaisesWithMsg(ValueError, "bad", raiseInCoroutine, awaited)
        self.assertNoResult(d)
        awaited.callback(None)
        self.assertIsInstance(self.successResultOf(d), ValueError)

    def test_synchronous(self) -> None:
        """
        It accepts a function that raises at once, or returns a failed Deferred.
        """
        e = self.successResultOf(
            self.assertInlineCbRaisesWithMsg(ValueError, "x: bad", raiseValueError, prefix="x: ")
        )
        self.assertEqual(str(e), "x: bad value")
        self.successResultOf(self.assertInlineCbRaisesWithMsg(ValueError, "bad", failedDeferred))

    def test_succeeds(self) -> None:
        """
        It fails when the Deferred or the coroutine succeeds, or the function returns a value.
        """
        for f in (succeededDeferred, returnInCoroutine, returnFortyTwo):
            self.assertDeferredFailsWith(
                f"expected {f.__qualname__}() to fail, but its Deferred fired with 42",
                self.assertInlineCbRaisesWithMsg(ValueError, "", f),
            )

    def test_wrongType(self) -> None:
        """
        It fails when the failure is of another type.
        """
        self.assertDeferredFailsWith(
            "expected failedDeferred() to raise TypeError, but it raised ValueError('bad value')",
            self.assertInlineCbRaisesWithMsg(TypeError, "", failedDeferred),
        )

    def test_wrongMessage(self) -> None:
        """
        It fails when the message does not contain the expected part.
        """
        self.assertDeferredFailsWith(
            "expected failedDeferred() to raise ValueError with 'good' in its message, but it "
            "raised ValueError('bad value')",
            self.assertInlineCbRaisesWithMsg(ValueError, "good", failedDeferred),
        )

    def test_pending(self) -> None:
        """
        Its Deferred waits for the function's.
        """
        self.assertNoResult(self.assertInlineCbRaisesWithMsg(ValueError, "", unfiredDeferred))


class AssertInlineCbRaisesTests(_AssertionTests):
    """
    L{TxTestCase.assertInlineCbRaises}.
    """

    def test_anyMessage(self) -> None:
        """
        Its Deferred fires with the exception, whatever its message, with the arguments passed.
        """
        e = self.successResultOf(
            self.assertInlineCbRaises(ValueError, raiseValueError, "odd", prefix="very ")
        )
        self.assertEqual(str(e), "very odd")

    def test_fails(self) -> None:
        """
        It fails when the function succeeds, or fails with another type.
        """
        self.assertDeferredFailsWith(
            "expected succeededDeferred() to fail, but its Deferred fired with 42",
            self.assertInlineCbRaises(ValueError, succeededDeferred),
        )
        self.assertDeferredFailsWith(
            "expected raiseTypeError() to raise ValueError, but it raised TypeError('bad type')",
            self.assertInlineCbRaises(ValueError, raiseTypeError),
        )


class InsideTrialTests(TxTestCase):
    """
    Under trial, an unmet expectation is a test failure, not an error.
    """

    def test_failuresAreFailures(self) -> None:
        """
        A test whose expectation is unmet, synchronous or not, is reported as failed, with the
        assertion's message; one whose expectation is met passes.
        """

        class Inner(TxTestCase):
            def test_sync(self) -> None:
                self.assertRaisesWithMessage(ValueError, "", returnFortyTwo)

            def test_async(self) -> Deferred[BaseException]:
                return self.assertInlineCbRaises(ValueError, succeededDeferred)

            def test_passes(self) -> Deferred[BaseException]:
                return self.assertInlineCbRaisesWithMsg(ValueError, "bad", failedDeferred)

        result = TestResult()
        for name in ["test_sync", "test_async", "test_passes"]:
            Inner(name).run(result)
        self.assertEqual(result.errors, [])
        self.assertEqual(result.successes, 1)
        messages = {test.id().rsplit(".", 1)[-1]: _message(f) for test, f in result.failures}
        self.assertEqual(
            messages,
            {
                "test_sync": "expected returnFortyTwo() to raise ValueError, but it returned 42",
                "test_async": (
                    "expected succeededDeferred() to fail, but its Deferred fired with 42"
                ),
            },
        )


class LazyImportTests(TxTestCase):
    """
    C{import txrwlock} leaves trial unloaded: L{TxTestCase} is imported when first asked for.
    Each test runs in a fresh interpreter, since this one has trial loaded already.
    """

    def runFresh(self, code: str) -> str:
        """
        @return: what C{code}, run by a fresh interpreter, prints.
        """
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.strip()

    def test_importLoadsNoTrial(self) -> None:
        """
        Importing the package, and using the lock, loads no module of L{twisted.trial}.
        """
        printed = self.runFresh(
            "import sys, txrwlock\n"
            "txrwlock.TxReadersWriterLock().writerAcquire()\n"
            "print(sorted(m for m in sys.modules if m.startswith('twisted.trial')))"
        )
        self.assertEqual(printed, "[]")

    def test_fromPackage(self) -> None:
        """
        C{from txrwlock import TxTestCase} gives the class of L{txrwlock.txtestcase}, a trial
        TestCase.
        """
        printed = self.runFresh(
            "from txrwlock import TxTestCase\n"
            "import txrwlock.txtestcase, twisted.trial.unittest as u\n"
            "print(TxTestCase is txrwlock.txtestcase.TxTestCase,"
            " issubclass(TxTestCase, u.TestCase))"
        )
        self.assertEqual(printed, "True True")

    def test_unknownName(self) -> None:
        """
        Any other missing name still raises L{AttributeError}, naming it.
        """
        import txrwlock

        with self.assertRaisesRegex(AttributeError, "has no attribute 'TxTestCaseX'"):
            txrwlock.TxTestCaseX  # noqa: B018


def _message(failure: object) -> str:
    """
    The message of a failure as trial's L{TestResult} records it: a L{Failure}, though
    typeshed's C{unittest} says a C{str}.
    """
    if not isinstance(failure, Failure):
        raise TypeError(f"trial recorded {failure!r}, not a Failure")
    return str(failure.value)
