"""An evaluation's records grouped by system: the rows that the report and the chart both show."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Row", "format_length", "shorten", "summarize"]


@dataclass
class Row:
    """One system's results across lengths."""

    label: str
    scores: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Scores by length: answered cells' scores, and 0 for each failed cell (a failed run answered nothing)."""
    failed_at: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    """Failed cells by length."""
    truncated: set[int] = field(default_factory=set)
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    answered: int = 0
    failed: int = 0
    not_run: int = 0
    reasons: list[str] = field(default_factory=list)
    no_answer_line: int = 0
    """Answers without the ``ANSWER:`` line, scored on their whole text."""

    def accuracy(self, length: int) -> float | None:
        """Mean score (0-1) at ``length`` over the questions asked, failed ones as 0; ``None`` if none ran."""
        values = self.scores.get(length)
        return sum(values) / len(values) if values else None

    def questions(self, length: int) -> int:
        """Questions the accuracy at ``length`` is the mean of: answered and failed cells."""
        return len(self.scores.get(length) or ())

    def per_question(self, total: float) -> float:
        """``total`` divided by the answered cells."""
        return total / self.answered if self.answered else 0.0


def format_length(tokens: int) -> str:
    """``131072`` -> ``"128K"``, ``1048576`` -> ``"1M"``."""
    if tokens >= 1024 * 1024 and tokens % (1024 * 1024) == 0:
        return f"{tokens // (1024 * 1024)}M"
    return f"{tokens // 1024}K" if tokens % 1024 == 0 else str(tokens)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with ``…`` when cut.

    Args:
        text: A reason or message.
        limit: Most characters of the result.

    Returns:
        The text, whole if it fits.
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Back to the last space unless that would leave almost nothing (one very long word).
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def summarize(records: Sequence[dict[str, Any]]) -> tuple[list[Row], list[int]]:
    """Group records by system (model, mode, part size).

    Args:
        records: Cell records.

    Returns:
        The rows in first-seen order, and the lengths in increasing order.
    """
    systems = {r["system"] for r in records}
    part_sizes = {r["part_tokens"] for r in records if r["mode"] != "direct"}
    rows: dict[tuple[Any, ...], Row] = {}
    for record in records:
        label = record["mode"]
        if len(part_sizes) > 1 and record["mode"] != "direct":
            label += f" parts={format_length(record['part_tokens']) if record['part_tokens'] else 'default'}"
        if len(systems) > 1:
            label = f"{record['system']} {label}"
        row = rows.setdefault((record["system"], record["mode"], record["part_tokens"]), Row(label))
        if record["status"] == "ok":
            row.scores[record["length"]].append(record["score"])
            row.answered += 1
            row.llm_calls += record.get("llm_calls") or 0
            row.input_tokens += record.get("input_tokens") or 0
            row.output_tokens += record.get("output_tokens") or 0
            if record.get("cost") is not None:
                row.cost = (row.cost or 0.0) + record["cost"]
            if record.get("truncated"):
                row.truncated.add(record["length"])
            if record.get("answer_line") is False:
                row.no_answer_line += 1
        else:
            if record["status"] == "failed":
                # A run that failed answered nothing: it counts as a wrong answer, not as a question
                # left out (3 failures and 1 right answer are 25%, not 100%).
                row.failed += 1
                row.failed_at[record["length"]] += 1
                row.scores[record["length"]].append(0.0)
            else:
                row.not_run += 1
            if record.get("reason") and record["reason"] not in row.reasons:
                row.reasons.append(record["reason"])
    return list(rows.values()), sorted({r["length"] for r in records})
