"""Build-time settings shared by the nodes, and the per-invocation view of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langgraph.cache.base import FullKey
from langgraph.config import get_config
from langgraph.runtime import get_runtime

from rlm_graph.cache import ReplyCache, model_identity
from rlm_graph.context import RLMContext
from rlm_graph.coverage import Coverage, settle_answer
from rlm_graph.errors import EmptyReplyError, RLMError, is_transient_error, retry_after_seconds
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import (
    FINDING_TEMPLATE,
    NO_RELEVANT_INFORMATION,
    PARTIAL_INSTRUCTION,
    add_cache_markers,
    build_messages,
    caches_automatically,
    is_no_relevant,
)
from rlm_graph.runs import RunResources, release, resources_for
from rlm_graph.splitter import Piece, split_units
from rlm_graph.state import Budget, Citation, ModelUsage, Usage
from rlm_graph.timeouts import ainvoke_within, invoke_within
from rlm_graph.tokens import TokenCounter

# Tokens kept free per call for where template and text meet: BPE may merge
# across the seam, and a counter's per-message framing can differ slightly.
SEAM_SLACK = 16
MIN_PART_TOKENS = 64
DEFAULT_PART_TOKENS = 16_384
"""Most document tokens per reading call unless ``part_tokens`` says otherwise.

