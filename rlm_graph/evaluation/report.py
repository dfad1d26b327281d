"""Summaries of an evaluation: a terminal table, a Markdown report and the chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlm_graph.evaluation.summary import Row, format_length, summarize

__all__ = ["markdown_report", "text_table", "write_outputs"]


def _cells(rows: Sequence[Row], lengths: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    header = ["system", *(format_length(n) for n in lengths), "calls/q", "tokens/q", "cost", "failed", "not run"]
    body = []
    for row in rows:
        accuracies = []
        for length in lengths:
            value = row.accuracy(length)
            text = "—" if value is None else f"{value * 100:.0f}%"
            text += "†" if length in row.truncated else ""
            failed = row.failed_at.get(length, 0)
            accuracies.append(text + (f" ({failed} failed)" if failed else ""))
        cost = "—" if row.cost is None else f"${row.cost:,.4f}"
        tokens = row.per_question(row.input_tokens + row.output_tokens)
        calls = f"{row.per_question(row.llm_calls):.1f}"
        body.append([row.label, *accuracies, calls, f"{tokens:,.0f}", cost, str(row.failed), str(row.not_run)])
    return header, body


_NOTES = (
    "Accuracy is the mean score over the questions asked (1 = exact gold answer; partial credit for partly right "
    "lists and near counts); a run that failed answered nothing and counts as 0, \"(n failed)\" says how many did. "
    "Only the answer's last line \"ANSWER: ...\" is scored. † the document did not fit the model's window: the "
    "model alone read only its start. calls/q and tokens/q are per answered question; cost is the total at --prices."
)


def text_table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table for the terminal.

    Args:
        records: Cell records.

    Returns:
        The table, lines aligned, with a note under it.
    """
    rows, lengths = summarize(records)
    header, body = _cells(rows, lengths)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n\n" + _NOTES + _reasons(rows)


def _reasons(rows: Sequence[Row]) -> str:
    text = ""
    lines = [
        f"- {row.label}: {row.no_answer_line} of {row.answered}" for row in rows if row.no_answer_line
    ]
    if lines:
        text += "\n\nAnswers without the ANSWER line, scored on their whole text (less exact):\n" + "\n".join(lines)
    notes = [f"{row.label}: {reason}" for row in rows for reason in row.reasons[:3]]
    return text + ("\n\nNot answered:\n" + "\n".join(f"- {note}" for note in notes) if notes else "")


def markdown_report(records: Sequence[dict[str, Any]], chart: str | None = None) -> str:
    """The Markdown report: the table, notes, and the chart if one was drawn.

    Args:
        records: Cell records.
        chart: File name of the chart next to the report.

    Returns:
        Markdown text.
    """
    rows, lengths = summarize(records)
    header, body = _cells(rows, lengths)
    systems = sorted({r["system"] for r in records})
    tasks = sorted({r["task"] for r in records})
    lines = [
        "# rlm-graph evaluation",
        "",
        f"Model: {', '.join(systems)}. Tasks: {', '.join(tasks)}. Samples per task and length: "
        f"{len({r['seed'] for r in records})}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *("| " + " | ".join(line) + " |" for line in body),
        "",
        _NOTES + _reasons(rows),
    ]
    if chart:
        lines += ["", f"![accuracy against length, and cost per system]({chart})"]
    return "\n".join(lines) + "\n"


def write_outputs(
    records: Sequence[dict[str, Any]], out: Path, *, prices: tuple[float, float] | None, chart: bool = True
) -> Path | None:
    """Write ``report.md`` and, with matplotlib installed (the ``eval`` extra), ``chart.png``.

    Args:
        records: Cell records.
        out: The output directory.
        prices: The prices given, if any (the chart shows cost with them, tokens without).
        chart: Whether to draw the chart.

    Returns:
        The chart's path, or ``None`` without matplotlib.
    """
    drawn = None
    if records and chart:
        try:
            from rlm_graph.evaluation.chart import draw_chart
        except ImportError:  # matplotlib is in the eval extra; the report is written without it
            drawn = None
        else:
            drawn = draw_chart(records, out / "chart.png", costs=prices is not None)
    (out / "report.md").write_text(markdown_report(records, drawn.name if drawn else None), encoding="utf-8")
    return drawn
