"""
Run the code examples of the documentation: C{README.rst} and every page of C{doc/source}.

The pages use Sphinx's C{testcode} / C{testoutput} blocks (C{make doc} runs them too, with
Sphinx's doctest builder); the README, which must render on PyPI and GitHub, uses C{code-block::
python}, followed by a C{code-block:: text} with what it prints.  Here each document's blocks,
of both kinds, run in order in one namespace, as the doctest builder runs them, and what each
code block prints must be what the output block after it shows.
"""

from __future__ import annotations

import doctest
import importlib.util
import re
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from textwrap import dedent

from twisted.trial.unittest import SynchronousTestCase, TestCase

__all__ = ["BlocksTests", "ConfHookTests", "DocumentationTests", "EpytextTests"]

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "doc" / "source" / "conf.py"

_DIRECTIVE = re.compile(
    r"^(?P<indent> *)\.\. "
    r"(?P<name>testsetup|testcode|testoutput|doctest|code-block|code|sourcecode)"
    r"::(?: +(?P<arg>\S+))? *$"
)
_OPTION = re.compile(r"^\s*:(?P<name>[\w-]+):(?P<value>.*)$")


@dataclass(frozen=True)
class Block:
    """
    One code or output block of a document.

    @ivar kind: C{"code"}, C{"output"} or C{"doctest"}.
    @ivar directive: the directive that made it: C{testcode}, C{code-block}...
    @ivar line: the line of its directive (1-based), for messages.
    @ivar options: the directive's options, such as C{skipif}.
    """

    kind: str
    directive: str
    text: str
    line: int
    options: dict[str, str]


def blocks(source: str) -> Iterator[Block]:
    """
    @return: the code, output and doctest blocks of the reST C{source}, in order.  Python code
        blocks are C{code}; C{testoutput} blocks, and C{text} code blocks right after a Python
        code block, are C{output}; blocks in other languages (C{console}...) are left out.
    """
    lines = source.splitlines()
    previous = ""
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        i += 1
        if not match:
            continue
        start, indent = i, len(match["indent"])
        options: dict[str, str] = {}
        while i < len(lines) and (option := _OPTION.match(lines[i])):
            options[option["name"]] = option["value"].strip()
            i += 1
        body: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        text = dedent("\n".join(body)).strip("\n") + "\n"
        name, arg = match["name"], match["arg"] or ""
        if name in ("testsetup", "testcode") or arg == "python":
            kind = "code"
        elif name == "testoutput" or (arg == "text" and previous == "code"):
            kind = "output"
        elif name == "doctest":
            kind = "doctest"
        else:
            previous = ""
            continue
        previous = kind
        yield Block(kind, name, text, start, options)


def run(source: str, name: str) -> int:
    """
    Run the blocks of C{source} in order, in one namespace.

    @param name: the document's name, for messages and tracebacks.
    @return: how many code and doctest blocks ran.
    @raise AssertionError: if an output block differs from what the code before it printed, or a
        doctest fails.  Exceptions raised by the code propagate.
    """
    namespace: dict[str, object] = {"__name__": f"__doc_{Path(name).stem}__"}
    printed: str | None = None
    skipped = False
    ran = 0
    for block in blocks(source):
        where = f"{name}, line {block.line}"
        if block.kind == "output":
            if skipped:
                continue
            if printed is None:
                raise AssertionError(f"{where}: an output block follows no code block")
            if _normalise(printed) != _normalise(block.text):
                raise AssertionError(
                    f"{where}: the code before printed\n{printed}\nbut the output block shows\n"
                    f"{block.text}"
                )
            printed = None
            continue
        skipped = bool(block.options.get("skipif")) and bool(
            eval(block.options["skipif"], namespace)
        )
        if skipped:
            continue
        ran += 1
        if block.kind == "doctest":
            test = doctest.DocTestParser().get_doctest(block.text, namespace, name, name, 0)
            failures = StringIO()
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            runner.run(test, out=failures.write, clear_globs=False)
            if runner.failures:
                raise AssertionError(f"{where}:\n{failures.getvalue()}")
            printed = None
            continue
        out = StringIO()
        with redirect_stdout(out):
            exec(compile(block.text, f"{name}:{block.line}", "exec"), namespace)
        printed = out.getvalue()
    return ran


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


