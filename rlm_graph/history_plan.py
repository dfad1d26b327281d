"""The planner behind :func:`rlm_graph.history.create_history_hook`.

Splits a thread into recent turns (kept verbatim, from a start that moves a block at a
time) and older turns (a transcript with offsets mapped to message ids), decides from
word statistics whether the latest user message is about the older turns, and turns the
analysis graph's answer into a short digest citing message ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.calls import CallSteps, RunnableCall, adrive, drive
from rlm_graph.context import RLMContext
from rlm_graph.options import default_output_tokens
from rlm_graph.progress import format_message
from rlm_graph.retrieval import BM25Retriever
from rlm_graph.tokens import TokenCounter, counter_for_model, safety_margin

__all__ = ["HistoryPlan", "HistoryPlanner"]

_TOKENS_PER_MESSAGE = 4  # what a chat format adds per message, roughly; only used inside budgets with slack
_MARGIN = 0.2  # share of the question an older turn must cover beyond the best recent turn
_MIN_DIGEST_TOKENS = 64  # below this a digest could not say anything useful
_DIGEST_KIND = "answer about the earlier messages"  # the cut note's {kind} when the digest's answer is cut
_NOTE_SLACK = 8  # the note's figures may grow by a few tokens once filled in, and seams may merge differently


@dataclass
class HistoryPlan:
    """What the chat model gets for one call."""

    messages: list[BaseMessage]
    """The model's input: system messages, recent turns, the digest inside the latest user message."""
    reply: str | None = None
    """Set when the latest message does not fit: the reply to give instead of calling the model."""
    older: int = 0
    """Messages left out of the recent turns."""
    cited: list[str] = field(default_factory=list)
    """Message ids the digest cites."""
    looked_back: bool = False
    """Whether the older turns were read."""


def _role(message: BaseMessage) -> str:
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, ToolMessage):
        return "tool"
    return "assistant" if isinstance(message, AIMessage) else message.type


def _message_id(message: BaseMessage, index: int) -> str:
    return message.id or f"#{index}"


