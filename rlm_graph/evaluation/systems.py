"""The systems under evaluation: the model alone, and the graph in each reading mode."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from rlm_graph import BudgetExceededError, ExtractiveChatModel, RLMContext, create_rlm_graph, prompts
from rlm_graph.call_usage import model_usage
from rlm_graph.evaluation.scoring import ANSWER_FORMS, ANSWER_LINE_INSTRUCTION, answer_line, score_answer
from rlm_graph.evaluation.summary import shorten
from rlm_graph.evaluation.tasks import Task
from rlm_graph.evaluation.texts import count_tokens, truncate_to_tokens
from rlm_graph.model_identity import model_identity
from rlm_graph.options import default_output_tokens
from rlm_graph.reasoning import visible_text

__all__ = [
    "DIRECT_PROMPT", "DIRECT_SYSTEM_PROMPT", "EVAL_VERSION", "MODES", "Cell", "Systems", "answer_request",
    "eval_question",
]  # fmt: skip

MODES = ("direct", "full", "focused", "navigate")
"""``direct``: the model alone (the document cut to fit its window); others: ``create_rlm_graph(mode=...)``."""

DIRECT_SYSTEM_PROMPT = "You answer questions about a document, using only what the document says. Be brief."
DIRECT_PROMPT = "<document>\n{text}\n</document>\n{note}\n<question>{question}</question>\n{answer_request}"
TRUNCATION_NOTE = "(Only the first {shown} of the document's {total} tokens fit your window; the rest is cut.)\n"
EVAL_VERSION = 2
"""Bumped when what systems are asked, or how answers are scored, changes: part of every cell's key,
so a rerun never reuses cells measured the old way (2: the ANSWER line)."""


def answer_request(kind: str) -> str:
    """The request for a last ``ANSWER:`` line, in the form a task of score kind ``kind`` is answered in."""
    return ANSWER_LINE_INSTRUCTION.format(form=ANSWER_FORMS[kind])


def eval_question(task: Task) -> str:
    """The question as the navigate mode's root model is asked it: followed by :func:`answer_request`.

    The other systems get the request in their prompt, after the question, not inside
    it: the question also ranks parts (focused reading) and sentences (the offline
    model), and words such as "answer", "line" and "number" would skew both.
    Navigate takes no prompt template, and its root model alone sees the question
    as asked (its tools get the model's own queries).
    """
    return f"{task.question}\n\n{answer_request(task.kind)}"


@dataclass(frozen=True)
class Cell:
    """One measurement: a system answering one task."""

    system: str
    """The model (``model→large_model`` with relay)."""
    mode: str
    length: int
    task: str
    part_tokens: int | None
    seed: int
    settings: str = ""
    """Digest of every other setting that changes the result (:meth:`Systems.settings`)."""

    @property
    def key(self) -> str:
        """The cell's identity in ``results.jsonl`` (a rerun skips finished keys)."""
        return json.dumps(
            [self.system, self.mode, self.length, self.task, self.part_tokens, self.seed, self.settings]
        )


class _CallCounter(AsyncCallbackHandler):
    """Counts model calls as they start, so a failed cell's spending still counts against the budget."""

    def __init__(self) -> None:
        self.calls = 0

    async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1


def _error_text(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return shorten(f"{type(error).__name__}: {message}", 300) if message else type(error).__name__


def _endpoint(model: BaseChatModel) -> str | None:
    endpoint = getattr(model, "openai_api_base", None) or getattr(getattr(model, "client", None), "base_url", None)
    return str(endpoint) if endpoint else None


def _window_of(model: BaseChatModel, context_window: int | None) -> int | None:
    if context_window is not None:
        return context_window
    profile = getattr(model, "profile", None) or {}
    window = profile.get("max_input_tokens") if isinstance(profile, Mapping) else None
    return window if isinstance(window, int) else None


class Systems:
    """Builds each mode's graph once and runs cells on it.

    Args:
        model: The chat model under evaluation.
        context_window: Its window in tokens (``None``: from its profile).
        large_model: Relay: the graph's ``large_model``.
        prices: Price per million input and output tokens by role (``"model"``, ``"large_model"``).
        max_concurrency: Most model calls in flight per cell.
        retry_policy: The graph's retry policy (``None``: the graph's default).
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        context_window: int | None = None,
        large_model: BaseChatModel | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        max_concurrency: int = 8,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.model = model
        self.context_window = _window_of(model, context_window)
        self.large_model = large_model
        self.prices = dict(prices or {})
        self.max_concurrency = max_concurrency
        self.retry_policy = retry_policy
        self._graphs: dict[str, CompiledStateGraph | str] = {}  # by mode and score kind

    def settings(self) -> dict[str, Any]:
        """Everything besides the cell's own fields that changes its result, readable, for its record.

        The models' identities (class, endpoint, deployment, sampling settings; credentials
        only as digests, see :func:`rlm_graph.model_identity.model_identity`) are hashed; the
        window, graph prompt version and evaluation version are as given. Prices are not
        among them: a cell's cost is worked out again from its tokens (:meth:`cost_of`).
        """

        def digest(model: BaseChatModel | None) -> str | None:
            return None if model is None else hashlib.sha256(model_identity(model).encode()).hexdigest()[:16]

        return {
            "endpoint": _endpoint(self.model),
            "context_window": self.context_window,
            "model": digest(self.model),
            "large_model": digest(self.large_model),
            "prompt_version": prompts.PROMPT_VERSION,
            "eval_version": EVAL_VERSION,
        }

    def settings_key(self) -> str:
        """A short digest of :meth:`settings`, the part of a cell's key they make."""
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:16]

    def graph(self, mode: str, kind: str | None = None) -> CompiledStateGraph | str:
        """The graph of a reading mode, or why it cannot be built (an unknown mode, a missing extra).

        Args:
            mode: ``full``, ``focused`` or ``navigate``.
            kind: The task's score kind: the final answer's prompts (the synthesis, and the
                direct answer of a document that fits one call) end with the request for
                an ``ANSWER:`` line in its form. ``None``: the default prompts (navigate,
                which is asked through the question, and the planner of the estimate).
        """
        kind = None if mode == "navigate" else kind
        key = f"{mode}:{kind}"
        if key not in self._graphs:
            options: dict[str, Any] = {"retry_policy": self.retry_policy} if self.retry_policy is not None else {}
            if self.large_model is not None:
                options["large_model"] = self.large_model
            if self.prices:
                options["prices"] = self.prices
            if kind is not None:
                request = answer_request(kind)
                # In focused reading the synthesis may also be asked for a last COMPLETE line.
                options["synthesize_prompt"] = (
                    f"{prompts.SYNTHESIZE_PROMPT}\n\n{request} If you are also asked for a COMPLETE line, "
                    "write it after the ANSWER line."
                )
                options["direct_answer_prompt"] = f"{prompts.DIRECT_ANSWER_PROMPT}\n\n{request}"
            try:
                # No reply cache: every cell pays for its own calls, as a user's first run would.
                self._graphs[key] = create_rlm_graph(
                    self.model,
                    context_window=self.context_window,
                    max_concurrency=self.max_concurrency,
                    cache=False,
                    mode=mode,  # type: ignore[arg-type]
                    **options,
                )
            except Exception as exc:  # noqa: BLE001 - any build failure makes the mode's cells unsupported
                self._graphs[key] = f"mode {mode!r} is not available: {_error_text(exc)}"
        return self._graphs[key]

    def navigate_unavailable(self) -> str | None:
        """Why the navigate mode cannot run on this model (it cannot call tools), or ``None`` if it can."""
        graph = self.graph("navigate")
        return graph if isinstance(graph, str) else None

    def direct_budget(self, question: str) -> int:
        """Document tokens the model alone can take with ``question`` (its window minus prompt and reply)."""
        if self.context_window is None:
            msg = "the model's context window is unknown: pass context_window (--context-window)"
            raise ValueError(msg)
        reply = default_output_tokens(self.context_window)
        note = TRUNCATION_NOTE.format(shown=10**7, total=10**7)
        request = max((answer_request(kind) for kind in ANSWER_FORMS), key=len)
        prompt = DIRECT_PROMPT.format(text="", note=note, question=question, answer_request=request)
        overhead = count_tokens(DIRECT_SYSTEM_PROMPT + prompt)
        # Our counter is cl100k_base; another model's tokenizer may count more, so keep a margin.
        margin = 16 if isinstance(self.model, ExtractiveChatModel) else self.context_window // 10
        return max(0, self.context_window - reply - overhead - margin - 16)

    def cost_of(self, by_model: Mapping[str, Mapping[str, int]] | None) -> float | None:
        """The cost of a cell's tokens by role at this evaluation's prices (``None`` without prices).

        Costs are worked out from the recorded tokens, not stored with the cell's key, so a
        rerun with other ``--prices`` reuses finished cells and reprices them.
        """
        costs = [
            model_usage(
                self.prices, role, tokens.get("input_tokens", 0), tokens.get("output_tokens", 0),
                tokens.get("cached_input_tokens", 0),
            ).get("cost")
            for role, tokens in (by_model or {}).items()
        ]  # fmt: skip
        priced = [cost for cost in costs if cost is not None]
        return sum(priced) if priced else None

    async def _direct(self, task: Task, config: dict[str, Any]) -> dict[str, Any]:
        question = task.question
        budget = self.direct_budget(question)
        text = truncate_to_tokens(task.document, budget)
        truncated = len(text) < len(task.document)
        shown = count_tokens(text) if truncated else task.document_tokens
        note = TRUNCATION_NOTE.format(shown=shown, total=task.document_tokens) if truncated else ""
        messages = [
            SystemMessage(DIRECT_SYSTEM_PROMPT),
            HumanMessage(
                DIRECT_PROMPT.format(text=text, note=note, question=question, answer_request=answer_request(task.kind))
            ),
        ]
        reply = await self.model.ainvoke(messages, config=config)
        usage = reply.usage_metadata or {}
        tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        cached = (usage.get("input_token_details") or {}).get("cache_read", 0)
        by_model = {"model": {"input_tokens": tokens_in, "output_tokens": tokens_out, "cached_input_tokens": cached}}
        return {
            # Scored on its answer, as ours is: a reasoning model's <think> block is not part of it.
            "answer": visible_text(reply),
            "llm_calls": 1,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "by_model": by_model,
            "cost": self.cost_of(by_model),
            "truncated": truncated,
            "read_tokens": shown,
        }

    async def _graph(
        self, cell: Cell, task: Task, remaining_calls: int | None, config: dict[str, Any]
    ) -> dict[str, Any]:
        graph = self.graph(cell.mode, task.kind)
        if isinstance(graph, str):
            return {"status": "unsupported", "reason": graph}
        context = RLMContext(part_tokens=cell.part_tokens, max_llm_calls=remaining_calls, on_budget="error")
        asked = eval_question(task) if cell.mode == "navigate" else task.question
        question = {"document": task.document, "question": asked}
        out = await graph.ainvoke(question, context=context, config=config)
        usage = out.get("usage") or {}
        return {
            "answer": out.get("answer", ""),
            "llm_calls": usage.get("llm_calls", 0),
            "input_tokens": usage.get("input_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
            "by_model": {
                role: {key: entry.get(key, 0) for key in ("input_tokens", "output_tokens", "cached_input_tokens")}
                for role, entry in (usage.get("by_model") or {}).items()
            },
            "cost": usage.get("cost"),
            "truncated": False,
            "read_tokens": task.document_tokens,
            "failed_parts": len(out.get("errors") or []),
            "depth": usage.get("max_depth", 0),
        }

    async def run(self, cell: Cell, task: Task, remaining_calls: int | None) -> dict[str, Any]:
        """Run one cell; a failure is recorded in the result, never raised.

        Args:
            cell: What to run.
            task: The cell's task.
            remaining_calls: Model calls left in the evaluation's budget (``None``: no limit).

        Returns:
            The record for ``results.jsonl``: the cell, ``status`` (``ok``, ``failed``,
            ``unsupported`` or ``skipped``), and for ``ok`` the answer, score, calls, tokens and cost.
        """
        record: dict[str, Any] = {
            "key": cell.key,
            **asdict(cell),
            "question": task.question,
            "settings": self.settings(),
            "gold": list(task.gold),
            "document_tokens": task.document_tokens,
        }
        started = time.monotonic()
        counter = _CallCounter()
        config: dict[str, Any] = {"callbacks": [counter], "run_name": f"eval {cell.mode} {cell.task} {cell.length}"}
        try:
            if remaining_calls is not None and remaining_calls < 1:
                outcome: dict[str, Any] = {"status": "skipped", "reason": "the evaluation's max_llm_calls is spent"}
            elif cell.mode == "direct":
                outcome = await self._direct(task, config)
            else:
                outcome = await self._graph(cell, task, remaining_calls, config)
        except BudgetExceededError as exc:
            outcome = {"status": "skipped", "reason": f"over the evaluation's remaining budget: {_error_text(exc)}"}
        except Exception as exc:  # noqa: BLE001 - a failed cell is recorded and the evaluation goes on
            outcome = {"status": "failed", "reason": _error_text(exc)}
        record.update(outcome)
        record["seconds"] = round(time.monotonic() - started, 3)
        # Calls started, failed ones included (usage counts only the calls that answered).
        record["calls_started"] = counter.calls
        if "answer" in outcome:
            record["status"] = "ok"
            record["score"] = score_answer(task.kind, outcome["answer"], task.gold, task.known)
            # Without the requested line the whole answer was scored: less exact, so counted in the report.
            record["answer_line"] = answer_line(outcome["answer"]) is not None
        return record