class BlocksTests(SynchronousTestCase):
    """
    L{blocks} and L{run}, on small documents: the runner itself must be able to fail.
    """

    def test_kinds(self) -> None:
        """
        Python code blocks and Sphinx code blocks are code, their outputs are output, and other
        languages are left out; options are read, and the bodies dedented.
        """
        source = dedent(
            """\
            .. code-block:: console

                $ pip install txrwlock

            .. code-block:: text

                not an output: no Python before it

            .. testcode::
                :skipif: False

                print(1)

            .. testoutput::

                1

            .. code-block:: python

                if True:
                    print(2)

            .. code-block:: text

                2

            .. doctest::

                >>> 1 + 1
                2
            """
        )
        found = [(b.kind, b.directive, b.text, b.options) for b in blocks(source)]
        self.assertEqual(
            found,
            [
                ("code", "testcode", "print(1)\n", {"skipif": "False"}),
                ("output", "testoutput", "1\n", {}),
                ("code", "code-block", "if True:\n    print(2)\n", {}),
                ("output", "code-block", "2\n", {}),
                ("doctest", "doctest", ">>> 1 + 1\n2\n", {}),
            ],
        )
        self.assertEqual(run(source, "sample.rst"), 3)

    def test_sharedNamespace(self) -> None:
        """
        A document's blocks share one namespace, in order.
        """
        source = ".. testcode::\n\n    x = 41\n\n.. testcode::\n\n    print(x + 1)\n\n"
        source += ".. testoutput::\n\n    42\n"
        self.assertEqual(run(source, "sample.rst"), 2)

    def test_wrongOutput(self) -> None:
        """
        An output block that differs from what was printed fails, naming the line.
        """
        source = ".. testcode::\n\n    print('yes')\n\n.. testoutput::\n\n    no\n"
        e = self.assertRaises(AssertionError, run, source, "sample.rst")
        self.assertIn("sample.rst, line 5", str(e))  # the output block's

    def test_outputWithoutCode(self) -> None:
        """
        An output block must follow a code block.
        """
        source = ".. testoutput::\n\n    1\n"
        self.assertRaises(AssertionError, run, source, "sample.rst")

    def test_raises(self) -> None:
        """
        An exception raised by a code block fails the document.
        """
        source = ".. code-block:: python\n\n    1 / 0\n"
        self.assertRaises(ZeroDivisionError, run, source, "sample.rst")

    def test_failingDoctest(self) -> None:
        """
        A failing doctest fails the document.
        """
        source = ".. doctest::\n\n    >>> 1 + 1\n    3\n"
        self.assertRaises(AssertionError, run, source, "sample.rst")

    def test_skipif(self) -> None:
        """
        A block whose C{skipif} is true does not run, nor does its output get compared.
        """
        source = ".. testcode::\n    :skipif: True\n\n    1 / 0\n\n.. testoutput::\n\n    x\n"
        self.assertEqual(run(source, "sample.rst"), 0)


class _ConfTestCase(SynchronousTestCase):
    """
    Tests of C{doc/source/conf.py}, loaded as C{self.conf}.

    That needs Sphinx, which make test installs (tox's test environments do not).
    """

    if importlib.util.find_spec("sphinx") is None:
        skip = "Sphinx is not installed: make dev installs it"

    def setUp(self) -> None:
        spec = importlib.util.spec_from_file_location("_txrwlock_doc_conf", CONF)
        assert spec is not None and spec.loader is not None
        self.conf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.conf)


