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
from typing import Any, Literal

from langgraph.types import Command, Send

from rlm_graph.coverage import Coverage
from rlm_graph.level import Level
from rlm_graph.options import MIN_PART_TOKENS, FocusOptions
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import FINAL_INSTRUCTION, is_no_relevant
from rlm_graph.settings import Settings
from rlm_graph.splitter import Piece
from rlm_graph.state import RLMState, Usage, merge_usage
from rlm_graph.state.schema import PartError, PlannedPart

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


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words and phrases whose answer is spread over the document: lists, counts, totals,
# coverage ("every", "all", "mention"), order (first, last, before, after), comparison
# (more, fewer, than), superlatives and change over time. Matched case-insensitively.
_AGGREGATION = re.compile(
    r"\b(?:list|lists|listing|every|everyone|everything|everywhere|all|each|both|summari[sz]e|summary|summaries|"
    r"overview|how\s+many|count|counts|counted|(?:the|a|what|which|total)\s+number\s+of|totals?|altogether|"
    r"in\s+all|sum|sums|average|median|overall|timeline|chronolog\w*|throughout|entire|whole|enumerate|"
    r"compare|compared|comparison|versus|vs|themes?|always|never|frequency|frequently|how\s+often|trace|"
    r"outline|describe|most|least|fewest|first|last|best|worst|top\s+(?:\d+|two|three|four|five|ten)|"
    r"maximum|minimum|rank|ranking|ranked|in\s+(?:what|which)\s+order|sequence|more|less|fewer|than|"
    r"before|after|differ\w*|in\s+common|mention|mentions|mentioned|appear|appears|appeared|occur|occurs|"
    r"occurred|occurrences?|instances?|times|whenever|wherever|whoever|whatever|else|other|others|various|"
    r"several|multiple|distinct|unique|change|changes|changed|evolve\w*|develop|develops|developed|"
    r"over\s+time|only|none|nobody|no\s+one|no\s+\w+|main|major|principal|"
    r"older|younger|taller|shorter|richer|poorer|bigger|smaller|larger|higher|lower|longer|earlier|later|"
    r"better|worse|cheaper|dearer|faster|slower|heavier|greater|wealthier|happier|closer|nearer|farther|"
    r"stronger|weaker|wiser)\b"
    # "What is the novel about?": a question about the whole text.
    r"|\babout\s*[?.!]*\s*$"
    # A plural subject: "who are", "what were", "which have", "are there".
    r"|\b(?:who|what|which|where|when|how|whose)\s+(?:are|were|have|do)\b|\b(?:are|were)\s+there\b",
    re.IGNORECASE,
)
# Superlatives: any word ending in -est except these.
_SUPERLATIVE = re.compile(r"\b[a-z]{2,}est\b", re.IGNORECASE)
_NOT_SUPERLATIVE = _words(
    "rest test west interest request guest quest forest honest modest chest nest pest vest zest crest protest "
    "contest suggest digest arrest invest harvest manifest priest conquest inquest earnest behest unrest attest "
    "detest lest jest ernest everest budapest bucharest midwest southwest northwest bequest tempest divest infest "
    "molest pretest retest wrest abreast breast beast feast east yeast northeast southeast celeste forrest",
)
# "Which/what <plural noun>": the words after the question word, up to the verb.
_HEAD_AFTER = re.compile(
    r"\b(?:which|what)\s+((?:[^\W\d_][\w'’-]*(?:\s+|[?.!,;:]+\s*)){0,3})|"
    r"^\s*(?:please\s+)?(?:name|give|find|show|identify|extract|collect|gather|provide|tell|get|pull|cite|quote)\s+"
    r"((?:[^\W\d_][\w'’-]*(?:\s+|[?.!,;:]+\s*|$)){1,3})",
    re.IGNORECASE,
)
_VERBS = _words(
    "is was are were be been has have had does do did will would can could should may might must shall",
)
_IRREGULAR_PLURALS = _words("people men women children mice feet teeth geese data criteria phenomena")
_NOT_PLURAL = _words(
    "always perhaps news series species means physics mathematics politics economics whereabouts sometimes "
    "afterwards towards besides unless thus yes its this his hers ours yours theirs mrs ms lens bias alias atlas "
    "canvas chaos ethos pathos iris gas plus",
)
# Common English function words; a question must use more of them than of the
# other languages' ones below to be judged by the English word lists.
_ENGLISH = _words(
    "what who whom whose when where which why how is are was were did does do the a an of to in on at by for "
    "from with and or his her their this that these those has have had can could should would will "
    "name give find show tell list summarize summarise extract identify describe explain",
)
_FOREIGN = _words(
    "ist die der das den dem und von ein eine wer wie wo wann welche welcher het een van wat wie waar wanneer "
    "le la les de des du est qui quel quelle quels où quand el los las es que quién qué cuál dónde cuándo "
    "il di che chi ha lo gli dove quando kuka mikä missä milloin ja oli",
)


