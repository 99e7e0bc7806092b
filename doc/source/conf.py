"""
Sphinx configuration for the txrwlock documentation (built by C{make doc}, warnings as errors).

The package's docstrings are epytext, as Twisted's; L{epytextToRest} turns the parts of it they
use into reST for autodoc, so that one docstring style serves the code and these pages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path
from textwrap import dedent
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
_logger = logging.getLogger(__name__)
sys.path.insert(0, str(ROOT))

project = "txrwlock"
author = "txrwlock developers"
copyright = "txrwlock developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
html_theme = "furo"
html_title = "txrwlock"

# Links into Python's and Twisted's API docs.  The builds run offline, so the inventories are
# stored beside this file, copied from Debian's packages (which carry the docs' objects.inv):
# python.inv from python3-doc 3.11.2-1 (/usr/share/doc/python3.11/html/objects.inv), twisted.inv
# from twisted-doc 22.4.0-4+deb12u1 (/usr/share/doc/twisted-doc/html/api/objects.inv).  The names
# linked to have not moved since.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", "_inventories/python.inv"),
    "twisted": ("https://docs.twisted.org/en/stable/api/", "_inventories/twisted.inv"),
}
exclude_patterns: list[str] = []

autodoc_member_order = "bysource"
# The signatures read as they are called; the types are in the code (py.typed), and the
# overloads of LockSide.run would only repeat one another.
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}

# The doctest builder runs every ``testcode`` block of the pages; they need no reactor.
doctest_test_doctest_blocks = ""

# Epytext fields, inline markup, and how they read in reST.
_FIELDS = {"param": "param", "type": "type", "return": "return", "rtype": "rtype"}
_FIELDS.update({"raise": "raises", "ivar": "ivar", "cvar": "cvar", "var": "var"})
_FIELD = re.compile(r"^(\s*)@(\w+)(\s+[\w.*]+)?:")
_MARKUP = re.compile(r"([LCBI])\{([^{}]*)\}")
_IMAGE = re.compile(r"^(\s*\.\. (?:image|figure):: +)(?![a-z]+://|/)(\S+)", re.MULTILINE)


def _markup(match: re.Match[str], namespace: dict[str, Any]) -> str:
    kind, text = match.groups()
    if kind == "C":
        return f"``{text}``"
    if kind == "B":
        return f"**{text}**"
    if kind == "I":
        return f"*{text}*"
    label, _, target = text.partition("<")
    if target:
        return f":py:obj:`{label.strip()} <{target.rstrip('>').strip()}>`"
    # As pydoctor does: a name the docstring's module imports (L{Deferred}) is the imported
    # object, so that it links to where that lives (Twisted's API docs, through intersphinx).
    head, dot, rest = text.partition(".")
    imported = namespace.get(head)
    module = getattr(imported, "__module__", None)
    qualname = getattr(imported, "__qualname__", getattr(imported, "__name__", None))
    if isinstance(module, str) and qualname and not module.startswith("txrwlock"):
        return f":py:obj:`{text} <{module}.{qualname}{dot}{rest}>`"
    return f":py:obj:`{text}`"


def epytextToRest(lines: list[str], namespace: dict[str, Any] | None = None) -> list[str]:
    """
    Turn the epytext of a docstring into reST: C{@param x:}, C{@return:}, C{@raise E:},
    C{@ivar x:} fields, and C{L{}}, C{C{}}, C{B{}} and C{I{}} markup.  Literal blocks (after
    C{::}) are left as they are.

    @param namespace: the globals of the docstring's module, where C{L{name}} is looked up.
    """
    markup = partial(_markup, namespace=namespace or {})
    out = []
    literalIndent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literalIndent is not None and line.strip() and indent <= literalIndent:
            literalIndent = None
        if literalIndent is None:
            line = _MARKUP.sub(markup, line)
            field = _FIELD.match(line)
            if field and field.group(2) in _FIELDS:
                arg = field.group(3) or ""
                line = f"{field.group(1)}:{_FIELDS[field.group(2)]}{arg}:{line[field.end() :]}"
            if line.rstrip().endswith("::"):
                literalIndent = indent
        out.append(line)
    return _plainTextBlocks(out)


def _plainTextBlocks(lines: list[str]) -> list[str]:
    """
    Mark the literal blocks that are not Python (a timeline drawn in ASCII) as text: Sphinx
    highlights every literal block as Python, and colours "for", "and" and "in" in a drawing.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.rstrip()
        if not stripped.endswith("::") or stripped.lstrip().startswith(".. "):
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        end = i
        while end < len(lines) and (
            not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
        ):
            end += 1
        block = lines[i:end]
        try:
            compile(dedent("\n".join(block)), "<docstring>", "exec")
        except SyntaxError:
            intro = stripped[:-2].rstrip()
            if intro.strip():
                out += [intro + ("" if stripped.endswith(" ::") else ":"), ""]
            out += [" " * indent + ".. code-block:: text"]
        else:
            out.append(line)
        out += block
        i = end
    return out