class EpytextTests(_ConfTestCase):
    """
    The conversion of the package's epytext docstrings to reST, in C{doc/source/conf.py}.
    """

    def test_fields(self) -> None:
        """
        C{@param}, C{@return}, C{@raise} and C{@ivar} become reST fields, continuation lines
        kept.
        """
        lines = [
            "Do it.",
            "",
            "@param fair: serve in order,",
            "    or not.",
            "@return: a L{Deferred}.",
            "@raise LockNotHeldError: if not held.",
            "@ivar reader: the reader side.",
            "@see: nothing",
        ]
        self.assertEqual(
            self.conf.epytextToRest(lines),
            [
                "Do it.",
                "",
                ":param fair: serve in order,",
                "    or not.",
                ":return: a :py:obj:`Deferred`.",
                ":raises LockNotHeldError: if not held.",
                ":ivar reader: the reader side.",
                "@see: nothing",
            ],
        )

    def test_markup(self) -> None:
        """
        C{L{}} becomes a reference (with its label, if any), C{C{}} literal text, C{B{}} bold and
        C{I{}} italics.
        """
        lines = ["L{x.y} L{run<a.B.run>} C{async with} B{Policy.} I{not}"]
        self.assertEqual(
            self.conf.epytextToRest(lines),
            [":py:obj:`x.y` :py:obj:`run <a.B.run>` ``async with`` **Policy.** *not*"],
        )

    def test_literalBlocks(self) -> None:
        """
        A literal block, after C{::}, is left as it is, up to the next line indented as the line
        that opened it.
        """
        lines = ["Like C{this}::", "", '    f("C{x}")  # @param y: z', "", "After C{it}."]
        self.assertEqual(
            self.conf.epytextToRest(lines),
            ["Like ``this``::", "", '    f("C{x}")  # @param y: z', "", "After ``it``."],
        )

    def test_plainTextBlocks(self) -> None:
        """
        A literal block that is not Python, such as an ASCII timeline, becomes a C{text} code
        block, so that it is not highlighted as Python.
        """
        lines = ["A timeline::", "", "    R1 ==|", "    W1  .|== for and in", "", "After."]
        self.assertEqual(
            self.conf.epytextToRest(lines),
            [
                "A timeline:",
                "",
                ".. code-block:: text",
                "",
                "    R1 ==|",
                "    W1  .|== for and in",
                "",
                "After.",
            ],
        )

    def test_importedNamesLink(self) -> None:
        """
        C{L{name}} of a name that the docstring's module imports from elsewhere links to where
        it is defined (Twisted's API docs, through intersphinx); other names are left as they
        are.
        """
        from twisted.internet.defer import Deferred
        from twisted.internet.interfaces import IReactorTime

        namespace = {"Deferred": Deferred, "IReactorTime": IReactorTime}
        self.assertEqual(
            self.conf.epytextToRest(
                ["L{Deferred} L{Deferred.addTimeout} L{IReactorTime} L{other}"], namespace
            ),
            [
                ":py:obj:`Deferred <twisted.internet.defer.Deferred>`"
                " :py:obj:`Deferred.addTimeout <twisted.internet.defer.Deferred.addTimeout>`"
                " :py:obj:`IReactorTime <twisted.internet.interfaces.IReactorTime>`"
                " :py:obj:`other`"
            ],
        )


class ConfHookTests(_ConfTestCase):
    """
    The other hooks of C{doc/source/conf.py}: what fails the docs build, and which signatures
    the pages hide.
    """

    def test_blemishesFound(self) -> None:
        """
        A system message of any level, down to docutils' info (a duplicate implicit target,
        which Sphinx neither warns about nor shows), and a C{contents} directive (an error box
        under furo) are reported; a clean document has none.
        """
        from docutils.core import publish_doctree  # type: ignore[import-untyped]

        quiet = {"report_level": 5, "halt_level": 5}
        clean = publish_doctree("Title\n=====\n\nText.\n", settings_overrides=quiet)
        self.assertEqual(self.conf.blemishes(clean), [])
        source = "Title\n=====\n\n.. contents::\n\nA\n-\n\nx\n\nA\n-\n\ny\n"
        found = self.conf.blemishes(publish_doctree(source, settings_overrides=quiet))
        self.assertEqual(len(found), 2, found)
        self.assertIn("(INFO)", found[0])
        self.assertIn("Duplicate implicit target name", found[0])
        self.assertIn("contents directive", found[1])

    def test_internalConstructorsHidden(self) -> None:
        """
        The classes users get from the API, never build, show no constructor signature; others
        keep theirs.
        """
        hide = self.conf.hideInternalConstructors
        self.assertEqual(
            hide(None, "class", "txrwlock.redis.RedisLocks", None, {}, "(reactor, commands)", None),
            ("", None),
        )
        self.assertIsNone(
            hide(None, "class", "txrwlock.TxReadersWriterLock", None, {}, "(fair=False)", None)
        )
        self.assertIsNone(hide(None, "method", "txrwlock.LockSide.run", None, {}, "(f)", None))


def _documents() -> list[Path]:
    return [ROOT / "README.rst", *sorted((ROOT / "doc" / "source").glob("*.rst"))]


class DocumentationTests(TestCase):
    """
    The code examples of C{README.rst} and of each page of C{doc/source}, one test per document.
    """

    def test_examplesFound(self) -> None:
        """
        The pages that teach by example have code blocks this module finds, so that a misspelt
        directive cannot leave them untested.
        """
        counts = {
            p.stem: sum(b.kind == "code" for b in blocks(p.read_text(encoding="utf-8")))
            for p in _documents()
        }
        for stem in ("README", "index", "tutorial", "policies", "testing", "migrating"):
            self.assertGreater(counts[stem], 0, stem)


def _documentTest(path: Path) -> Callable[[DocumentationTests], None]:
    def test(self: DocumentationTests) -> None:
        run(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))

    test.__name__ = f"test_{path.stem}"
    test.__doc__ = (
        f"The code examples of C{{{path.relative_to(ROOT)}}} run, printing what it shows."
    )
    return test


for _path in _documents():
    setattr(DocumentationTests, f"test_{_path.stem}", _documentTest(_path))
