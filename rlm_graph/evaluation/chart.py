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

__all__ = ["build_figure", "draw_chart"]


def _short_number(value: float, _position: object = None) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:g}K"
    return f"{value:g}"


def _questions(count: int) -> str:
    return f"{count} question" + ("" if count == 1 else "s")


def draw_chart(records: Sequence[dict[str, Any]], path: Path, *, costs: bool) -> Path:
    """Draw accuracy against document length (one line per system) and cost per system.

    Args:
        records: Cell records.
        path: Where to write the PNG.
        costs: Whether the records carry costs (``--prices``); otherwise tokens per question are shown.

    Returns:
        ``path``.
    """
    build_figure(records, costs=costs).savefig(path, dpi=110)
    return path


def build_figure(records: Sequence[dict[str, Any]], *, costs: bool) -> Figure:
    """The chart of :func:`draw_chart` as a matplotlib figure.

    The accuracy panel's title names the model, and the chart says how many questions
    each point's accuracy is the mean of (failed runs included, as 0): once under the
    axis when every point holds as many, else as ``n=...`` beside each point; a point
    with failed runs says ``... failed`` beside it.

    Args:
        records: Cell records.
        costs: Whether the records carry costs.

    Returns:
        The figure.
    """
    rows, lengths = summarize(records)
    # A system that ran no question (say, a mode this version lacks) has nothing to draw.
    rows = [row for row in rows if any(row.questions(n) for n in lengths)]
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    accuracy_axes, cost_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    positions = range(len(lengths))
    colors: dict[str, str] = {}
    # How many questions each point is the mean of: said once when all points agree, else on each point.
    counts = {row.questions(n) for row in rows for n in lengths if row.questions(n)}
    uniform = next(iter(counts)) if len(counts) == 1 else None
    for row in rows:
        points = [(x, row.accuracy(n), row.questions(n)) for x, n in zip(positions, lengths, strict=True)]
        points = [(x, value * 100, count) for x, value, count in points if value is not None]
        xs, ys = [x for x, _, _ in points], [y for _, y, _ in points]
        (line,) = accuracy_axes.plot(xs, ys, marker="o", label=row.label)
        colors[row.label] = line.get_color()  # a system keeps its colour in the cost panel
        for x, y, count in points:
            # Failed runs count as 0 in the point; the label says how many there were.
            failed = row.failed_at.get(lengths[x], 0)
            labels = ([] if uniform is not None else [f"n={count}"]) + ([f"{failed} failed"] if failed else [])
            if labels:
                accuracy_axes.annotate(
                    ", ".join(labels), (x, y), xytext=(4, 4), textcoords="offset points", fontsize="x-small",
                    color=line.get_color(),
                )  # fmt: skip
        # Hollow markers where the model alone saw only the start of the document.
        cut = [(x, y) for x, y in zip(xs, ys, strict=True) if lengths[x] in row.truncated]
        if cut:
            accuracy_axes.scatter(
                [x for x, _ in cut], [y for _, y in cut], s=90, facecolors="none", edgecolors=line.get_color(), zorder=3
            )
    models = ", ".join(sorted({str(record["system"]) for record in records}))
    accuracy_axes.set_xticks(list(positions), [format_length(n) for n in lengths])
    per_point = "n = questions per point" if uniform is None else f"each point: {_questions(uniform)}"
    accuracy_axes.set_xlabel(f"document length (tokens); {per_point}")
    accuracy_axes.set_ylabel("accuracy (%)")
    accuracy_axes.set_ylim(-3, 103)
    accuracy_axes.grid(alpha=0.3)
    accuracy_axes.legend(fontsize="small")
    accuracy_axes.set_title(f"{models}: accuracy against length (circled: truncated)")
    rows = [row for row in rows if row.answered]
    labels = [row.label for row in rows]
    if costs:
        values = [row.per_question(row.cost or 0.0) for row in rows]
        cost_axes.set_xlabel("cost per answered question ($)")
    else:
        values = [row.per_question(row.input_tokens + row.output_tokens) for row in rows]
        cost_axes.set_xlabel("tokens per answered question (no prices given)")
    cost_axes.barh(labels, values, color=[colors[label] for label in labels])
    cost_axes.xaxis.set_major_formatter(FuncFormatter(_short_number))
    cost_axes.invert_yaxis()
    cost_axes.grid(axis="x", alpha=0.3)
    cost_axes.set_title("Cost per system")
    return figure
