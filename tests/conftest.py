"""
Running the suite under pytest (C{pytest tests}) as trial runs it: from a temporary working
directory, so that what the tests write relative to it (trial's C{mktemp()}, Hypothesis's
database) is left outside the checkout (trial does the same with its C{_trial_temp}), and with
DeprecationWarnings of our own code as errors.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from tests import failOnOwnDeprecations

__all__: list[str] = []

_STASH = pytest.StashKey[tuple[str, str]]()


def pytest_configure(config: pytest.Config) -> None:
    # Before collection: Hypothesis, imported by its pytest plugin before this runs, took the
    # checkout for its home, and would write there as soon as a test module is collected.  The
    # tests themselves run from the same temporary folder.
    directory = tempfile.mkdtemp(prefix="txrwlock-pytest-")
    config.stash[_STASH] = (os.getcwd(), directory)
    set_hypothesis_home_dir(Path(directory) / ".hypothesis")


def pytest_collection_finish(session: pytest.Session) -> None:
    # Once collected: the paths given on the command line (--ignore too) are read relative to
    # where pytest was started.
    os.chdir(session.config.stash[_STASH][1])


def pytest_unconfigure(config: pytest.Config) -> None:
    before, directory = config.stash[_STASH]
    os.chdir(before)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _ownDeprecationsFail() -> Iterator[None]:
    # pytest sets its own filters around each test, over those set at import: set ours again.
    with warnings.catch_warnings():
        failOnOwnDeprecations()
        yield
