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
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

project = "txrwlock"
author = "txrwlock developers"
copyright = "txrwlock developers"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sphinx.ext.viewcode"]
html_theme = "furo"
html_title = "txrwlock"
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


def _markup(match: re.Match[str]) -> str:
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
    return f":py:obj:`{text}`"


def epytextToRest(lines: list[str]) -> list[str]:
    """
    Turn the epytext of a docstring into reST: C{@param x:}, C{@return:}, C{@raise E:},
    C{@ivar x:} fields, and C{L{}}, C{C{}}, C{B{}} and C{I{}} markup.  Literal blocks (after
    C{::}) are left as they are.
    """
    out = []
    literalIndent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literalIndent is not None and line.strip() and indent <= literalIndent:
            literalIndent = None
        if literalIndent is None:
            line = _MARKUP.sub(_markup, line)
            field = _FIELD.match(line)
            if field and field.group(2) in _FIELDS:
                arg = field.group(3) or ""
                line = f"{field.group(1)}:{_FIELDS[field.group(2)]}{arg}:{line[field.end() :]}"
            if line.rstrip().endswith("::"):
                literalIndent = indent
        out.append(line)
    return out


def _processDocstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    lines[:] = epytextToRest(lines)


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
    app.add_directive("include-rebased", IncludeRebased)
    app.add_directive("towncrier-draft", TowncrierDraft)
