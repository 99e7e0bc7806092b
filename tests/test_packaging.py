"""
Tests of what a release publishes and what CI runs: the package's metadata agrees with the
matrix of C{tox.ini}, the version with the development status, the optional dependencies are
bounded; and DeprecationWarnings of our own code fail the suite (C{tests/__init__.py}).
"""

from __future__ import annotations

import re
import warnings
from configparser import ConfigParser
from email.message import Message
from importlib.metadata import metadata
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import txrwlock

__all__ = ["DeprecationFilterTests", "MetadataTests"]

ROOT = Path(__file__).resolve().parent.parent


def _meta() -> Message:
    """
    @return: the metadata of the installed txrwlock (editable or not), as PBR wrote it from
        C{setup.cfg}.
    """
    return metadata("txrwlock")  # type: ignore[return-value]


def _toxEnvs() -> list[str]:
    tox = ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    return [env.strip() for env in tox["tox"]["env_list"].split(",")]


class MetadataTests(SynchronousTestCase):
    """
    The metadata a release needs, consistent with what CI tests.
    """

    def test_projectUrls(self) -> None:
        """
        The source, docs, changelog and issues are linked, and the home page is not PyPI's
        page of the project itself.
        """
        meta = _meta()
        urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
        self.assertEqual(sorted(urls), ["Changelog", "Documentation", "Issues", "Source"])
        for url in urls.values():
            self.assertTrue(url.startswith("https://"), url)
        self.assertNotIn("pypi.org", meta["Home-page"])

    def test_developmentStatusMatchesVersion(self) -> None:
        """
        A final version (digits and dots only) is C{5 - Production/Stable}; a development or
        pre-release version is not.
        """
        meta = _meta()
        (status,) = [c for c in meta.get_all("Classifier") or [] if "Development Status" in c]
        final = re.fullmatch(r"[0-9]+(\.[0-9]+)*", meta["Version"]) is not None
        self.assertEqual(
            status == "Development Status :: 5 - Production/Stable",
            final,
            f"version {meta['Version']} with {status!r}",
        )

    def test_pythonsAreTheMatrix(self) -> None:
        """
        Every Python the classifiers claim has a test environment in C{tox.ini}, and no other;
        C{Requires-Python} is the oldest of them; C{Typing :: Typed} is claimed.
        """
        meta = _meta()
        classifiers = meta.get_all("Classifier") or []
        claimed = sorted(
            c.rsplit(" ", 1)[1]
            for c in classifiers
            if re.fullmatch(r"Programming Language :: Python :: 3\.[0-9]+", c)
        )
        tested = sorted(
            f"3.{m[1]}" for env in _toxEnvs() if (m := re.match(r"py3([0-9]+)(-|$)", env))
        )
        self.assertEqual(claimed, tested)
        self.assertEqual(meta["Requires-Python"], f">={min(tested, key=lambda v: int(v[2:]))}")
        self.assertIn("Typing :: Typed", classifiers)

    def test_oldestTwistedIsTheFloor(self) -> None:
        """
        The oldest environment pins the Twisted that the package requires at least.
        """
        requires = _meta().get_all("Requires-Dist") or []
        (floor,) = [r.split(">=")[1] for r in requires if r.lower().startswith("twisted>=")]
        tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
        self.assertIn(f"oldest: twisted=={floor}\n", tox)
        self.assertIn("py310-oldest", _toxEnvs())

    def test_optionalDependenciesBounded(self) -> None:
        """
        Each optional client library has an upper bound, and the docs give its reason; an extra
        that asks only for Twisted's own extras (C{twisted[tls]}) keeps Twisted's floor.
        """
        extras = [r for r in _meta().get_all("Requires-Dist") or [] if "extra ==" in r]
        self.assertTrue(extras)
        docs = "\n".join(
            page.read_text(encoding="utf-8") for page in (ROOT / "doc" / "source").glob("*.rst")
        )
        floor = (ROOT / "requirements.txt").read_text(encoding="utf-8").split("twisted>=")[1]
        for requirement in extras:
            spec = requirement.split(";")[0]
            name = re.match(r"[A-Za-z0-9_.-]+", spec)
            assert name is not None
            if name[0].lower() == "twisted":
                self.assertIn(f">={floor.split()[0]}", spec, requirement)
                continue
            self.assertIn("<", spec, requirement)
            self.assertIn(f"pypi.org/project/{name[0]}/", docs)
            for bound in re.sub(r"^\[[^]]*\]", "", spec[name.end() :]).split(","):
                self.assertIn(bound.strip(), docs)


class DeprecationFilterTests(SynchronousTestCase):
    """
    The filter that C{tests/__init__.py} installs: a DeprecationWarning raised in our own code
    is an error, one raised elsewhere is not.
    """

    def ownFilter(self) -> re.Pattern[str]:
        for action, _, category, module, _ in warnings.filters:
            if action == "error" and category is DeprecationWarning and module is not None:
                return module
        raise AssertionError(f"no error filter for DeprecationWarning in {warnings.filters}")

    def test_ownCodeMatched(self) -> None:
        """
        Our modules match, by name (as Python raises a warning) and by file path without
        C{.py} (as trial raises a warning again after the test that caused it).
        """
        own = self.ownFilter()
        package = Path(txrwlock.__file__).parent
        for module in [
            "txrwlock",
            "txrwlock.txrwlock",
            "tests.test_redis",
            str(package / "txrwlock"),
            str(Path(__file__).with_suffix("")),
        ]:
            self.assertTrue(own.match(module), module)

    def test_othersNotMatched(self) -> None:
        """
        Twisted's modules, the standard library's and a look-alike name do not match.
        """
        own = self.ownFilter()
        for module in ["twisted.internet.process", "/usr/lib/python3/subprocess", "txrwlockx"]:
            self.assertIsNone(own.match(module), module)
