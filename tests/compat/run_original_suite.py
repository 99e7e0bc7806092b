"""
Run the test module of txrwlock 1.1.4, unchanged, against the installed txrwlock (C{make compat}).

The sdist is fetched from PyPI once, with pip, into C{.cache/} at the top of the repository, and
reused after that (the benchmarks fetch it with L{fetchSdist} too).  Its
C{txrwlock/tests/test_txrwlock.py} is copied byte for byte into a temporary directory as the
top-level module C{original_test_txrwlock}, and run there by trial.  That module runs the real
reactor and sleeps for real: it is the original's own suite, kept as it was.

Exits with trial's status: non-zero when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["VERSION", "extractTestModule", "fetchSdist", "main", "readMember", "runTrial"]

VERSION = "1.1.4"
_SDIST = f"txrwlock-{VERSION}.tar.gz"
_MODULE = "original_test_txrwlock"
_CACHE = Path(__file__).resolve().parents[2] / ".cache"


def fetchSdist(cache: Path) -> Path:
    """
    Download the txrwlock sdist into C{cache}, unless it is there already.

    @return: the path of the sdist.
    """
    sdist = cache / _SDIST
    if sdist.exists():
        return sdist
    cache.mkdir(parents=True, exist_ok=True)
    # Download beside the cache and move into place, so that an interrupted download is never
    # taken for a complete one on the next run.
    with tempfile.TemporaryDirectory(dir=cache) as download:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"txrwlock=={VERSION}",
                "--dest",
                download,
            ],
            check=True,
        )
        os.replace(Path(download) / _SDIST, sdist)
    return sdist


def extractTestModule(sdist: Path, directory: Path) -> Path:
    """
    Copy the original test module out of C{sdist}, unchanged, into C{directory}.

    @return: the path of the copy, a top-level module named C{original_test_txrwlock}.
    """
    target = directory / f"{_MODULE}.py"
    target.write_bytes(readMember(sdist, "txrwlock/tests/test_txrwlock.py"))
    return target


def readMember(sdist: Path, path: str) -> bytes:
    """
    @param path: a file's path in the sdist's source tree, such as C{txrwlock/txrwlock.py}.
    @return: the content of that file.
    """
    member = f"txrwlock-{VERSION}/{path}"
    with tarfile.open(sdist) as tar:
        source = tar.extractfile(member)
        if source is None:
            raise FileNotFoundError(f"{member} is not a file in {sdist}")
        return source.read()


def runTrial(directory: Path) -> int:
    """
    Run the original test module with trial, from C{directory}, against the installed txrwlock.

    @return: trial's exit status.
    """
    return subprocess.run(
        [sys.executable, "-m", "twisted.trial", _MODULE], cwd=directory, check=False
    ).returncode


def main() -> int:
    """
    Fetch, extract and run the original suite.

    @return: the exit status: trial's.
    """
    sdist = fetchSdist(_CACHE)
    with tempfile.TemporaryDirectory(prefix="txrwlock-compat-") as directory:
        extractTestModule(sdist, Path(directory))
        import txrwlock

        print(f"txrwlock {VERSION}'s own tests, against {Path(txrwlock.__file__).parent}")
        return runTrial(Path(directory))


if __name__ == "__main__":
    sys.exit(main())
