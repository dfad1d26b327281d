"""Focused reading: read the most relevant parts first and stop once the answer is found.

Modes (``create_rlm_graph(mode=...)``, or per run ``RLMContext(mode=...)``):

- ``"full"``: read every part (the default).
- ``"focused"``: at the top level, the document is planned in parts that each fit
  one reading call, ranked by a :class:`rlm_graph.retrieval.PartIndex`, and read in
  relevance order, ``max_concurrency`` parts per round. After a round with any
  finding, the synthesis judges the findings: a last line ``COMPLETE: yes`` (they
  answer the question fully), ``COMPLETE: partly`` (they answer part of it) or
  ``COMPLETE: no`` (they do not answer it). Only an explicit ``yes`` stops reading
  early. ``partly``, or a reply without the line (or with an unclear one), reads on
  until ``max_focused_parts`` parts have been read: the cap bounds spending once
  something relevant is found. ``no``, like a round whose readers all found nothing
  or whose parts all failed, means nothing is found yet: reading goes on past the
  cap, in relevance order. So focused mode never answers "not in the document"
  without having read it all, and a round of failed parts is never the end of it.
  When reading stops with parts unread, ``usage`` (``parts_unread``, and
  ``stopped_early`` when the synthesis had not said ``yes``) and the answer text
  say so (:mod:`rlm_graph.coverage`).
- ``"auto"``: the question decides. Aggregation questions ("list every ...",
  "how many", "which chapters ...", "who are ...", superlatives, comparisons, ...)
  are read in full; only targeted single-fact ones ("what is X's phone number") are
  focused; when in doubt, full. See :func:`decide_mode`.

Nothing happens in nested levels: focusing picks among top-level parts, so every
part read is one reading call. Parts not read are not errors; usage reports
``parts_read``, ``parts_total`` and ``parts_unread``.

The rounds run inside the fixed node set: ``split`` sends the first round, and
``synthesize`` sends the next round with ``Command(goto=[Send("process_chunk", ...)])``
when the answer is not complete yet.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from rlm_graph.auto_mode import decide_mode
from rlm_graph.coverage import Coverage
from rlm_graph.level import Level
from rlm_graph.options import MIN_PART_TOKENS, FocusOptions
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import FINAL_INSTRUCTION, is_no_relevant
from rlm_graph.settings import Settings
from rlm_graph.state import RLMState, Usage, merge_usage
from rlm_graph.state.schema import PartError, PlannedPart
from rlm_graph.steps import Steps

COMPLETENESS_INSTRUCTION = (
    " Then, on a last line of its own, write COMPLETE: yes if these findings fully answer the "
    "question, COMPLETE: partly if they answer only part of it and other parts of the document "
    "could add to the answer, or COMPLETE: no if they do not answer the question."
)
"""Appended to the final instruction of a focused synthesis while unread parts remain."""

_COMPLETE = re.compile(
    r"^[ \t>*_`#\-\[(]*complete[ \t*_`]*[:=\-][ \t*_`\"']*(?P<value>yes|no|partly|partially|partial|true|false)"
    r"[ \t*_`\"'.)\]!]*$",
    re.IGNORECASE,
)
_VERDICTS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}
Verdict = Literal["yes", "partly", "no"]


# A fan-out no plan reaches: every top-level part is planned to fit one reading call.
_LEAF_FANOUT = 10**9
QUESTION_ROOM = 256
"""Focused parts leave this many tokens for the question whatever its length, so that
every question shorter than that gets the same part plan, and so reuses the index."""


def mode_for(settings: Settings, run: Level, question: str, progress: ProgressWriter) -> str:
    """This invocation's reading mode, reported with a ``split.mode`` event when not plain full.

    Args:
        settings: The graph's settings.
        run: The invocation.
        question: The question.
        progress: The split node's progress writer.

    Returns:
        ``"full"`` or ``"focused"``.
    """
    configured = run.mode
    # "navigate" never reaches split at the top level (check routes it); nested levels read in full.
    if run.depth > 0 or configured in ("full", "navigate"):
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
    run: Level,
    state: RLMState,
    document: str,
    parts: list[PlannedPart],
    mode: str,
    progress: ProgressWriter,
) -> Steps[tuple[list[PlannedPart], dict[str, Any]]]:
    """Choose the parts ``split`` sends first, and the state that focused rounds need.

    Written as steps of ``split`` (:func:`rlm_graph.nodes.entry.planning_runnable`): the
    search index (about 1 s for 1M tokens) is built in steps where the retriever can,
    otherwise by a function the steps yield, which an async run calls in a thread
    (:meth:`rlm_graph.index_cache.IndexCache.get_or_build_in_steps`).

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
    retriever = options.resolved_retriever()
    index, seconds, reused = yield from options.index_cache.get_or_build_in_steps(retriever, document, spans)
    if reused:
        progress.progress("split", "processing", "split.index_reused")
    else:
        progress.progress("split", "processing", "split.index", seconds=f"{seconds:.2f}")
    ranked = [parts[i] for i in index.rank(state["question"])]
    cap = _cap(run.max_focused_parts, len(parts))
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