def _processDocstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    module = sys.modules.get(getattr(obj, "__module__", None) or name.rsplit(".", 1)[0])
    lines[:] = epytextToRest(lines, vars(module) if module is not None else None)


def blemishes(doctree: nodes.Node) -> list[str]:
    """
    What would show on a page as an error, or is a problem that docutils reported below Sphinx's
    warning level: every system message of any level (Sphinx logs the info ones as information
    only, and drops them from the page), and a C{contents} directive, which furo's theme shows as a
    red error box (its sidebar has the page's table of contents already).

    @return: one line for each.
    """
    found = [
        f"docutils system message ({message['type']}): {message.astext()}"
        for message in doctree.findall(nodes.system_message)
    ]
    found += [
        "a contents directive: furo shows it as an error box (its sidebar has the page's contents)"
        for topic in doctree.findall(nodes.topic)
        if "contents" in topic["classes"]
    ]
    return found


class FailOnBlemishes(SphinxTransform):
    """
    Log each of L{blemishes} as a warning, so that C{sphinx -W} (C{make doc}) fails on it.  Runs
    just before Sphinx's own transform that drops the system messages below its warning level.
    """

    default_priority = 998

    def apply(self, **kwargs: Any) -> None:
        for blemish in blemishes(self.document):
            _logger.warning(blemish, location=self.env.docname)


# Classes whose objects users get from the API, never construct: their constructors are internal
# (RedisLocks(reactor, commands, subscriber, subscriptions)), so the pages show no signature.
MADE_FOR_USERS = {
    "txrwlock.LockSide": "lock.reader, lock.writer",
    "txrwlock.redis.RedisLocks": "connect()",
    "txrwlock.redis.RedisReadersWriterLock": "RedisLocks.lock()",
    "txrwlock.redis.RedisLockSide": "lock.reader, lock.writer",
    "txrwlock.postgres.PostgresLocks": "connect()",
    "txrwlock.postgres.PostgresReadersWriterLock": "PostgresLocks.lock()",
    "txrwlock.postgres.PostgresLockSide": "lock.reader, lock.writer",
}


def hideInternalConstructors(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    returnAnnotation: str | None,
) -> tuple[str, str | None] | None:
    """
    For C{autodoc-process-signature}: no signature for the classes of L{MADE_FOR_USERS}.
    """
    if what == "class" and name in MADE_FOR_USERS:
        return "", returnAnnotation
    return None


class IncludeRebased(SphinxDirective):
    """
    C{.. include-rebased:: path}: the file's text, as C{include} would put it, with its relative
    image paths made relative to the including page, where Sphinx looks for them.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        relative, path = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(relative)
        here = Path(self.env.doc2path(self.env.docname)).parent
        there = Path(path).parent

        def rebase(match: re.Match[str]) -> str:
            return match.group(1) + os.path.relpath(there / match.group(2), here)

        text = _IMAGE.sub(rebase, Path(path).read_text(encoding="utf-8"))
        self.state_machine.insert_input(text.splitlines(), path)
        return []


class TowncrierDraft(SphinxDirective):
    """
    C{.. towncrier-draft::}: the news fragments not yet released, as towncrier would write them.
    """

    def run(self) -> list[nodes.Node]:
        command = ["build", "--draft", "--version", "next", "--date", "unreleased"]
        result = subprocess.run(
            [sys.executable, "-m", "towncrier", *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        fragments = ROOT / "newsfragments"
        for path in fragments.iterdir():
            self.env.note_dependency(str(path))
        # The draft is on stdout; what towncrier says it does goes to stderr.
        self.state_machine.insert_input(result.stdout.splitlines(), str(fragments))
        return []


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-docstring", _processDocstring)
    app.connect("autodoc-process-signature", hideInternalConstructors)
    app.add_directive("include-rebased", IncludeRebased)
    app.add_directive("towncrier-draft", TowncrierDraft)
    app.add_transform(FailOnBlemishes)
