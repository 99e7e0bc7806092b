"""
The outputs of a run: the tables (reStructuredText grid tables, so that the results page quotes
them as printed), the JSON record and the plot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _common import Curve, Row, Value

__all__ = ["formatGoals", "formatTable", "plotCurves", "subjectsOf", "writeJson"]


def _cell(value: Value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _verdict(met: bool | None) -> str:
    if met is None:
        return ""
    return "met" if met else "NOT MET"


def subjectsOf(rows: Iterable[Row]) -> list[str]:
    """
    @return: every subject measured in C{rows}, in the order they first appear: the columns.
    """
    subjects: dict[str, None] = {}
    for row in rows:
        subjects.update(dict.fromkeys(row.values))
    return list(subjects)


def formatTable(rows: Sequence[Row]) -> str:
    """
    @return: C{rows} side by side, one column per subject they measure, as an reStructuredText
        grid table.  Give the rows of one section: a table of every section's subjects would be
        too wide to read (on the results page, 13 columns ran off the screen).
    """
    rows = [row for row in rows if row.values]  # a goal on figures of other rows has none
    subjects = subjectsOf(rows)
    return _grid(
        ["figure", *subjects],
        [
            [f"{row.figure} ({row.unit})", *(_cell(row.values.get(s)) for s in subjects)]
            for row in rows
        ],
    )


def formatGoals(rows: Sequence[Row]) -> str:
    """
    @return: the goal of each of C{rows} that has one, the figure it is judged on and whether it
        is met, as an reStructuredText grid table.
    """
    return _grid(
        ["figure", "goal", "measured", "verdict"],
        [[row.figure, row.goal, row.measured, _verdict(row.met)] for row in rows if row.goal],
    )


def _grid(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def rule(char: str) -> str:
        return "+" + "+".join(char * (w + 2) for w in widths) + "+"

    def text(cells: list[str]) -> str:
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, widths, strict=True)) + "|"

    out = [rule("-"), text(header), rule("=")]
    for line in lines:
        out += [text(line), rule("-")]
    return "\n".join(out)


def writeJson(
    path: Path, record: dict[str, Any], rows: Sequence[Row], curves: Sequence[Curve]
) -> None:
    """
    Write the run's C{record} (machine, settings), rows and curves to C{path}.
    """
    data = {**record, "rows": [asdict(r) for r in rows], "curves": [asdict(c) for c in curves]}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


_TITLES = {
    "drain": "Draining N queued waiters (2 readers : 1 writer),\neach releasing in its callback",
    "cancel": "Cancelling N waiting acquires by timeouts,\nin random order",
}


def plotCurves(path: Path, curves: Sequence[Curve], caption: str) -> None:
    """
    Plot time against N, log-log, one panel per figure ("drain", "cancel"), one line per subject
    for as long as it survived; a subject that stopped early says why in the legend and ends in
    a cross.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = [f for f in _TITLES if any(c.figure == f for c in curves)]
    fig, axes = plt.subplots(1, len(figures), figsize=(7 * len(figures), 5.5), squeeze=False)
    subjects = list(dict.fromkeys(c.subject for c in curves))
    colours = {s: f"C{i}" for i, s in enumerate(subjects)}
    for ax, figure in zip(axes[0], figures, strict=True):
        for curve in (c for c in curves if c.figure == figure):
            label = curve.subject if curve.end is None else f"{curve.subject}: {curve.end}"
            if not curve.points:
                ax.plot([], [], color=colours[curve.subject], label=f"{label} (no point)")
                continue
            ns, seconds = zip(*curve.points, strict=True)
            ax.plot(
                ns, seconds, marker="o", markersize=3, color=colours[curve.subject], label=label
            )
            if curve.end is not None:
                ax.plot(
                    ns[-1], seconds[-1], marker="x", markersize=10, color=colours[curve.subject]
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (waiters)")
        ax.set_ylabel("CPU seconds (best of repeats)")
        ax.set_title(_TITLES[figure])
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.1)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
