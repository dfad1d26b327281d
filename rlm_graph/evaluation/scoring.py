"""Scoring answers against exact gold, between 0 (wrong) and 1 (exact).

An evaluation asks every system to end its answer with a line ``ANSWER: ...``
(:data:`ANSWER_LINE_INSTRUCTION`), and only that line is scored: the reasoning
before it (a list of the entries counted, the tally a label was chosen from, the
keys a value was not for) names numbers and labels that are not the answer.
Without such a line the whole answer is scored, the graph's notes removed, by
the rules of :func:`score_answer`; the runner counts those answers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import cache

from rlm_graph import DEFAULT_PROGRESS_MESSAGES
from rlm_graph.navigate import NAVIGATE_MESSAGES

__all__ = [
    "ANSWER_FORMS", "ANSWER_LINE_INSTRUCTION", "answer_body", "answer_line", "score_answer", "score_count",
    "score_items", "score_label",
]  # fmt: skip

ANSWER_LINE_INSTRUCTION = (
    "When you give your final answer to this question, end it with one last line of the form "
    "`ANSWER: {form}`."
)
"""Appended to each evaluation question (``{form}`` from :data:`ANSWER_FORMS` by the task's score kind)."""
ANSWER_FORMS = {
    "values": "the number or numbers only, separated by commas",
    "names": "the variable names only, separated by commas",
    "count": "the number only",
    "label": "the label only",
}
# "ANSWER: 9", "**Answer:** 9", "> Answer: 9": the line a system was asked to end with.
_ANSWER_LINE = re.compile(r"^[ \t>*_#`-]*answer[ \t*_`]*:[ \t*_`]*(.*?)[ \t*_`.]*$", re.IGNORECASE | re.MULTILINE)
# Without an answer line: a numbered list's item numbers, and asides in parentheses (the tally
# a "most" label was chosen from), are the working, not the count or label answered.
_LIST_NUMBER = re.compile(r"^\s*\d+[.)](?=\s)", re.MULTILINE)
_ASIDE = re.compile(r"\([^()]*\)")

_VALUE = re.compile(r"(?<!\d)\d{7}(?!\d)")
_NAME = re.compile(r"\b[A-Z]{5}\b")
# Citation markers such as [2] or [F3] are not part of the answer's numbers.
_CITATION = re.compile(r"\[F?\d+\]")
_NUMBER = re.compile(r"(?<![\w-])\d+(?![\w-])")
_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip
_NUMBER_WORDS = {word: value for value, word in enumerate(_WORDS)}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
COUNT_DECAY = 0.75
"""A count off by ``d`` scores ``COUNT_DECAY ** d`` (as OOLONG scores numeric answers)."""


_COUNT_FIELDS = frozenset({"count", "read", "total", "unread", "more"})


@cache
def _note_patterns() -> tuple[re.Pattern[str], ...]:
    """The graph's notes on its answers ("Read 8 of 41 parts, ..."), from their templates."""
    patterns = []
    # Every note the graph can append: reading coverage, and navigate's "read <1% of the document
    # (characters 1142570-1142660, ...)", whose 7-digit offsets would otherwise count as values.
    for key, template in {**DEFAULT_PROGRESS_MESSAGES, **NAVIGATE_MESSAGES}.items():
        # more_spans is part of the failed and skipped notes; an empty template is no note.
        if not key.startswith("answer.") or key == "answer.more_spans" or not template.strip():
            continue
        pieces = []
        for literal, field, spec, _ in string.Formatter().parse(template):
            pieces.append(re.escape(literal))
            if field is not None and spec and "|" in spec:
                # A plural choice ("{count:part|parts}") is one of its words.
                pieces.append("(?:" + "|".join(re.escape(word) for word in spec.split("|")) + ")")
            elif field is not None:
                # Counts are numbers; spans and shares sit inside parentheses without any of their own.
                pieces.append(r"\d+" if field in _COUNT_FIELDS else r"[^()\n]*?")
        patterns.append(re.compile("".join(pieces)))
    return tuple(patterns)


def answer_body(answer: str) -> str:
    """The answer without the graph's notes about its reading.

    Their numbers (parts read, character offsets) are not the answer's: a count
    must not be taken from "Read 8 of 41 parts".

    Args:
        answer: The answer text.

    Returns:
        The answer, notes removed.
    """
    for pattern in _note_patterns():
        answer = pattern.sub(" ", answer)
    return answer


def answer_line(answer: str) -> str | None:
    """The text of the answer's last ``ANSWER: ...`` line, or ``None`` when it has none.

    Args:
        answer: The answer text.

    Returns:
        What follows ``ANSWER:`` on its last such line (Markdown emphasis removed).
    """
    found = [match.group(1).strip() for match in _ANSWER_LINE.finditer(answer)]
    return found[-1] if found else None


def score_items(found: set[str], gold: Sequence[str]) -> float:
    """F1 of the items an answer names against the gold items.

    Naming every gold item and nothing else scores 1; naming distractors too
    lowers precision; missing gold items lowers recall.

    Args:
        found: Items named by the answer.
        gold: Gold items.

    Returns:
        The F1 score, 0 when no gold item is named.
    """
    wanted = set(gold)
    hits = len(found & wanted)
    if not hits:
        return 0.0
    precision, recall = hits / len(found), hits / len(wanted)
    return 2 * precision * recall / (precision + recall)


def score_count(answer: str, gold: int) -> float:
    """Score the first number an answer gives (digits or a word up to twenty).

    Item numbers of a numbered list and numbers in parentheses are passed over:
    they number or break down what is counted.

    Args:
        answer: The answer text.
        gold: The right count.

    Returns:
        1 for the right count, ``COUNT_DECAY ** |difference|`` otherwise, 0 with no number.
    """
    text = _ASIDE.sub(" ", _LIST_NUMBER.sub(" ", _CITATION.sub(" ", answer)))
    candidates = [(m.start(), int(m.group())) for m in _NUMBER.finditer(text)]
    candidates += [(m.start(), _NUMBER_WORDS[m.group(1).lower()]) for m in _NUMBER_WORD.finditer(text)]
    if not candidates:
        return 0.0
    _, given = min(candidates)
    return COUNT_DECAY ** abs(given - gold)


def score_label(answer: str, gold: str, labels: Sequence[str]) -> float:
    """1 when the first label the answer names, outside parentheses, is the gold one, else 0.

    A tally in parentheses ("(granary: 8, meadow: 9)") is what the label was chosen from.

    Args:
        answer: The answer text.
        gold: The right label.
        labels: Every label of the task.

    Returns:
        1.0 or 0.0.
    """
    positions = []
    text = _ASIDE.sub(" ", answer)
    for label in labels:
        match = re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE)
        if match:
            positions.append((match.start(), label))
    return 1.0 if positions and min(positions)[1] == gold else 0.0


def score_answer(kind: str, answer: str, gold: Sequence[str], known: Sequence[str]) -> float:
    """Score an answer for a task of the given kind.

    - ``values``: F1 over the 7-digit numbers the answer names (any such number counts,
      so an invented one lowers precision);
    - ``names``: F1 over the task's variable names the answer names;
    - ``count``: see :func:`score_count`;
    - ``label``: see :func:`score_label`.

    Only the answer's last ``ANSWER: ...`` line is scored (:func:`answer_line`); an
    answer without one is scored whole, the graph's notes about its reading (parts
    read, spans that failed, what navigate read) removed first.

    Args:
        kind: The task's ``kind``.
        answer: The answer text.
        gold: The task's gold items.
        known: Every item the task's facts name.

    Returns:
        A score between 0 and 1.
    """
    line = answer_line(answer)
    answer = line if line is not None else answer_body(answer)
    if kind == "values":
        return score_items(set(_VALUE.findall(answer)), gold)
    if kind == "names":
        return score_items({name for name in _NAME.findall(answer) if name in known}, gold)
    if kind == "count":
        return score_count(answer, int(gold[0]))
    if kind == "label":
        return score_label(answer, gold[0], known)
    msg = f"unknown score kind {kind!r}"
    raise ValueError(msg)
