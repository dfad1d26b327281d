"""Focused reading: read the most relevant parts first and stop once the answer is found.

Modes (``create_rlm_graph(mode=...)``, or per run ``RLMContext(mode=...)``):

- ``"full"``: read every part (the default).
- ``"focused"``: at the top level, the document is planned in parts that each fit
  one reading call, ranked by a :class:`rlm_graph.retrieval.PartIndex`, and read in
  relevance order, ``max_concurrency`` parts per round. After a round, if any
  finding is relevant, the synthesis is asked whether the findings already answer
  the question completely (a last line ``COMPLETE: yes`` or ``no``; a reply without
  it counts as complete). Reading stops when they do, or when ``max_focused_parts``
  parts have been read. While nothing relevant has been found, reading goes on
  past that budget, in relevance order, so focused mode never answers "not in the
  document" without having read it all.
- ``"auto"``: the question decides. Aggregation questions ("list every ...",
  "summarize", "how many", "timeline", ...) are read in full; targeted ones
  ("what is X's phone number") are focused. See :func:`decide_mode`.

Nothing happens in nested levels: focusing picks among top-level parts, so every
part read is one reading call. Parts not read are not errors; usage reports
``parts_read`` and ``parts_total``.

The rounds run inside the fixed node set: ``split`` sends the first round, and
``synthesize`` sends the next round with ``Command(goto=[Send("process_chunk", ...)])``
when the answer is not complete yet.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.types import Command, Send

from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import FINAL_INSTRUCTION
from rlm_graph.retrieval import IndexCache, Retriever, default_retriever
from rlm_graph.settings import MIN_PART_TOKENS, Invocation, Settings
from rlm_graph.splitter import Piece
from rlm_graph.state import RLMState, Usage, merge_usage
from rlm_graph.state.schema import PlannedPart

Mode = Literal["full", "focused", "auto"]
MODES: tuple[str, ...] = ("full", "focused", "auto")

COMPLETENESS_INSTRUCTION = (
    " Then, on a last line of its own, write COMPLETE: yes if these findings fully answer the "
    "question, or COMPLETE: no if other parts of the document could still add to the answer."
)
"""Appended to the final instruction of a focused synthesis while unread parts remain."""

_COMPLETE = re.compile(
    r"^[ \t>*_`#\-\[(]*complete[ \t*_`]*[:=\-][ \t*_`\"']*(?P<value>yes|no|true|false)[ \t*_`\"'.)\]!]*$",
    re.IGNORECASE | re.MULTILINE,
)
_AGGREGATION = re.compile(
    r"\b(?:list|lists|listing|every|all|each|summari[sz]e|summary|summaries|overview|how\s+many|count|"
    r"overall|timeline|chronolog\w*|throughout|entire|whole|enumerate|total|compare|comparison|themes?|"
    r"always|frequency|how\s+often|trace|outline)\b",
    re.IGNORECASE,
)

# A fan-out no plan reaches: every top-level part is planned to fit one reading call.
_LEAF_FANOUT = 10**9
QUESTION_ROOM = 256
"""Focused parts leave this many tokens for the question whatever its length, so that
every question shorter than that gets the same part plan, and so reuses the index."""


@dataclass(kw_only=True)
class FocusOptions:
    """Focused-reading options of one graph."""

    mode: Mode = "full"
    retriever: Retriever | None = None
    """``None``: a :class:`rlm_graph.retrieval.BM25Retriever`, made on first use."""
    max_focused_parts: int | float = 0.2
    """Parts to read at most once something relevant is found: a count, or a share of the parts."""
    index_cache: IndexCache = field(default_factory=IndexCache)

    def resolved_retriever(self) -> Retriever:
        """The retriever, making the default one on first use."""
        if self.retriever is None:
            self.retriever = default_retriever()
        return self.retriever


def check_focus_options(mode: Any, max_focused_parts: Any) -> None:
    """Validate the focused-reading options of ``create_rlm_graph``.

    Raises:
        ValueError: If ``mode`` is unknown or ``max_focused_parts`` is out of range.
    """
    if mode not in MODES:
        msg = f"mode must be one of {list(MODES)}, got {mode!r}"
        raise ValueError(msg)
    if isinstance(max_focused_parts, bool) or not isinstance(max_focused_parts, int | float):
        msg = f"max_focused_parts must be a count (int >= 1) or a share (0 < float <= 1), got {max_focused_parts!r}"
        raise ValueError(msg)
    valid = max_focused_parts >= 1 if isinstance(max_focused_parts, int) else 0 < max_focused_parts <= 1
    if not valid:
        msg = f"max_focused_parts must be a count (int >= 1) or a share (0 < float <= 1), got {max_focused_parts!r}"
        raise ValueError(msg)


def decide_mode(question: str) -> tuple[Literal["full", "focused"], str]:
    """Decide between a full and a focused read from the question alone (``mode="auto"``).

    A documented, offline heuristic: a question with an aggregation word (list,
    every, all, each, summarize, how many, count, overall, timeline, throughout,
    compare, ...) needs the whole document; any other question is taken as
    targeted. The words are English; other languages are read in full unless
    ``mode="focused"`` is asked for.

    Args:
        question: The question.

    Returns:
        ``"full"`` or ``"focused"``, and the reason.
    """
    found = _AGGREGATION.search(question)
    if found:
        return "full", f"the question asks about the whole document ({found.group(0).lower()!r})"
    if not re.search(r"[A-Za-z]", question):
        return "full", "no English words to judge the question by"
    return "focused", "the question looks targeted"


def mode_for(settings: Settings, run: Invocation, question: str, progress: ProgressWriter) -> str:
    """This invocation's reading mode, reported with a ``split.mode`` event when not plain full.

    Args:
        settings: The graph's settings.
        run: The invocation.
        question: The question.
        progress: The split node's progress writer.

    Returns:
        ``"full"`` or ``"focused"``.
    """
    options: FocusOptions | None = settings.retrieval
    configured = getattr(run.context, "mode", None) or (options.mode if options else "full")
    if run.depth > 0 or configured == "full":
        return "full"
    if configured == "auto":
        mode, reason = decide_mode(question)
    else:
        mode, reason = "focused", "requested"
    progress.progress("split", "processing", "split.mode", mode=mode, reason=reason)
    return mode


def plan_part_tokens(settings: Settings, mode: str, part_tokens: int) -> int:
    """Part budget to plan the top level with.

    Focused parts must not depend on the question's length, or a follow-up question
    would get another plan and rebuild the index: they are sized for any question of
    up to ``QUESTION_ROOM`` tokens (longer questions get their own, smaller parts).
    """
    if mode != "focused":
        return part_tokens
    stable = settings.input_window - settings.read_overhead("") - QUESTION_ROOM
    return min(part_tokens, stable) if stable >= MIN_PART_TOKENS else part_tokens


def plan_fanout(mode: str, fanout: int) -> int:
    """Fan-out to plan the top level with: focused parts each fit one reading call."""
    return _LEAF_FANOUT if mode == "focused" else fanout


def _cap(setting: int | float, total: int) -> int:
    if isinstance(setting, float):
        return max(1, math.floor(setting * total))
    return max(1, min(setting, total))


def first_round(
    settings: Settings,
    run: Invocation,
    state: RLMState,
    document: str,
    parts: list[PlannedPart],
    mode: str,
    progress: ProgressWriter,
) -> tuple[list[PlannedPart], dict[str, Any]]:
    """Choose the parts ``split`` sends first, and the state that focused rounds need.

    Args:
        settings: The graph's settings.
        run: The invocation.
        state: The split node's state.
        document: The level's text (neutralized), in offsets from ``run.offset``.
        parts: Every planned part, in document order, root offsets.
        mode: ``"full"`` or ``"focused"``.
        progress: The split node's progress writer.

    Returns:
        The parts to read now, and extra state updates.
    """
    if mode != "focused" or len(parts) <= 1:
        extra: dict[str, Any] = {"pending": [], "focus_cap": 0}
        if run.depth == 0:
            extra["usage"] = {"parts_read": len(parts), "parts_total": len(parts)}
        return parts, extra
    options: FocusOptions = settings.retrieval
    spans = [(p["start"] - run.offset, p["end"] - run.offset) for p in parts]
    index, seconds, reused = options.index_cache.get_or_build(options.resolved_retriever(), document, spans)
    if reused:
        progress.progress("split", "processing", "split.index_reused")
    else:
        progress.progress("split", "processing", "split.index", seconds=f"{seconds:.2f}")
    ranked = [parts[i] for i in index.rank(state["question"])]
    cap = _cap(getattr(run.context, "max_focused_parts", None) or options.max_focused_parts, len(parts))
    size = min(run.resources.max_concurrency, cap)
    first, pending = ranked[:size], ranked[size:]
    extra = {
        "pending": pending,
        "focus_cap": cap,
        "usage": {"parts_read": len(first), "parts_total": len(parts)},
    }
    if pending:
        # Later rounds slice their parts from it; a full read drops it once parts are sent.
        extra["document"] = state["document"]
    return first, extra


def split_complete(answer: str) -> tuple[str, bool | None]:
    """Separate an answer from its ``COMPLETE: yes|no`` line.

    Args:
        answer: The synthesis reply.

    Returns:
        The answer without the line, and ``True``/``False``, or ``None`` when it has none.
    """
    matches = list(_COMPLETE.finditer(answer))
    if not matches:
        return answer, None
    last = matches[-1]
    value = last.group("value").lower() in ("yes", "true")
    return (answer[: last.start()] + answer[last.end() :]).strip(), value


class FocusRound:
    """What ``synthesize`` does in focused mode: finish, or send the next round of parts."""

    def __init__(self, settings: Settings, state: RLMState, run: Invocation, has_findings: bool) -> None:
        self.settings = settings
        self.state = state
        self.run = run
        self.pending: list[PlannedPart] = list(state.get("pending") or [])
        self.read: list[PlannedPart] = list(state.get("parts") or [])
        self.cap = state.get("focus_cap", 0)
        self.active = run.depth == 0 and bool(self.pending)
        self.has_findings = has_findings

    @property
    def read_on_without_synthesis(self) -> bool:
        """Nothing relevant yet and parts remain: read on (past the budget if need be)."""
        return self.active and not self.has_findings

    @property
    def may_continue(self) -> bool:
        """Something was found, and the budget allows another round if it is incomplete."""
        return self.active and self.has_findings and len(self.read) < self.cap

    @property
    def final_instruction(self) -> str | None:
        """The synthesis' final instruction: asks for ``COMPLETE:`` while another round is possible."""
        return FINAL_INSTRUCTION + COMPLETENESS_INSTRUCTION if self.may_continue else None

    def wants_more(self, answer: str) -> bool:
        """Whether a synthesis reply says the answer is incomplete (and another round may run)."""
        return self.may_continue and split_complete(answer)[1] is False

    def next_round(self, progress: ProgressWriter, usage: Usage) -> Command:
        """Send the next parts, most relevant first.

        Args:
            progress: The synthesize node's progress writer.
            usage: Usage of this round's synthesis, if it ran.

        Returns:
            The command that sends them.
        """
        from rlm_graph.nodes.split import _slice, _task  # one payload shape for both senders

        room = self.run.resources.max_concurrency
        if self.has_findings:
            room = min(room, self.cap - len(self.read))
        batch, rest = self.pending[:room], self.pending[room:]
        self.run.resources.plan_leaves(len(batch))
        progress.progress("analysis", "processing", "analysis.more", count=len(batch))
        scope = (self.run.offset, self.run.offset + self.state["chars"])
        total = len(self.read) + len(batch)
        durable = self.run.durable
        sends = [
            Send(
                "process_chunk",
                _task(
                    self.state["question"],
                    self.run,
                    part,
                    [Piece(part["start"], part["end"], part["tokens"], 0)],
                    index,
                    total,
                    scope,
                    _slice(self.run, self.state["document"], part["start"], part["end"]) if durable else None,
                ),
            )
            for index, part in enumerate(batch, start=len(self.read) + 1)
        ]
        update: dict[str, Any] = {
            "pending": rest,
            "parts": self.read + batch,
            "usage": merge_usage(usage, {"parts_read": len(batch)}),
        }
        if not rest:
            update["document"] = ""
        return Command(update=update, goto=sends)

    def report(self, progress: ProgressWriter) -> None:
        """Say how many parts were read and how many were not needed (focused runs only)."""
        if self.run.depth != 0 or not self.state.get("focus_cap"):
            return
        total = len(self.read) + len(self.pending)
        progress.progress(
            "analysis",
            "processing",
            "analysis.focused",
            done=len(self.read),
            total=len(self.read),
            parts=total,
            skipped=len(self.pending),
        )