Fitting the window is necessary, not sufficient: models read long prompts worse
("context rot"). RULER (Hsieh et al., 2024, "RULER: What's the Real Context Size of
Your Long-Context Language Models?") found that most models claiming 32K tokens or
more fall well below their 4K score by 32K-128K (GPT-4-1106: 96.6 at 4K, 93.2 at 32K,
81.2 at 128K; Llama 3.1 8B: 95.5, 87.4, 77.0; Mistral 7B: 93.6 at 4K, 75.4 at 32K),
while at 16K most stay within a few points of their 4K score. 16K keeps every read in
that range and still needs few calls: a 1M-token document is about 62 reads.
"""
# A text this many times longer in characters than the window cannot fit one call,
# so counting it first would only double the work.
MAX_CHARS_PER_TOKEN = 32
_OFFSET_PLACEHOLDER = 10**12

CONFIG_DEPTH = "rlm_depth"
CONFIG_OFFSET = "rlm_offset"
CONFIG_RUN_KEY = "rlm_run_key"
CONFIG_LEAVES = "rlm_leaves"
"""Config key of a nested invocation's leaves: ``[start, end, tokens]`` in root offsets."""


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One prompt to send, with its exact token count."""

    messages: list[BaseMessage] | Callable[[], list[BaseMessage]]
    """The prompt, or a function that builds it: a read's prompt is built only once
    the call holds a slot, so queued reads do not each hold a copy of their text."""
    prompt_tokens: int
    urgent: bool = False
    """Synthesis calls are urgent: they unblock a level, so they skip the queue of reads,
    and they draw on the budget reserved for synthesis (``RunResources.spend``)."""
    large: bool = False
    """Send to ``Settings.large_model`` when there is one (synthesis, direct answers, escalations)."""


@dataclass(frozen=True, slots=True)
class CallResult:
    """A model reply and what it cost."""

    text: str
    usage: Usage


CallSteps = Generator[list[ModelCall], list[CallResult], Any]
"""Node logic written once for sync and async: it yields batches of calls and
receives their results, so a driver can run a batch in parallel."""


@dataclass(kw_only=True)
class Settings:
    """Everything the nodes need, fixed when the graph is built."""

    model: BaseChatModel
    counter: TokenCounter
    context_window: int
    max_output_tokens: int
    safety_margin: int
    max_concurrency: int
    max_depth: int
    max_fanout: int | None
    chunk_overlap: int
    max_llm_calls: int | None
    max_input_tokens: int | None
    on_budget: str
    system_prompt: str
    read_part_prompt: str
    direct_answer_prompt: str
    synthesize_prompt: str
    no_answer_message: str
    empty_document_message: str
    progress_messages: Mapping[str, str]
    large_model: BaseChatModel | None = None
    """Relay: reads synthesis, direct answers and escalated parts; ``model`` reads the rest."""
    escalate_below: float = 0.5
    """Relay: a reading whose stated confidence is below this is redone by ``large_model``."""
    prices: Mapping[str, tuple[float, ...]] | None = None
    """Per model role, price per million input, output and cached input tokens, for the usage ``cost``."""
    retrieval: Any = None
    """The focused-reading options (``rlm_graph.focus.FocusOptions``)."""
    part_tokens: int = DEFAULT_PART_TOKENS
    """Most document tokens per reading call (the window may allow fewer); per run ``RLMContext.part_tokens``."""
    call_timeout: float | None = None
    """Seconds one model call (one attempt) may take; ``None``: no limit."""
    graph: list[Runnable] = field(default_factory=list)
    """Holds the compiled graph once built, for nested invocations."""
    replies: ReplyCache | None = None
    """The reply cache (``None``: replies are not cached)."""
    model_identities: dict[str, str] = field(default_factory=dict)
    """``identity_of`` by role, filled on first use."""
    prompt_cache_markers: bool = False
    """Mark the end of each prompt's static prefix with ``cache_control`` (providers that need markers)."""

    @property
    def input_window(self) -> int:
        """Most prompt tokens one call may use."""
        return self.context_window - self.safety_margin - self.max_output_tokens - SEAM_SLACK

    def identity_of(self, role: str) -> str:
        """Stable text naming the model of a role and its settings (reply cache keys).

        Computed once per role: it reads the model's fields, which do not change after
        the graph is built.
        """
        if role not in self.model_identities:
            self.model_identities[role] = model_identity(self.model_for(role))
        return self.model_identities[role]

    def role_of(self, call: ModelCall) -> str:
        """Which model answers ``call``: ``"large_model"`` or ``"model"``."""
        return "large_model" if call.large and self.large_model is not None else "model"

    def model_for(self, role: str) -> BaseChatModel:
        """The chat model of a role."""
        return self.large_model if role == "large_model" and self.large_model is not None else self.model

    def wire_messages(self, messages: list[BaseMessage], role: str) -> list[BaseMessage]:
        """The messages as sent to a role's model: with prompt-cache markers when asked for.

        Markers are left out for providers that cache prefixes by themselves. The reply cache
        key is taken from the unmarked messages, so the option never empties it.
        """
        if not self.prompt_cache_markers or caches_automatically(self.model_for(role)):
            return messages
        return add_cache_markers(messages)

    def finding_block_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each finding takes inside a synthesis prompt."""
        blocks = [FINDING_TEMPLATE.format(number=9999, text=text) for text in texts]
        return [tokens + 2 for tokens in self.counter.count_many(blocks)]

    def synthesis_overhead(self, question: str) -> int:
        """Prompt tokens of a synthesis call without its findings."""
        messages = build_messages(
            self.system_prompt,
            self.synthesize_prompt,
            question=question,
            findings="",
            final_instruction=PARTIAL_INSTRUCTION,
        )
        return self.counter.count_messages(messages)

    def one_call_messages(self, text: str, question: str, depth: int, scope: tuple[int, int]) -> list[BaseMessage]:
        """The prompt that reads a whole (sub)document in one call.

        At depth 0 it asks for the answer; nested, the text is one part of a
        larger document and is read as a part.

        Args:
            text: The text, already passed through ``neutralize_tags``.
            question: The question.
            depth: Nesting depth.
            scope: Span of ``text`` in the root document.

        Returns:
            The messages.
        """
        if depth == 0:
            return build_messages(self.system_prompt, self.direct_answer_prompt, question=question, text=text)
        return build_messages(
            self.system_prompt, self.read_part_prompt, question=question, text=text, start=scope[0], end=scope[1]
        )

    def read_overhead(self, question: str) -> int:
        """Prompt tokens of a reading call without its text.

        Counted with the largest offsets a document can have, so it bounds every
        part's framing from above.
        """
        return self.counter.count_messages(
            build_messages(
                self.system_prompt,
                self.read_part_prompt,
                question=question,
                text="",
                start=_OFFSET_PLACEHOLDER,
                end=_OFFSET_PLACEHOLDER,
            )
        )

    def fits_one_call(
        self,
        text: str,
        question: str,
        scope: tuple[int, int],
        count_many: Callable[[Sequence[str]], list[int]],
        part_tokens: int | None = None,
    ) -> bool:
        """Whether a whole document (neutralized) can be answered with one call.

        Paragraph counts come first (through ``count_many``, which a run memoizes
        for ``split``); the exact prompt is counted only when it may fit. A document
        of more than ``part_tokens`` tokens is split even when the window could hold
        it: the point of the limit is reading quality, not fit.

        Args:
            text: The document, passed through ``neutralize_tags``.
            question: The question.
            scope: Span of ``text`` in the root document.
            count_many: Batch token counter.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            True if the document is within the part limit and the one-call prompt fits the input window.
        """
        limit = min(self.input_window, part_tokens or self.part_tokens)
        if len(text) > min(self.context_window, limit) * MAX_CHARS_PER_TOKEN:
            return False
        if sum(unit.tokens for unit in split_units(text, limit, count_many)) > limit:
            return False
        prompt = self.one_call_messages(text, question, 0, scope)
        return self.counter.count_messages(prompt) <= self.input_window

    def budget_for(self, question: str, part_tokens: int | None = None) -> Budget:
        """Token budgets of every call about ``question``.

        Parts hold at most ``part_tokens`` document tokens, or what the window leaves
        if that is less; synthesis and the fan-out still use the whole window.

        Args:
            question: The question.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            The part budget and the fan-out.

        Raises:
            ValueError: If the question leaves no room for document text, or the
                part limit no room for ``chunk_overlap``.
        """
        window_part = self.input_window - self.read_overhead(question)
        per_finding = self.max_output_tokens + self.finding_block_tokens([""])[0]
        fanout = (self.input_window - self.synthesis_overhead(question)) // per_finding
        if self.max_fanout is not None:
            fanout = min(fanout, self.max_fanout)
        if window_part < MIN_PART_TOKENS or fanout < 2:
            msg = (
                f"question is too long for this model: with a {self.context_window}-token window and "
                f"{self.max_output_tokens} tokens reserved for output, the prompts leave "
                f"{max(window_part, 0)} tokens for document text and room for {max(fanout, 0)} findings "
                f"per synthesis (need at least {MIN_PART_TOKENS} and 2). Shorten the question or "
                "lower max_output_tokens."
            )
            raise ValueError(msg)
        part = min(window_part, part_tokens or self.part_tokens)
        if self.chunk_overlap * 2 > part:
            msg = (
                f"chunk_overlap ({self.chunk_overlap}) must be at most half of a part ({part} tokens); "
                "lower chunk_overlap or raise part_tokens"
            )
            raise ValueError(msg)
        return {"part_tokens": part, "fanout": fanout}


def check_part_tokens(part_tokens: Any) -> int:
    """Validate a ``part_tokens`` option.

    Args:
        part_tokens: The value given.

    Returns:
        The value.

    Raises:
        ValueError: If it is not an int of at least ``MIN_PART_TOKENS``.
    """
    if isinstance(part_tokens, bool) or not isinstance(part_tokens, int) or part_tokens < MIN_PART_TOKENS:
        msg = (
            f"part_tokens must be an int of at least {MIN_PART_TOKENS} (document tokens per reading call; "
            f"{DEFAULT_PART_TOKENS} by default), got {part_tokens!r}"
        )
        raise ValueError(msg)
    return part_tokens


def _messages(call: ModelCall) -> list[BaseMessage]:
    return call.messages() if callable(call.messages) else call.messages


def model_usage(
    prices: Mapping[str, tuple[float, ...]] | None,
    role: str,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
) -> ModelUsage:
    """One call's entry of ``Usage.by_model``, priced when ``prices`` names the role.

    Args:
        prices: Price per million input and output tokens by role, and optionally per million
            cached input tokens (``(input, output, cached_input)``; without it cached input
            costs the input price).
        role: ``"model"`` or ``"large_model"``.
        input_tokens: The call's prompt tokens, cached ones included (as providers report them).
        output_tokens: The call's reply tokens.
        cached_input_tokens: Prompt tokens the provider read from its prompt cache.

    Returns:
        The entry.
    """
    entry: ModelUsage = {"llm_calls": 1, "input_tokens": input_tokens, "output_tokens": output_tokens}
    if cached_input_tokens:
        entry["cached_input_tokens"] = cached_input_tokens
    if prices and role in prices:
        price_in, price_out, *rest = prices[role]
        price_cached = rest[0] if rest else price_in
        fresh_input = input_tokens - cached_input_tokens
        billed = fresh_input * price_in + cached_input_tokens * price_cached + output_tokens * price_out
        entry["cost"] = billed / 1_000_000
    return entry


def _retry_wait(error: BaseException) -> float | None:
    return retry_after_seconds(error) if is_transient_error(error) else None


@dataclass(slots=True)
class Invocation:
    """Where a node runs: depth, offset in the root document, run resources, context."""

    settings: Settings
    depth: int
    offset: int
    run_key: str
    context: RLMContext | None
    resources: RunResources
    leaves: list[Piece] | None = None
    """The reading-call-sized leaves a nested invocation was handed; ``None`` at depth 0."""

    @classmethod
    def current(cls, settings: Settings, run_key: str) -> Invocation:
        """Read the running node's config and context.

        Args:
            settings: The graph's settings.
            run_key: Key of the run, from state or payload.

        Returns:
            The invocation view.
        """
        configurable = get_config().get("configurable", {})
        # The invocation's own key wins over the one in state: a run resumed from a
        # checkpoint belongs to the invocation that resumed it (rlm_graph.lifetime).
        run_key = configurable.get(CONFIG_RUN_KEY) or run_key
        try:
            context = get_runtime().context
        except Exception:  # noqa: BLE001 - no runtime outside a LangGraph run
            context = None
        if not isinstance(context, RLMContext):
            context = None

        def option(name: str) -> Any:
            value = getattr(context, name, None) if context else None
            return value if value is not None else getattr(settings, name)

        return cls(
            settings=settings,
            depth=int(configurable.get(CONFIG_DEPTH, 0)),
            offset=int(configurable.get(CONFIG_OFFSET, 0)),
            run_key=run_key,
            context=context,
            resources=resources_for(
                run_key, option("max_concurrency"), option("max_llm_calls"), option("max_input_tokens")
            ),
            leaves=[Piece(start, end, tokens, 0) for start, end, tokens in leaves]
            if (leaves := configurable.get(CONFIG_LEAVES))
            else None,
        )

    @property
    def durable(self) -> bool:
        """Whether the run is checkpointed, so a worker may resume it in another process."""
        try:
            return get_runtime().execution_info.thread_id is not None
        except Exception:  # noqa: BLE001 - outside a run, or an older LangGraph: assume durable
            return True

    def text(self, start: int, end: int) -> str:
        """The (neutralized) text of ``[start, end)`` in root offsets, from the run's shared copy.

        Args:
            start: Start offset in the root document.
            end: End offset.

        Returns:
            The text.

        Raises:
            RLMError: If the run's text is gone (its resources were released).
        """
        shared = self.resources.text
        if shared is None:
            msg = f"the text of characters {start}-{end} is no longer held by run {self.run_key}"
            raise RLMError(msg)
        return shared[start:end]

    @property
    def max_depth(self) -> int:
        """Deepest nesting level allowed in this run."""
        if self.context is not None and self.context.max_depth is not None:
            return self.context.max_depth
        return self.settings.max_depth

    @property
    def part_tokens(self) -> int:
        """Most document tokens per reading call in this run (the window may allow fewer)."""
        if self.context is not None and self.context.part_tokens is not None:
            return self.context.part_tokens
        return self.settings.part_tokens

    @property
    def on_budget(self) -> str:
        """What to do when the plan exceeds a budget: ``"error"`` or ``"partial"``."""
        if self.context is not None and self.context.on_budget is not None:
            return self.context.on_budget
        return self.settings.on_budget

    def writer(self, scope: tuple[int, int]) -> ProgressWriter:
        """A progress writer for this invocation.

        Args:
            scope: Span of the invocation's text in the root document.

        Returns:
            The writer.
        """
        return ProgressWriter(self.templates, self.depth, scope)

    @property
    def templates(self) -> dict[str, str]:
        """Message templates: the graph's ``progress_messages``, then the run's, over the defaults' keys."""
        templates = dict(self.settings.progress_messages)
        if self.context is not None and self.context.progress_messages:
            templates.update(self.context.progress_messages)
        return templates

    def settle(
        self, answer: str, citations: list[Citation], coverage: Coverage | None = None
    ) -> tuple[str, list[Citation]]:
        """Turn this invocation's answer into what it returns.

        Nested levels keep the ``NO_RELEVANT_INFORMATION`` marker so their parent
        drops the finding. At depth 0 the answer carries a note of what was not
        read (see :mod:`rlm_graph.coverage`), and "nothing relevant" becomes
        ``no_answer_message`` only when the whole document was read.

        Args:
            answer: This invocation's answer.
            citations: Its citations.
            coverage: What the run read (depth 0); ``None`` for a run that read everything.

        Returns:
            The answer and citations to return.
        """
        if self.depth > 0:
            return (NO_RELEVANT_INFORMATION, []) if is_no_relevant(answer) else (answer, citations)
        coverage = coverage or Coverage(chars=0)
        text, answered = settle_answer(answer, coverage, self.templates, self.settings.no_answer_message)
        return text, (citations if answered else [])

    def finish(self, progress: ProgressWriter, usage: Usage) -> None:
        """Write the invocation's usage event; at depth 0, free the run's resources.

        Args:
            progress: The invocation's progress writer.
            usage: Usage of the whole invocation, nested ones included.
        """
        progress.usage(usage)
        if self.depth == 0:
            release(self.run_key)

    def _result(self, call: ModelCall, reply: BaseMessage, role: str = "model") -> CallResult:
        text = reply.text if isinstance(reply, AIMessage) else str(reply.content)
        if not str(text).strip():
            # An empty 200 (content filter, length cut-off, proxy) says nothing about the text:
            # fail the call so the node's retry policy tries again, never read it as "nothing here".
            finish = (getattr(reply, "response_metadata", None) or {}).get("finish_reason")
            detail = f" (finish_reason={finish})" if finish else ""
            msg = f"the model returned an empty reply{detail}"
            raise EmptyReplyError(msg)
        metadata = getattr(reply, "usage_metadata", None) or {}
        input_tokens = metadata.get("input_tokens") or call.prompt_tokens
        output_tokens = metadata.get("output_tokens")
        if output_tokens is None:
            output_tokens = self.settings.counter.count(text)
        # Prompt tokens the provider served from its prompt cache (billed at a discount);
        # part of input_tokens, never more than it.
        details = metadata.get("input_token_details") or {}
        cached_input = min(int(details.get("cache_read") or 0), input_tokens)
        usage: Usage = {
            "llm_calls": 1,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "by_model": {role: model_usage(self.settings.prices, role, input_tokens, output_tokens, cached_input)},
        }
        if cached_input:
            usage["cached_input_tokens"] = cached_input
        return CallResult(text=str(text), usage=usage)

    def _cache_key(self, call: ModelCall, role: str) -> FullKey | None:
        if self.settings.replies is None:
            return None
        # Built, hashed and dropped before the call waits for a slot, so queued reads
        # still hold no copy of their text.
        return self.settings.replies.key(self.settings.identity_of(role), _messages(call))

    def _hit(self, text: str | None, role: str) -> CallResult | None:
        if text is None:
            return None
        # No call was made: zero calls and tokens (and zero cost when priced), one cached call.
        by_role = model_usage(self.settings.prices, role, 0, 0)
        by_role.update(llm_calls=0, cached_calls=1)
        usage: Usage = {
            "llm_calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "cached_calls": 1,
            "by_model": {role: by_role},
        }
        return CallResult(text=text, usage=usage)

    def _lookup(self, call: ModelCall, role: str) -> tuple[FullKey | None, CallResult | None]:
        """The call's reply-cache key and its cached reply, if any (sync)."""
        replies, key = self.settings.replies, self._cache_key(call, role)
        return key, self._hit(replies.get(key) if replies and key else None, role)

    async def _alookup(self, call: ModelCall, role: str) -> tuple[FullKey | None, CallResult | None]:
        """The call's reply-cache key and its cached reply, if any (async)."""
        replies, key = self.settings.replies, self._cache_key(call, role)
        return key, self._hit(await replies.aget(key) if replies and key else None, role)

    def _remember(self, key: FullKey | None, result: CallResult) -> CallResult:
        """Store a fresh reply in the reply cache (sync) and return it."""
        if self.settings.replies is not None and key is not None:
            self.settings.replies.put(key, result.text)
        return result

    async def _aremember(self, key: FullKey | None, result: CallResult) -> CallResult:
        """Store a fresh reply in the reply cache (async) and return it."""
        if self.settings.replies is not None and key is not None:
            await self.settings.replies.aput(key, result.text)
        return result

    def call(self, call: ModelCall) -> CallResult:
        """Send one prompt, holding a slot of the run's limiter (sync).

        Args:
            call: The prompt.

        Returns:
            The reply and its usage; a reply from the cache counts no call and no tokens,
            only ``cached_calls``.
        """
        role = self.settings.role_of(call)
        key, hit = self._lookup(call, role)
        if hit is not None:
            return hit
        # Only calls actually made are booked: a cache hit spends no budget.
        self.resources.spend(call.prompt_tokens, synthesis=call.urgent)
        try:
            with self.resources.thread_slot():
                messages = self.settings.wire_messages(_messages(call), role)
                reply = invoke_within(self.settings.model_for(role), messages, self.settings.call_timeout)
        except Exception as error:
            # Honour the server's Retry-After before LangGraph's retry policy takes over;
            # the slot is already released, so other calls go on meanwhile.
            if (wait := _retry_wait(error)) is not None:
                time.sleep(wait)
            raise
        return self._remember(key, self._result(call, reply, role))

    async def acall(self, call: ModelCall) -> CallResult:
        """Send one prompt, holding a slot of the run's limiter (async).

        Args:
            call: The prompt.

        Returns:
            The reply and its usage; a reply from the cache counts no call and no tokens,
            only ``cached_calls``.
        """
        role = self.settings.role_of(call)
        key, hit = await self._alookup(call, role)
        if hit is not None:
            return hit
        # Only calls actually made are booked: a cache hit spends no budget.
        self.resources.spend(call.prompt_tokens, synthesis=call.urgent)
        try:
            priority = (0, -self.depth) if call.urgent else (1, 0)
            async with self.resources.async_slot(priority):
                messages = self.settings.wire_messages(_messages(call), role)
                reply = await ainvoke_within(self.settings.model_for(role), messages, self.settings.call_timeout)
        except Exception as error:
            if (wait := _retry_wait(error)) is not None:
                await asyncio.sleep(wait)
            raise
        return await self._aremember(key, self._result(call, reply, role))

    def drive(self, steps: CallSteps) -> Any:
        """Run node logic written as :data:`CallSteps`, calling the model synchronously."""
        try:
            batch = next(steps)
            while True:
                batch = steps.send([self.call(call) for call in batch])
        except StopIteration as finished:
            return finished.value

    async def adrive(self, steps: CallSteps) -> Any:
        """Run node logic written as :data:`CallSteps`, each batch in parallel."""
        try:
            batch = next(steps)
            while True:
                results = await asyncio.gather(*(self.acall(call) for call in batch))
                batch = steps.send(list(results))
        except StopIteration as finished:
            return finished.value
