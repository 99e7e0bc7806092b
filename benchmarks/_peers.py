"""
The peers we compare with that cannot simply be imported: txrwlock 1.1.4, whose package name is
ours, fetched from PyPI as an sdist and loaded under another module name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# The download of txrwlock 1.1.4 is written once, for make compat and for the benchmarks: in
# tests.compat, at the top of the repository.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
from tests.compat.run_original_suite import VERSION, fetchSdist, readMember  # noqa: E402

__all__ = ["OLD_VERSION", "loadOldTxrwlock"]

OLD_VERSION = VERSION
_MODULE = "txrwlock_1_1_4"


def loadOldTxrwlock(cacheDir: Path) -> ModuleType:
    """
    Load C{txrwlock/txrwlock.py} of txrwlock 1.1.4 as module C{txrwlock_1_1_4}.

    The sdist is downloaded into C{cacheDir} by pip the first time, and reused after.  Only that
    one file is loaded: it imports nothing but Twisted.

    @raise subprocess.CalledProcessError: if pip cannot fetch the sdist (no network, no index).
    """
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    source = cacheDir / f"{_MODULE}.py"
    if not source.exists():
        source.write_bytes(readMember(fetchSdist(cacheDir), "txrwlock/txrwlock.py"))
    spec = importlib.util.spec_from_file_location(_MODULE, source)
    assert spec is not None and spec.loader is not None, source
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    spec.loader.exec_module(module)
    return module