def split_complete(answer: str) -> tuple[str, Verdict | None]:
    """Separate an answer from its ``COMPLETE: yes|partly|no`` line (its last non-empty line).

    Args:
        answer: The synthesis reply.

    Returns:
        The answer without the line, and ``"yes"``, ``"partly"`` or ``"no"``, or ``None``
        when the last line is not such a line.
    """
    head, _, last = answer.rstrip().rpartition("\n")
    match = _COMPLETE.match(last.strip())
    if match is None:
        return answer, None
    return head.strip(), _VERDICTS.get(match.group("value").lower(), "partly")  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class NextRound:
    """The parts a focused round reads next, numbered on from the parts already read."""

    parts: list[PlannedPart]
    first_index: int
    total: int
    update: dict[str, Any]
    """State update of the round (what remains pending, the parts read, usage)."""


class FocusRound:
    """What ``synthesize`` does in focused mode: finish, or send the next round of parts."""

    def __init__(self, settings: Settings, state: RLMState, run: Level, has_findings: bool) -> None:
        self.settings = settings
        self.state = state
        self.run = run
        self.pending: list[PlannedPart] = list(state.get("pending") or [])
        self.read: list[PlannedPart] = list(state.get("parts") or [])
        self.cap = state.get("focus_cap", 0)
        self.active = run.depth == 0 and bool(self.pending)
        self.has_findings = has_findings
        """Whether something relevant is found: first the readers' replies, then the synthesis' verdict."""
        self.complete = False
        """Whether the synthesis said ``COMPLETE: yes``."""

    @property
    def read_on_without_synthesis(self) -> bool:
        """No reader found anything (or every part failed) and parts remain: read on, past the cap if need be."""
        return self.active and not self.has_findings

    @property
    def final_instruction(self) -> str | None:
        """The synthesis' final instruction: asks for ``COMPLETE:`` while unread parts remain."""
        return FINAL_INSTRUCTION + COMPLETENESS_INSTRUCTION if self.active else None

    def wants_more(self, answer: str) -> bool:
        """Whether to read another round after this synthesis reply.

        Only ``COMPLETE: yes`` stops early. ``no`` (or a "nothing relevant" reply)
        means nothing is found yet, so reading goes on past the cap; ``partly``, or no
        clear line, reads on while the cap allows.
        """
        body, verdict = split_complete(answer)
        self.complete = verdict == "yes"
        if not self.active or self.complete:
            return False
        if verdict == "no" or is_no_relevant(body):
            self.has_findings = False
            return True
        return len(self.read) < self.cap

    def coverage(self, chars: int, errors: list[PartError]) -> Coverage:
        """What the run read, for the answer's note (focused counts only at depth 0 of a focused run)."""
        if self.run.depth != 0 or not self.state.get("focus_cap"):
            return Coverage(chars=chars, errors=errors)
        total = len(self.read) + len(self.pending)
        return Coverage(
            chars=chars, errors=errors, parts_read=len(self.read), parts_total=total, complete=self.complete
        )

    def next_round(self, progress: ProgressWriter, usage: Usage) -> NextRound:
        """Choose the next parts, most relevant first (``rlm_graph.nodes.sends`` sends them).

        Args:
            progress: The synthesize node's progress writer.
            usage: Usage of this round's synthesis, if it ran.

        Returns:
            The parts to read next and the state update that goes with them.
        """
        room = self.run.resources.max_concurrency
        if self.has_findings:
            room = max(1, min(room, self.cap - len(self.read)))
        batch, rest = self.pending[:room], self.pending[room:]
        self.run.resources.plan_leaves(len(batch))
        progress.progress("analysis", "processing", "analysis.more", count=len(batch))
        update: dict[str, Any] = {
            "pending": rest,
            "parts": self.read + batch,
            "usage": merge_usage(usage, {"parts_read": len(batch)}),
        }
        if not rest:
            update["document"] = ""
        return NextRound(parts=batch, first_index=len(self.read) + 1, total=len(self.read) + len(batch), update=update)

    def report(self, progress: ProgressWriter) -> None:
        """Say how many parts were read and how many were not (focused runs only)."""
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
