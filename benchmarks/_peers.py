"""
The peers we compare with that cannot simply be imported: txrwlock 1.1.4, whose package name is
ours, fetched from PyPI as an sdist and loaded under another module name.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

__all__ = ["OLD_VERSION", "loadOldTxrwlock"]

OLD_VERSION = "1.1.4"
_MODULE = "txrwlock_1_1_4"


def loadOldTxrwlock(cacheDir: Path) -> ModuleType:
    """
    Load C{txrwlock/txrwlock.py} of txrwlock 1.1.4 as module C{txrwlock_1_1_4}.

    The sdist is downloaded into C{cacheDir} by pip the first time, and reused after.  Only that
    one file is loaded: it imports nothing but Twisted.

    @raise RuntimeError: if pip cannot fetch the sdist (no network, no index).
    """
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    cacheDir.mkdir(parents=True, exist_ok=True)
    sdist = cacheDir / f"txrwlock-{OLD_VERSION}.tar.gz"
    if not sdist.exists():
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"txrwlock=={OLD_VERSION}",
            "-d",
            str(cacheDir),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode or not sdist.exists():
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    source = cacheDir / f"txrwlock_{OLD_VERSION.replace('.', '_')}.py"
    if not source.exists():
        with tarfile.open(sdist) as archive:
            member = archive.extractfile(f"txrwlock-{OLD_VERSION}/txrwlock/txrwlock.py")
            assert member is not None, sdist
            source.write_bytes(member.read())
    spec = importlib.util.spec_from_file_location(_MODULE, source)
    assert spec is not None and spec.loader is not None, source
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    spec.loader.exec_module(module)
    return module
