"""The document as the navigator's tools see it: leaves, outline, search, grep and peek.

Nothing here calls a model. A run's :class:`NavDocument` is built once (the document is
tokenized once, into reading-call-sized leaves) and kept beside the run's shared
resources, so every tool call of the run reuses it. Planning is written as steps
(:mod:`rlm_graph.steps`), so that an async run plans on its event loop section by
section instead of holding it for a whole tokenizer pass.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import regex

from rlm_graph.leaves import group_leaves, plan_leaves_in_steps
from rlm_graph.runs import RunResources
from rlm_graph.splitter import Span, drop_blank
from rlm_graph.steps import Steps
from rlm_graph.tokens import TokenCounter

__all__ = ["GREP_TIMEOUT_SECONDS", "NavDocument", "cut_to_tokens", "plan_nav_document"]

GREP_TIMEOUT_SECONDS = 2.0
"""Most seconds one ``grep`` may spend matching: a catastrophic pattern is stopped, not run."""
MAX_GREP_HITS = 200
MAX_SEARCH_HITS = 20
_LINE_CHARS = 200
_SNIPPET_CHARS = 200
# Characters of text that ``search`` scans between pauses (about 4 ms here).
_SEARCH_SLICE_CHARS = 256_000
# A Markdown heading, a "Chapter 3"-like line, or a short line in capitals.
_HEADING_WORDS = "Chapter|Part|Book|Section|Letter|Act|Scene"
_HEADING = re.compile(
    rf"^(?:#{{1,6}}\s+\S.*|(?:{_HEADING_WORDS}|{_HEADING_WORDS.upper()})\b.{{0,80}}|[A-Z][A-Z0-9 ,.;:'’-]{{3,80}})$",
    re.MULTILINE,
)
_WORD = re.compile(r"\w+", re.UNICODE)


def cut_to_tokens(text: str, limit: int, counter: TokenCounter) -> tuple[str, bool]:
    """The longest prefix of ``text`` within ``limit`` tokens (bisection on characters).

    Args:
        text: The text.
        limit: Most tokens.
        counter: The token counter.

    Returns:
        The prefix and whether it was cut.
    """
    if counter.count(text) <= limit:
        return text, False
    low, high = 0, min(len(text), limit * 32)
    while low < high:
        middle = (low + high + 1) // 2
        if counter.count(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low], True


@dataclass
class NavDocument:
    """One run's document, planned for the tools."""

    text: str
    """The neutralized document (same length as the original, so offsets hold)."""
    leaves: list[Span]
    """Reading-call-sized spans in document order, blank ones dropped."""
    tokens: int
    count_many: Callable[[Sequence[str]], list[int]]
    aggregate_leaves: dict[int, list[Span]] = field(default_factory=dict)
    """Smaller leaves for ``ask_all`` counts, tallies and lists, by part size."""

    def plan_leaves_for(self, part_tokens: int) -> Steps[list[Span]]:
        """Leaves of at most ``part_tokens`` tokens (the main plan when it is already that small), as steps."""
        if part_tokens >= max((leaf.tokens for leaf in self.leaves), default=0):
            return self.leaves
        found = self.aggregate_leaves.get(part_tokens)
        if found is None:
            planned = yield from plan_leaves_in_steps(self.text, part_tokens=part_tokens, count_many=self.count_many)
            # Two tool calls planning the same size at once keep the first plan.
            found = self.aggregate_leaves.setdefault(part_tokens, drop_blank(self.text, planned))
        return found

    def check_span(self, start: object, end: object) -> str | None:
        """Why ``[start, end)`` is not a valid span of the document, or ``None`` when it is."""
        if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
            return f"offsets must be integers, got {start!r} and {end!r}"
        if not 0 <= start < end <= len(self.text):
            return f"span {start}-{end} is out of range: the document has characters 0-{len(self.text)}, start < end"
        return None

    def outline(self, entries: int, limit: int, counter: TokenCounter) -> str:
        """Top-level parts with their offsets and first heading or line, within ``limit`` tokens."""
        lines = []
        for group in group_leaves(self.leaves, max(2, entries)):
            start, end = group[0].start, group[-1].end
            piece = self.text[start:end]
            heading = _HEADING.search(piece[:20_000])
            if heading:
                label = " ".join(heading.group(0).split())[:100]
                label += f" (at {start + heading.start()})" if heading.start() else ""
            else:
                first = next((line for line in piece.splitlines() if line.strip()), "")
                label = " ".join(first.split())[:100]
            lines.append(f"- characters {start}-{end} (about {sum(leaf.tokens for leaf in group)} tokens): {label}")
        whole = "\n".join(lines)
        if counter.count(whole) <= limit:
            return whole
        # A cut outline says where it stops, so that the model does not take its last line for the end.
        note = f"- (the outline is cut here to fit the window; the document goes on to character {len(self.text)})"
        text, _ = cut_to_tokens(whole, max(0, limit - counter.count(note) - 1), counter)
        return text[: text.rfind("\n") + 1] + note  # whole lines only

    def line_at(self, position: int) -> tuple[int, str]:
        """The start and text (cut) of the line holding ``position``."""
        line_start = self.text.rfind("\n", 0, position) + 1
        line_end = self.text.find("\n", position)
        line_end = len(self.text) if line_end < 0 else line_end
        return line_start, self.text[line_start : min(line_end, line_start + _LINE_CHARS)]

    def grep(self, pattern: str, max_hits: int) -> str:
        """Matches of a regular expression, each with its offsets and line; errors come back as text."""
        if not isinstance(max_hits, int) or isinstance(max_hits, bool) or max_hits < 1:
            return f"error: max_hits must be a positive integer, got {max_hits!r}"
        max_hits = min(max_hits, MAX_GREP_HITS)
        try:
            compiled = regex.compile(pattern, regex.MULTILINE)
        except (regex.error, TypeError, ValueError) as exc:
            return f"error: the pattern {pattern!r} is not a valid regular expression: {exc}"
        hits: list[str] = []
        try:
            # concurrent: the match runs without the GIL, so a tool thread does not slow the event loop.
            for found in compiled.finditer(self.text, concurrent=True, timeout=GREP_TIMEOUT_SECONDS):
                if found.end() == found.start():
                    continue
                _, line = self.line_at(found.start())
                hits.append(f"[{found.start()}-{found.end()}] {line}")
                if len(hits) >= max_hits:
                    break
        except TimeoutError:
            return (
                f"error: the pattern {pattern!r} took more than {GREP_TIMEOUT_SECONDS:g}s to match and was "
                f"stopped after {len(hits)} hits; use a simpler pattern (no nested repetition)"
            )
        if not hits:
            return f"no match for {pattern!r}"
        more = " (the hit limit was reached; more may exist)" if len(hits) >= max_hits else ""
        return f"{len(hits)} matches for {pattern!r}{more}:\n" + "\n".join(hits)

    def search(self, query: str, k: int, rank: Callable[[str], list[int]] | None) -> Steps[str]:
        """The ``k`` leaves most relevant to ``query``: offsets, score (query words found) and a snippet.

        Written as steps: the query's words are counted in the leaves a slice at a time,
        with a pause between slices (:mod:`rlm_graph.steps`).

        Args:
            query: The query.
            k: How many spans.
            rank: Ranks the leaves (a retriever's index); ``None`` ranks by query words found.

        Returns:
            The result text.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            return f"error: k must be a positive integer, got {k!r}"
        words = {word for word in _WORD.findall(query.lower()) if len(word) > 2}
        if not words:
            return f"error: the query {query!r} has no words to search for"
        k = min(k, MAX_SEARCH_HITS, len(self.leaves))
        word_pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(words))) + r")\b", re.IGNORECASE)
        scores: list[int] = []
        counted = 0
        for leaf in self.leaves:
            scores.append(len(word_pattern.findall(self.text, leaf.start, leaf.end)))
            counted += leaf.end - leaf.start
            if counted >= _SEARCH_SLICE_CHARS:
                counted = 0
                yield
        order = rank(query) if rank is not None else sorted(range(len(self.leaves)), key=lambda i: -scores[i])
        lines = []
        for position in [i for i in order if scores[i] > 0][:k]:
            leaf = self.leaves[position]
            found = word_pattern.search(self.text, leaf.start, leaf.end)
            around = max(leaf.start, found.start() - _SNIPPET_CHARS // 2) if found else leaf.start
            snippet = " ".join(self.text[around : min(leaf.end, around + _SNIPPET_CHARS)].split())
            lines.append(f"[{leaf.start}-{leaf.end}] score={scores[position]} ...{snippet}...")
        if not lines:
            return f"no span mentions any word of {query!r}"
        return f"{len(lines)} best spans for {query!r} (score: query words found):\n" + "\n".join(lines)

    def peek(self, start: int, end: int, limit: int, counter: TokenCounter) -> tuple[str, tuple[int, int] | None]:
        """The text of ``[start, end)``, cut to ``limit`` tokens, saying so when cut, and the range shown."""
        if (problem := self.check_span(start, end)) is not None:
            return f"error: {problem}", None
        text, cut = cut_to_tokens(self.text[start:end], limit, counter)
        shown = (start, start + len(text))
        if cut:
            return (
                f"[characters {start}-{start + len(text)} of {start}-{end}; cut to fit, peek further from "
                f"{start + len(text)}]\n{text}"
            ), shown
        return f"[characters {start}-{end}]\n{text}", shown


_documents: weakref.WeakKeyDictionary[RunResources, NavDocument] = weakref.WeakKeyDictionary()
_documents_lock = threading.Lock()


def plan_nav_document(
    resources: RunResources,
    document: Callable[[], str],
    part_tokens: int,
    count_many: Callable[[Sequence[str]], list[int]],
) -> Steps[NavDocument]:
    """The run's :class:`NavDocument`, planned on first use (as steps) and kept as long as the run's resources.

    Args:
        resources: The run's shared resources (their text is set too, for nested reads).
        document: Gives the neutralized document (called only on first use).
        part_tokens: Most tokens per leaf.
        count_many: Batch token counter (memoized per run).

    Returns:
        The planned document.
    """
    with _documents_lock:
        found = _documents.get(resources)
        if found is None:
            text = resources.text if resources.text is not None else document()
            resources.text = text
    if found is not None:
        return found
    planned = yield from plan_leaves_in_steps(text, part_tokens=part_tokens, count_many=count_many)
    leaves = drop_blank(text, planned)
    planned_document = NavDocument(
        text=text, leaves=leaves, tokens=sum(leaf.tokens for leaf in leaves), count_many=count_many
    )
    with _documents_lock:
        # The navigate node plans before any tool runs; should two callers plan at once, the first plan stands.
        return _documents.setdefault(resources, planned_document)
