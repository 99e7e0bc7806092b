# -*- test-case-name: tests.test_txtestcase -*-
"""
A trial L{TestCase} with assertions on exceptions raised by synchronous and Deferred code.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutine
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

__all__ = ["TxTestCase"]

_E = TypeVar("_E", bound=BaseException)


class TxTestCase(TestCase):
    """
    L{twisted.trial.unittest.TestCase} with L{assertRaisesWithMessage} for code that raises, and
    L{assertInlineCbRaisesWithMsg} and L{assertInlineCbRaises} for code that returns a
    L{Deferred} (an C{inlineCallbacks} function, say) or is a coroutine function.

    An unmet expectation fails the test through C{self.failureException}, with a message saying
    what was expected and what happened.
    """

    def assertRaisesWithMessage(
        self,
        excType: type[_E],
        msgPart: str,
        f: Callable[..., object],
        *args: object,
        **kwargs: object,
    ) -> _E:
        """
        Assert that C{f(*args, **kwargs)} raises C{excType}, or returns a L{Deferred} that has
        already failed with it, with C{msgPart} in the exception's message.

        @return: the exception.
        """
        try:
            result = f(*args, **kwargs)
        except BaseException as e:
            return self._checkRaised(excType, msgPart, f, e)
        if isinstance(result, Deferred):
            outcome: list[object] = []
            if result.called:  # else leave it alone, for whoever fires it
                result.addBoth(outcome.append)  # also consumes a failure, which we report
            if not outcome:
                self.fail(
                    f"expected {_name(f)} to raise {excType.__name__}, but it returned a Deferred "
                    "that has not fired: use assertInlineCbRaisesWithMsg for asynchronous code"
                )
            result = outcome[0]
            if isinstance(result, Failure):
                return self._checkRaised(excType, msgPart, f, cast(BaseException, result.value))
        self.fail(f"expected {_name(f)} to raise {excType.__name__}, but it returned {result!r}")

    def assertInlineCbRaisesWithMsg(
        self,
        excType: type[_E],
        msgPart: str,
        f: Callable[..., object],
        *args: object,
        **kwargs: object,
    ) -> Deferred[_E]:
        """
        Assert that C{f(*args, **kwargs)}, an C{inlineCallbacks} function, any function returning
        a L{Deferred}, or a coroutine function, fails with C{excType}, with C{msgPart} in the
        exception's message.

        @return: a L{Deferred} to yield or await: it fires with the exception, or fails the test.
        """
        return self._failureOf(f, args, kwargs).addCallback(
            lambda e: self._checkRaised(excType, msgPart, f, e)
        )

    def assertInlineCbRaises(
        self, excType: type[_E], f: Callable[..., object], *args: object, **kwargs: object
    ) -> Deferred[_E]:
        """
        Assert that C{f(*args, **kwargs)}, as for L{assertInlineCbRaisesWithMsg}, fails with
        C{excType}, whatever its message.

        @return: a L{Deferred} to yield or await: it fires with the exception, or fails the test.
        """
        return self.assertInlineCbRaisesWithMsg(excType, "", f, *args, **kwargs)

    def _failureOf(
        self, f: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
    ) -> Deferred[BaseException]:
        def call() -> object:
            result = f(*args, **kwargs)
            return ensureDeferred(result) if iscoroutine(result) else result

        def succeeded(result: object) -> BaseException:
            self.fail(f"expected {_name(f)} to fail, but its Deferred fired with {result!r}")

        def failed(failure: Failure) -> BaseException:
            return cast(BaseException, failure.value)

        d: Deferred[Any] = maybeDeferred(call)
        return d.addCallbacks(succeeded, failed)

    def _checkRaised(
        self, excType: type[_E], msgPart: str, f: Callable[..., object], e: BaseException
    ) -> _E:
        if not isinstance(e, excType):
            raise self.failureException(
                f"expected {_name(f)} to raise {excType.__name__}, but it raised {e!r}"
            ) from e
        if msgPart not in str(e):
            self.fail(
                f"expected {_name(f)} to raise {excType.__name__} with {msgPart!r} in its "
                f"message, but it raised {e!r}"
            )
        return e


def _name(f: Callable[..., object]) -> str:
    return getattr(f, "__qualname__", repr(f)) + "()"
