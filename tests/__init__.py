"""
The txrwlock test suite, run by trial (make test), or by pytest.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import txrwlock

__all__ = ["failOnOwnDeprecations"]

# Our own code: the package (wherever it is installed) and the tests.
_OWN = [Path(txrwlock.__file__).parent, Path(__file__).parent]


def failOnOwnDeprecations() -> None:
    """
    Make a DeprecationWarning raised by our own code (the package, the tests) an error, on every
    Python and Twisted the suite runs on; others' (Twisted forking with threads running, on
    Python 3.12 and later) stay warnings.  A warning names its module by name when raised, by
    file path (without C{.py}) when trial raises it again after the test: both are matched.
    """
    names = r"(txrwlock|tests)(\.|$)"
    paths = [re.escape(str(path)) + r"[/\\]" for path in _OWN]
    warnings.filterwarnings("error", category=DeprecationWarning, module="|".join([names, *paths]))


# Trial keeps the filters set when the suite is imported; pytest resets them around each test,
# so tests/conftest.py sets this one again there.
failOnOwnDeprecations()