def _plural_head(question: str) -> str | None:
    """The plural noun a "which/what ..." question (or a request like "name the ...") asks for."""
    for found in _HEAD_AFTER.finditer(question):
        for word in (found.group(1) or found.group(2) or "").split():
            word = word.strip("'’?.!,;:")
            lower = word.lower()
            if lower in _VERBS:
                break
            if lower in _IRREGULAR_PLURALS:
                return word
            plural = (
                word[:1].islower()
                and len(lower) > 3
                and lower.endswith("s")
                and not lower.endswith(("ss", "us", "is", "ous", "'s", "’s"))
                and lower not in _NOT_PLURAL
            )
            if plural:
                return word
    return None


def _is_english(question: str) -> bool:
    words = re.findall(r"[^\W\d_]+", question.lower())
    english = sum(word in _ENGLISH for word in words)
    return english > 0 and english > sum(word in _FOREIGN for word in words)


# A fan-out no plan reaches: every top-level part is planned to fit one reading call.
_LEAF_FANOUT = 10**9
QUESTION_ROOM = 256
"""Focused parts leave this many tokens for the question whatever its length, so that
every question shorter than that gets the same part plan, and so reuses the index."""


def decide_mode(question: str) -> tuple[Literal["full", "focused"], str]:
    """Decide between a full and a focused read from the question alone (``mode="auto"``).

    A documented, offline heuristic. A focused read stops after a share of the parts,
    so any question whose answer may be spread over the document is read in full:

    - lists, counts and totals: list, every, all, each, both, how many, number of,
      total, in all, average, summarize, timeline, mention, appear, times, ...;
    - superlatives and order: most, least, first, last, best, any ``-est`` word,
      top 5, in what order, ...;
    - comparisons: more, fewer, less, than, before, after, older, larger, ...,
      compare, differ, in common;
    - plural questions: "which/what" followed by a plural noun ("Which chapters
      ...", "What places ..."), requests for a plural ("Extract the dates"), and a
      plural verb ("Who are ...", "What were ...", "Are there ...");
    - change and exclusivity: change, develop, only, none, no one, other, else, ...

    Only what is left, a targeted single-fact question ("What is X's phone number?",
    "When did the ship leave Lisbon?", "Who wrote the letter to Elizabeth?"), is read
    focused. When in doubt the heuristic reads in full: a verb in ``-s`` after
    "which <noun>" counts as a plural noun ("Which girl loves Darcy?" is read in full).
    The word lists are English; a question with no English function words, or more
    words of another language than of English, is read in full unless
    ``mode="focused"`` is asked for.

    Args:
        question: The question.

    Returns:
        ``"full"`` or ``"focused"``, and the reason (reported by the ``split.mode`` event).
    """
    found = _AGGREGATION.search(question)
    if found:
        return "full", f"the question asks about the whole document ({found.group(0).strip().lower()!r})"
    for match in _SUPERLATIVE.finditer(question):
        if match.group(0).lower() not in _NOT_SUPERLATIVE:
            return "full", f"the question asks for a superlative ({match.group(0).lower()!r})"
    plural = _plural_head(question)
    if plural:
        return "full", f"the question asks about several things ({plural.lower()!r})"
    # Checked last, so that an English request such as "List every code." gets its real reason.
    if not _is_english(question):
        return "full", "the question is not in English, which the heuristic cannot judge"
    return "focused", "the question looks targeted"


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
    run: Level,
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
            room = max(1, min(room, self.cap - len(self.read)))
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
