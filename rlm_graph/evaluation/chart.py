"""The evaluation chart: accuracy against length per system, and cost per system (matplotlib, the ``eval`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The object-oriented API without pyplot: no global backend or figure state is touched, so
# importing this in a notebook changes nothing there; Figure.savefig renders with Agg.
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rlm_graph.evaluation.summary import format_length, summarize

__all__ = ["draw_chart"]


def _short_number(value: float, _position: object = None) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:g}K"
    return f"{value:g}"


def draw_chart(records: Sequence[dict[str, Any]], path: Path, *, costs: bool) -> Path:
    """Draw accuracy against document length (one line per system) and cost per system.

    Args:
        records: Cell records.
        path: Where to write the PNG.
        costs: Whether the records carry costs (``--prices``); otherwise tokens per question are shown.

    Returns:
        ``path``.
    """
    rows, lengths = summarize(records)
    # A system with no answer (say, a mode this version lacks) has nothing to draw.
    rows = [row for row in rows if row.answered]
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    accuracy_axes, cost_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    positions = range(len(lengths))
    for row in rows:
        points = [(x, row.accuracy(n)) for x, n in zip(positions, lengths, strict=True)]
        xs = [x for x, value in points if value is not None]
        ys = [value * 100 for _, value in points if value is not None]
        (line,) = accuracy_axes.plot(xs, ys, marker="o", label=row.label)
        # Hollow markers where the model alone saw only the start of the document.
        cut = [(x, y) for x, y in zip(xs, ys, strict=True) if lengths[x] in row.truncated]
        if cut:
            accuracy_axes.scatter(
                [x for x, _ in cut], [y for _, y in cut], s=90, facecolors="none", edgecolors=line.get_color(), zorder=3
            )
    accuracy_axes.set_xticks(list(positions), [format_length(n) for n in lengths])
    accuracy_axes.set_xlabel("document length (tokens)")
    accuracy_axes.set_ylabel("accuracy (%)")
    accuracy_axes.set_ylim(-3, 103)
    accuracy_axes.grid(alpha=0.3)
    accuracy_axes.legend(fontsize="small")
    accuracy_axes.set_title("Accuracy against length (circled: truncated)")
    labels = [row.label for row in rows]
    if costs:
        values = [row.per_question(row.cost or 0.0) for row in rows]
        cost_axes.set_xlabel("cost per question ($)")
    else:
        values = [row.per_question(row.input_tokens + row.output_tokens) for row in rows]
        cost_axes.set_xlabel("tokens per question (no prices given)")
    cost_axes.barh(labels, values, color=[f"C{i}" for i in range(len(rows))])
    cost_axes.xaxis.set_major_formatter(FuncFormatter(_short_number))
    cost_axes.invert_yaxis()
    cost_axes.grid(axis="x", alpha=0.3)
    cost_axes.set_title("Cost per system")
    figure.savefig(path, dpi=110)
    return path
