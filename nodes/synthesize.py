"""``synthesize``: combine the parts' findings into one answer with citations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.types import Command
from rlm_graph.nodes.entry import node_runnable
from rlm_graph.nodes.sends import next_round_command
from rlm_graph.state import Citation, PartError, RLMState, Usage, merge_usage

from rlm_graph.calls import CallSteps, ModelCall
from rlm_graph.errors import AllPartsFailedError
from rlm_graph.focus import COMPLETENESS_INSTRUCTION, FocusRound, split_complete
from rlm_graph.level import Level
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import (
    FINAL_INSTRUCTION,
    FINDING_TEMPLATE,
    NO_RELEVANT_INFORMATION,
    PARTIAL_INSTRUCTION,
    build_messages,
    cited_numbers,
    is_no_relevant,
    link_citation_markers,
    neutralize_tags,
    strip_citation_markers,
)
from rlm_graph.replies import Reply, Unreadable, ask, ask_each
from rlm_graph.reply_forms import FOCUSED_SYNTHESIS_FORM, SYNTHESIS_FORM, verdict_only
from rlm_graph.retrieval import term_spans
from rlm_graph.sentences import rank_sentences
from rlm_graph.settings import Settings

_TRUNCATION_NOTE = " [finding truncated to fit the synthesis window]"


@dataclass(slots=True)
class _Item:
    text: str
    citations: list[Citation]
    span: tuple[int, int]
    original_chars: int = 0
    """Length before a truncation (0: never truncated)."""


def _union(citations: list[Citation]) -> list[Citation]:
    """Citations in document order, one per span; a quote-level citation keeps its ``quote`` and ``part``."""
    unique: dict[tuple[int, int], Citation] = {}
    for citation in citations:
        unique.setdefault((citation["start"], citation["end"]), citation)
    return [dict(unique[span]) for span in sorted(unique)]  # type: ignore[misc]


def _supporting(sentence: str, citations: list[Citation]) -> list[Citation]:
    """The citations of one finding that an answer sentence uses.

    A finding often holds several quotes; a sentence made from one of them cites that
    one: the quotes holding at least half of the sentence's content words. When none
    does (a paraphrase, a sentence joining several quotes), all of the finding's.
    """
    if len(citations) <= 1:
        return citations
    texts = [c.get("quote") or c.get("sentence", {}).get("text", "") for c in citations]
    chosen = rank_sentences(sentence, texts, len(texts), min_share=0.5)
    return [citations[index] for index in sorted(chosen)] or citations


def _linked(answer: str, items: list[_Item]) -> tuple[str, list[Citation]]:
    """The final answer without markers, and the citations its sentences use, each with those sentences.

    An answer that cites no finding keeps every finding's citations, with empty
    ``answer_spans`` (the model did not say which sentence uses which).
    """
    text, links = link_citation_markers(answer, range(1, len(items) + 1))
    spans: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for number, sentences in links.items():
        for start, end in sentences:
            for citation in _supporting(text[start:end], items[number - 1].citations):
                spans.setdefault((citation["start"], citation["end"]), set()).add((start, end))
    cited = [c for number in sorted(links) for c in items[number - 1].citations if (c["start"], c["end"]) in spans]
    citations = _union(cited or [c for item in items for c in item.citations])
    for citation in citations:
        cited_at = sorted(spans.get((citation["start"], citation["end"]), ()))
        citation["answer_spans"] = [{"start": start, "end": end} for start, end in cited_at]
    return text, citations


def _within(citations: list[Citation], length: int) -> list[Citation]:
    """Answer spans cut to an answer shortened at its end (a focused round's ``COMPLETE:`` line removed)."""
    for citation in citations:
        if "answer_spans" in citation:
            citation["answer_spans"] = [
                {"start": span["start"], "end": min(span["end"], length)}
                for span in citation["answer_spans"]
                if span["start"] < length
            ]
    return citations


def _findings_block(items: list[_Item]) -> str:
    return "\n".join(
        FINDING_TEMPLATE.format(number=number, text=neutralize_tags(item.text))
        for number, item in enumerate(items, start=1)
    )


class _Synthesis:
    """Synthesis of one invocation, written once for sync and async drivers."""

    def __init__(
        self,
        settings: Settings,
        run: Level,
        question: str,
        depth: int,
        progress: ProgressWriter,
        final_instruction: str | None = None,
    ) -> None:
        self.settings = settings
        self.run = run
        self.final_instruction = final_instruction
        self.question = question
        self.depth = depth
        self.progress = progress
        self.usage: Usage = {}
        self.errors: list[PartError] = []
        self.overhead = settings.synthesis_overhead(question)

    def _call(self, items: list[_Item], instruction: str) -> ModelCall:
        messages = build_messages(
            self.settings.system_prompt,
            self.settings.synthesize_prompt,
            question=self.question,
            findings=_findings_block(items),
            final_instruction=instruction,
        )
        count = self.settings.counter.count_messages(messages)
        return ModelCall(messages, count, urgent=True, large=True, name="synthesize", kind="synthesize")

    def _fit_alone(self, item: _Item, room: int) -> _Item:
        """Shorten one finding that is larger than a whole synthesis call."""
        text = item.text
        while self.settings.finding_block_tokens([text + _TRUNCATION_NOTE])[0] > room and len(text) > 1:
            text = text[: int(len(text) * 0.9)]
        original = item.original_chars or len(item.text)
        error: PartError = {
            "start": item.span[0],
            "end": item.span[1],
            "error": f"finding of {original} characters was truncated to {len(text)} to fit the window",
            "kind": "truncated",
        }
        # Cut again (to fit beside another finding): one entry per finding, with its final size.
        self.errors = [e for e in self.errors if (e["start"], e["end"]) != item.span] + [error]
        return _Item(text + _TRUNCATION_NOTE, item.citations, item.span, original)

    def _groups(self, items: list[_Item]) -> list[list[_Item]]:
        room = self.settings.input_window - self.overhead
        sizes = self.settings.finding_block_tokens([item.text for item in items])
        groups: list[list[_Item]] = []
        current: list[_Item] = []
        used = 0
        for item, size in zip(items, sizes, strict=True):
            if size > room:
                item, size = self._fit_alone(item, room), room
            if current and used + size > room:
                groups.append(current)
                current, used = [], 0
            current.append(item)
            used += size
        groups.append(current)
        return groups

    def steps(self, items: list[_Item]) -> CallSteps:
        final_instruction = self.final_instruction or (FINAL_INSTRUCTION if self.depth == 0 else PARTIAL_INSTRUCTION)
        while True:
            call = self._call(items, final_instruction)
            if call.prompt_tokens <= self.settings.input_window:
                break
            # Too many findings for one call: combine them group by group first.
            groups = self._groups(items)
            merged = [group for group in groups if len(group) > 1]
            if not merged:
                # No two findings fit together: shorten the long ones so pairs fit.
                half = (self.settings.input_window - self.overhead) // 2
                sizes = self.settings.finding_block_tokens([item.text for item in items])
                items = [self._fit_alone(i, half) if n > half else i for i, n in zip(items, sizes, strict=True)]
                continue
            self.progress.progress("synthesis", "processing", "synthesis.processing", done=0, total=len(merged))
            calls = [self._call(group, PARTIAL_INSTRUCTION) for group in merged]
            replies: list[Reply[str]] = yield from ask_each(self.run, calls, SYNTHESIS_FORM)
            answers = iter(replies)
            next_items: list[_Item] = []
            for group in groups:
                if len(group) == 1:
                    next_items.append(group[0])
                    continue
                reply = next(answers)
                span = (group[0].span[0], group[-1].span[1])
                self._count(reply, span)
                if reply.value is None or is_no_relevant(reply.value):
                    continue
                citations = _union([c for item in group for c in item.citations])
                text = strip_citation_markers(reply.value, range(1, len(group) + 1))
                next_items.append(_Item(text, citations, span))
            self.progress.progress(
                "synthesis", "processing", "synthesis.processing", done=len(merged), total=len(merged)
            )
            items = next_items
            if not items:
                return NO_RELEVANT_INFORMATION, []
        if self.depth == 0 and self.final_instruction is None:
            # The final answer (a focused round's reply may still lead to another round): stream it.
            call = replace(call, streams=True, markers=len(items))
        focused = self.final_instruction is not None and COMPLETENESS_INSTRUCTION in self.final_instruction
        form = FOCUSED_SYNTHESIS_FORM if focused else SYNTHESIS_FORM
        reply = yield from ask(self.run, call, form)
        span = (items[0].span[0], items[-1].span[1])
        self._count(reply, span)
        answer = reply.value
        if answer is None and focused:
            # Its COMPLETE line could not be read: the answer still can be, and counts as not complete
            # (reading goes on, and the note says the answer may be incomplete), so the error is
            # reported without a note of text not covered.
            # The first reply is the one that answered the task (the second was asked for the line).
            body = SYNTHESIS_FORM.parse(split_complete(reply.first_reply)[0])
            if not isinstance(body, Unreadable):
                answer = body
        if answer is None or is_no_relevant(split_complete(answer)[0]):
            return (f"{NO_RELEVANT_INFORMATION}\nCOMPLETE: no" if focused else NO_RELEVANT_INFORMATION), []
        if self.depth == 0:
            return _linked(answer, items)
        valid = range(1, len(items) + 1)
        cited = [items[n - 1] for n in sorted(cited_numbers(answer)) if n in valid] or items
        return strip_citation_markers(answer, valid), _union([c for item in cited for c in item.citations])

    def _count(self, reply: Reply[str], span: tuple[int, int]) -> None:
        """Add a reply's usage, and its error when it could not be read."""
        self.usage = merge_usage(self.usage, reply.usage)
        what = f"the synthesis of the findings from characters {span[0]}-{span[1]}"
        self.errors.extend(reply.errors(span[0], span[1], what))


def _prepare(run: Level, state: RLMState) -> tuple[ProgressWriter, list[_Item]]:
    offset = state.get("offset", 0)
    scope = offset, offset + state.get("chars", len(state["document"]))
    progress = run.writer(scope)
    findings = sorted(state.get("findings") or [], key=lambda f: f["start"])
    parts = state.get("parts") or []
    errors = state.get("errors") or []
    # A focused round whose parts all failed found nothing yet: the next round reads on.
    more_to_read = run.depth == 0 and bool(state.get("pending"))
    if not findings and errors and not more_to_read:
        first = errors[0]
        msg = (
            f"all {len(parts)} parts of characters {scope[0]}-{scope[1]} failed, so there is nothing to "
            f"answer from; first failure, characters {first['start']}-{first['end']}: {first['error']}"
        )
        raise AllPartsFailedError(msg)
    items = [
        _Item(f["text"], list(f["citations"]), (f["start"], f["end"]))
        for f in findings
        if not is_no_relevant(f["text"])
    ]
    if run.first_attempt:  # a retry was announced by its own event (_announce_retry)
        progress.progress("synthesis", "started", "synthesis.started", total=len(items))
    return progress, items


def _output(
    state: RLMState,
    run: Level,
    progress: ProgressWriter,
    synthesis: _Synthesis,
    answer: str,
    citations: list[Citation],
    focused: FocusRound,
    found_nothing: bool = False,
) -> dict[str, Any]:
    usage = synthesis.usage
    coverage = None
    if run.depth == 0:
        # Only the final answer speaks to the user: it says what was not read or was cut.
        # An unreadable COMPLETE line alone is reported, but covers no text the answer lacks.
        errors = [e for e in [*(state.get("errors") or []), *synthesis.errors] if not verdict_only(e)]
        coverage = focused.coverage(state.get("chars", len(state["document"])), errors)
        if found_nothing and is_no_relevant(answer):
            # Every reading said "nothing": say so if the search index finds the question's terms.
            text = run.resources.text if run.resources.text is not None else state.get("document", "")
            read = [(part["start"], part["end"]) for part in state.get("parts") or []]
            found = term_spans(state["question"], text, run.offset)
            suspected = [span for span in found if any(a <= span[0] and span[1] <= b for a, b in read)]
            coverage = dataclasses.replace(coverage, suspected=suspected)
        usage = merge_usage(usage, coverage.usage())
    answer, citations = run.settle(answer, citations, coverage)
    # "Answer ready" is said once, by the run; a nested level only combined a part's findings.
    done_key = "synthesis.done" if run.depth == 0 else "synthesis.nested_done"
    progress.progress("synthesis", "done", done_key, done=1, total=1)
    run.finish(progress, merge_usage(state.get("usage"), usage))
    return {"answer": answer, "citations": citations, "usage": usage, "errors": synthesis.errors}


def _short_cut(settings: Settings, run: Level, items: list[_Item]) -> tuple[str, list[Citation]] | None:
    """Answers that need no synthesis call."""
    if not items:
        return NO_RELEVANT_INFORMATION, []
    if run.depth == 0:
        return None
    # Nested: the parent budgets each finding at max_output_tokens, so findings that
    # fit that together go up as they are; the parent's synthesis combines them.
    if len(items) == 1 or sum(settings.finding_block_tokens([i.text for i in items])) <= settings.max_output_tokens:
        return "\n".join(item.text for item in items), _union([c for item in items for c in item.citations])
    return None


def _steps(settings: Settings, run: Level, state: RLMState) -> CallSteps:
    progress, items = _prepare(run, state)
    focused = FocusRound(settings, state, run, bool(items))
    if focused.read_on_without_synthesis:
        return next_round_command(run, state, focused.next_round(progress, {}))
    synthesis = _Synthesis(settings, run, state["question"], run.depth, progress, focused.final_instruction)
    answer, citations = _short_cut(settings, run, items) or (yield from synthesis.steps(items))
    if focused.wants_more(answer):
        chosen = focused.next_round(progress, synthesis.usage)
        if synthesis.errors:
            # This round's unreadable or shortened replies are reported with the run's errors.
            chosen.update["errors"] = synthesis.errors
        return next_round_command(run, state, chosen)
    focused.report(progress)
    answer = split_complete(answer)[0] if state.get("focus_cap") else answer
    citations = _within(citations, len(answer))
    return _output(state, run, progress, synthesis, answer, citations, focused, found_nothing=not items)


def _announce_retry(run: Level, state: RLMState, fields: dict[str, Any]) -> None:
    offset = state.get("offset", 0)
    progress = run.writer((offset, offset + state.get("chars", len(state["document"]))))
    progress.progress("synthesis", "retrying", "retry.synthesis", **fields)


def make_synthesize(settings: Settings) -> Runnable[RLMState, dict[str, Any] | Command]:
    """Build the ``synthesize`` node (sync and async).

    Args:
        settings: The graph's settings.

    Returns:
        The node runnable.
    """
    return node_runnable(
        "synthesize", settings, lambda run, state: _steps(settings, run, state), on_retry=_announce_retry
    )