class HistoryPlanner:
    """Plans each chat-model call of a long thread (see :func:`rlm_graph.history.create_history_hook`)."""

    def __init__(
        self,
        model: BaseChatModel,
        graph: CompiledStateGraph,
        *,
        recent_tokens: int,
        digest_tokens: int,
        context_window: int | None,
        max_output_tokens: int | None,
        max_cited: int,
        look_back: Literal["auto", "always", "never"],
        look_back_coverage: float,
        token_counter: TokenCounter | None,
        history_question: str,
        digest_template: str,
        too_long_message: str,
        cut_note: str,
        progress_messages: Mapping[str, str] | None,
    ) -> None:
        profile = getattr(model, "profile", None) or {}
        window = context_window or (profile.get("max_input_tokens") if isinstance(profile, Mapping) else None)
        if not isinstance(window, int) or window <= 0:
            msg = (
                f"the context window of {type(model).__name__} is unknown: pass it, "
                "e.g. create_history_hook(model, context_window=32768)"
            )
            raise ValueError(msg)
        if recent_tokens <= 0 or digest_tokens <= 0:
            msg = "recent_tokens and digest_tokens must be positive"
            raise ValueError(msg)
        self.graph = graph
        self.counter = token_counter or counter_for_model(model)
        output = max_output_tokens if max_output_tokens is not None else default_output_tokens(window)
        self.input_budget = window - safety_margin(self.counter, window) - output
        self.recent_tokens = recent_tokens
        self.digest_tokens = min(digest_tokens, max(0, self.input_budget // 4))
        self.max_cited = max_cited
        self.look_back = look_back
        self.look_back_coverage = look_back_coverage
        self.history_question = history_question
        self.digest_template = digest_template
        self.too_long_message = too_long_message
        self.cut_note = cut_note
        self.templates = dict(progress_messages or {})
        self.retriever = BM25Retriever()

    # -- events -------------------------------------------------------------------------------------------
    def _progress(self, status: str, key: str, **fields: Any) -> None:
        try:
            write = get_stream_writer()
        except (RuntimeError, KeyError):  # called outside a graph run: no stream to write to
            return
        # format_message picks plural forms ("1 earlier message") and keeps unknown fields as written.
        message = format_message(self.templates, key, **fields)
        total = fields.get("count", 0)
        write({"type": "progress", "stage": "history", "status": status, "message": message, "depth": 0,
               "done": total if status == "done" else 0, "total": total, "span": None, "scope": [0, 0],
               "path": []})

    # -- planning -----------------------------------------------------------------------------------------
    def _tokens(self, messages: Sequence[BaseMessage]) -> list[int]:
        return [count + _TOKENS_PER_MESSAGE for count in self.counter.count_many([m.text for m in messages])]

    def _start(self, turns: list[BaseMessage], sizes: list[int], latest: int, room: int) -> int:
        """First recent turn: stable between calls, so the prompt prefix stays cacheable.

        Candidate starts are the first user message of each block of ``room / 2`` tokens,
        counted from the thread's start; earlier messages never change, so neither do the
        candidates. The earliest candidate whose suffix fits is taken: it only moves
        forward, a block at a time, as the thread grows.
        """
        block = max(1, room // 2)
        suffix = [0] * (len(turns) + 1)
        for index in range(len(turns) - 1, -1, -1):
            suffix[index] = suffix[index + 1] + sizes[index]
        seen_blocks: set[int] = set()
        before = 0
        for index, turn in enumerate(turns[: latest + 1]):
            bucket = before // block
            before += sizes[index]
            if not isinstance(turn, HumanMessage) or bucket in seen_blocks:
                continue
            seen_blocks.add(bucket)
            if suffix[index] <= room:
                return index
        # No block start fits: the most recent user messages that fit, else the latest alone.
        for index in range(latest + 1):
            if isinstance(turns[index], HumanMessage) and suffix[index] <= room:
                return index
        return latest

    def plan(self, messages: Sequence[AnyMessage], system: Sequence[BaseMessage] = ()) -> tuple[HistoryPlan, Any]:
        """Split the thread; return the plan and, when older turns must be read, the analysis input."""
        head = [m for m in messages if isinstance(m, SystemMessage)]
        turns = [m for m in messages if not isinstance(m, SystemMessage)]
        humans = [i for i, m in enumerate(turns) if isinstance(m, HumanMessage)]
        if not humans:
            return HistoryPlan(messages=list(messages)), None
        latest = humans[-1]
        sizes = self._tokens(turns)
        fixed = sum(self._tokens([*system, *head])) + _TOKENS_PER_MESSAGE * 3
        # Only the user's own message can be too long. What follows it in this turn (the agent's
        # tool calls and their results) is the agent's doing: it is cut to fit, never blamed on the user.
        if fixed + sizes[latest] > self.input_budget:
            self._progress("failed", "history.too_long")
            reply = self.too_long_message.format(tokens=sizes[latest], limit=max(0, self.input_budget - fixed))
            return HistoryPlan(messages=[], reply=reply), None
        allowance = self.input_budget - fixed - sizes[latest]
        if sum(sizes[latest + 1 :]) > allowance:
            # Cut to leave the digest's room too (older turns may still be asked about), unless
            # that would leave this turn less than half of what is left.
            room = max(allowance - self.digest_tokens, allowance // 2)
            turns, sizes = self._cut_this_turn(turns, sizes, latest, room)
        tail = sum(sizes[latest:])
        # The digest's room is always reserved, so the recent turns do not shift when it appears.
        room = min(self.recent_tokens, self.input_budget - fixed - self.digest_tokens)
        start = self._start(turns, sizes, latest, max(room, tail))
        older, recent = turns[:start], turns[start:]
        plan = HistoryPlan(messages=[*head, *recent], older=len(older))
        # What is left for the digest once the recent turns are in (less than reserved only
        # when the latest turn alone is larger than the recent-turns room).
        digest_room = min(self.digest_tokens, self.input_budget - fixed - sum(sizes[start:]))
        if not older or self.look_back == "never" or digest_room < _MIN_DIGEST_TOKENS:
            return plan, None
        question = turns[latest].text
        if self.look_back == "auto" and not self._older_relevant(turns[: latest + 1], start, question):
            self._progress("skipped", "history.recent", count=len(older))
            return plan, None
        transcript, spans = self._transcript(older)
        self._progress("running", "history.started", count=len(older))
        return plan, (transcript, spans, question, latest - start + len(head), digest_room)

    def _cut_this_turn(
        self, turns: list[BaseMessage], sizes: list[int], latest: int, allowance: int
    ) -> tuple[list[BaseMessage], list[int]]:
        """Cut this turn's largest messages (after the user's) to one size, so the turn fits ``allowance``.

        The cap is the largest size at which the messages, each kept whole or cut to
        the cap, fit together: small results stay whole and the large ones share the
        rest alike. Each cut message keeps its start (and its ids, so tool calls stay
        paired with their results) and ends with :attr:`cut_note`, so the model knows
        it sees only part and can say so.
        """
        after = sizes[latest + 1 :]
        cap, left = 0, allowance
        for rank, size in enumerate(sorted(after)):
            if size * (len(after) - rank) > left:
                cap = left // (len(after) - rank)
                break
            left -= size
        turns, sizes = list(turns), list(sizes)
        cut = 0
        for index in range(latest + 1, len(turns)):
            message = turns[index]
            if sizes[index] <= cap:
                continue
            kind = "tool result" if isinstance(message, ToolMessage) else "message"
            note = self.cut_note.format(kind=kind, tokens=sizes[index] - _TOKENS_PER_MESSAGE, shown=0)
            room = max(0, cap - _TOKENS_PER_MESSAGE - self.counter.count(note) - _NOTE_SLACK)
            shown = self._truncate(message.text, room)
            note = self.cut_note.format(
                kind=kind, tokens=sizes[index] - _TOKENS_PER_MESSAGE, shown=self.counter.count(shown)
            )
            turns[index] = message.model_copy(update={"content": f"{shown}\n\n{note}"})
            sizes[index] = self._tokens([turns[index]])[0]
            cut += 1
        self._progress("done", "history.cut", count=cut)
        return turns, sizes

    def _older_relevant(self, turns: Sequence[BaseMessage], start: int, question: str) -> bool:
        """Whether the question is about older turns, from word statistics alone (no model call).

        Each question word is weighted by its inverse document frequency over the turns
        (BM25's IDF), so a name, a code or a date counts far more than a common word. A
        turn covers the share of that weight whose words it contains. Older turns are read
        when the best older turn covers at least ``look_back_coverage`` of the question and
        at least a fifth of it more than any recent turn does.
        """
        words = set(self.retriever.tokenize(question))
        texts = [m.text for m in turns[:-1]]  # the question itself is not evidence
        if not words or not texts:
            return False
        present = [words & set(self.retriever.tokenize(text)) for text in texts]
        frequency = {word: sum(word in found for found in present) for word in words}
        weight = {word: math.log(1 + len(texts) / count) for word, count in frequency.items() if count}
        total = sum(weight.values())
        if not total:
            return False
        coverage = [sum(weight.get(word, 0.0) for word in found) / total for found in present]
        best_older = max(coverage[:start], default=0.0)
        # Recent turns are in the prompt already: older ones must add clearly more.
        return best_older >= self.look_back_coverage and best_older >= max(coverage[start:], default=0.0) + _MARGIN

    @staticmethod
    def _transcript(older: Sequence[BaseMessage]) -> tuple[str, list[tuple[int, int, str]]]:
        pieces: list[str] = []
        spans: list[tuple[int, int, str]] = []
        offset = 0
        for index, message in enumerate(older):
            ident = _message_id(message, index)
            text = f"[{ident}] {_role(message)}: {message.text}\n\n"
            pieces.append(text)
            spans.append((offset, offset + len(text), ident))
            offset += len(text)
        return "".join(pieces), spans

    def _cite(self, out: Mapping[str, Any], transcript: str, spans: list[tuple[int, int, str]]) -> list[str]:
        """Message ids behind the answer: turns in the cited spans that hold the answer's distinctive words.

        A word is distinctive when few turns of the transcript use it (codes, names), so
        common words of the answer or of its notes do not cite every turn.
        """
        cited = out.get("citations") or []
        inside = [s for s in spans if any(c["start"] < s[1] and s[0] < c["end"] for c in cited)]
        answer = str(out.get("answer", ""))
        words_of = [set(self.retriever.tokenize(transcript[a:b].split(" ", 2)[-1])) for a, b, _ in spans]
        frequency: dict[str, int] = {}
        for words in words_of:
            for word in words:
                frequency[word] = frequency.get(word, 0) + 1
        rare = max(2, len(spans) // 200)
        distinctive = {w for w in self.retriever.tokenize(answer) if 0 < frequency.get(w, 0) <= rare}
        if not distinctive:
            return []
        position = {ident: i for i, (_, _, ident) in enumerate(spans)}
        hits = [(len(distinctive & words_of[position[ident]]), position[ident], ident) for _, _, ident in inside]
        hits = sorted((h for h in hits if h[0]), key=lambda h: (-h[0], h[1]))
        return [ident for _, _, ident in hits[: self.max_cited]]

    def _truncate(self, text: str, limit: int) -> str:
        while text and self.counter.count(text) > limit:
            text = text[: max(0, int(len(text) * 0.9) - 1)]
        return text

    def _fitted_answer(self, answer: str, room: int) -> str:
        """The analysis answer within ``room`` tokens; cut, it ends with :attr:`cut_note` (never cut silently)."""
        tokens = self.counter.count(answer)
        if tokens <= room:
            return answer
        note = self.cut_note.format(kind=_DIGEST_KIND, tokens=tokens, shown=tokens)
        shown = self._truncate(answer, max(0, room - self.counter.count(note) - _NOTE_SLACK))
        shown_tokens = self.counter.count(shown)
        self._progress("done", "history.digest_cut", shown=shown_tokens, tokens=tokens)
        return f"{shown}\n{self.cut_note.format(kind=_DIGEST_KIND, tokens=tokens, shown=shown_tokens)}"

    def finish(self, plan: HistoryPlan, job: Any, out: Mapping[str, Any]) -> HistoryPlan:
        """Put the digest of the analysis answer into the latest user message of the model's input."""
        transcript, spans, _, position, digest_room = job
        plan.cited = self._cite(out, transcript, spans)
        plan.looked_back = True
        sources = ", ".join(plan.cited) or "none"
        frame = self.digest_template.format(count=plan.older, answer="", sources=sources)
        answer = self._fitted_answer(str(out.get("answer", "")).strip(), digest_room - self.counter.count(frame))
        digest = self._truncate(self.digest_template.format(count=plan.older, answer=answer, sources=sources),
                                digest_room)
        latest = plan.messages[position]
        content = (
            f"{latest.content}\n\n{digest}"
            if isinstance(latest.content, str)
            else [*latest.content, {"type": "text", "text": digest}]
        )
        plan.messages[position] = latest.model_copy(update={"content": content})
        self._progress("done", "history.done", count=plan.older, cited=sources)
        return plan

    def analysis_input(self, job: Any) -> dict[str, str]:
        transcript, _, question, _, _ = job
        return {"document": transcript, "question": self.history_question.format(message=question)}

    # -- running ------------------------------------------------------------------------------------------
    @staticmethod
    def _config() -> RunnableConfig:
        # Like create_document_node: the analysis writes no checkpoints into the chat thread.
        return {"configurable": {CONFIG_KEY_CHECKPOINTER: None, "thread_id": None}, "run_name": "history"}

    def _steps(self, messages: Sequence[AnyMessage], system: Sequence[BaseMessage]) -> CallSteps:
        """The plan, written once for sync and async: the look-back analysis is its one request."""
        plan, job = self.plan(messages, system)
        if job is None:
            return plan
        context = {"context": RLMContext(mode="focused")}
        out = yield RunnableCall(self.graph, self.analysis_input(job), self._config(), context)
        return self.finish(plan, job, out)

    def run(self, messages: Sequence[AnyMessage], system: Sequence[BaseMessage] = ()) -> HistoryPlan:
        """Plan the model's input for ``messages`` (sync)."""
        return drive(None, self._steps(messages, system))

    async def arun(self, messages: Sequence[AnyMessage], system: Sequence[BaseMessage] = ()) -> HistoryPlan:
        """Plan the model's input for ``messages`` (async)."""
        return await adrive(None, self._steps(messages, system))

    @staticmethod
    def update(plan: HistoryPlan) -> dict[str, Any]:
        if plan.reply is None:
            return {"llm_input_messages": plan.messages}
        # A pre_model_hook cannot skip the model call: ask the model to relay the reply, with the
        # oversized message left out so the call fits.
        relay = f"Reply to the user with exactly this text and nothing else:\n{plan.reply}"
        return {"llm_input_messages": [SystemMessage(relay), HumanMessage("(message too long to show)")]}
