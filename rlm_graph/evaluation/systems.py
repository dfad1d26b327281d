"""The systems under evaluation: the model alone, and the graph in each reading mode."""

from __future__ import annotations

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

from rlm_graph import BudgetExceededError, ExtractiveChatModel, RLMContext, create_rlm_graph
from rlm_graph.evaluation.scoring import score_answer
from rlm_graph.evaluation.tasks import Task
from rlm_graph.evaluation.texts import count_tokens, truncate_to_tokens
from rlm_graph.options import default_output_tokens

__all__ = ["DIRECT_PROMPT", "DIRECT_SYSTEM_PROMPT", "MODES", "Cell", "Systems"]

MODES = ("direct", "full", "focused", "navigate")
"""``direct``: the model alone (the document cut to fit its window); others: ``create_rlm_graph(mode=...)``."""

DIRECT_SYSTEM_PROMPT = "You answer questions about a document, using only what the document says. Be brief."
DIRECT_PROMPT = "<document>\n{text}\n</document>\n{note}\n<question>{question}</question>"
TRUNCATION_NOTE = "(Only the first {shown} of the document's {total} tokens fit your window; the rest is cut.)\n"


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

    @property
    def key(self) -> str:
        """The cell's identity in ``results.jsonl`` (a rerun skips finished keys)."""
        return json.dumps([self.system, self.mode, self.length, self.task, self.part_tokens, self.seed])


class _CallCounter(AsyncCallbackHandler):
    """Counts model calls as they start, so a failed cell's spending still counts against the budget."""

    def __init__(self) -> None:
        self.calls = 0

    async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1


def _error_text(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}"[:300] if message else type(error).__name__


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
        self._graphs: dict[str, CompiledStateGraph | str] = {}

    def graph(self, mode: str) -> CompiledStateGraph | str:
        """The graph of a reading mode, or why it cannot be built (an unknown mode, a missing extra)."""
        if mode not in self._graphs:
            options: dict[str, Any] = {"retry_policy": self.retry_policy} if self.retry_policy is not None else {}
            if self.large_model is not None:
                options["large_model"] = self.large_model
            if self.prices:
                options["prices"] = self.prices
            try:
                # No reply cache: every cell pays for its own calls, as a user's first run would.
                self._graphs[mode] = create_rlm_graph(
                    self.model,
                    context_window=self.context_window,
                    max_concurrency=self.max_concurrency,
                    cache=False,
                    mode=mode,  # type: ignore[arg-type]
                    **options,
                )
            except Exception as exc:  # noqa: BLE001 - any build failure makes the mode's cells unsupported
                self._graphs[mode] = f"mode {mode!r} is not available: {_error_text(exc)}"
        return self._graphs[mode]

    def direct_budget(self, question: str) -> int:
        """Document tokens the model alone can take with ``question`` (its window minus prompt and reply)."""
        if self.context_window is None:
            msg = "the model's context window is unknown: pass context_window (--context-window)"
            raise ValueError(msg)
        reply = default_output_tokens(self.context_window)
        note = TRUNCATION_NOTE.format(shown=10**7, total=10**7)
        overhead = count_tokens(DIRECT_SYSTEM_PROMPT + DIRECT_PROMPT.format(text="", note=note, question=question))
        # Our counter is cl100k_base; another model's tokenizer may count more, so keep a margin.
        margin = 16 if isinstance(self.model, ExtractiveChatModel) else self.context_window // 10
        return max(0, self.context_window - reply - overhead - margin - 16)

    def _cost(self, role: str, input_tokens: int, output_tokens: int) -> float | None:
        if role not in self.prices:
            return None
        price_in, price_out = self.prices[role]
        return (input_tokens * price_in + output_tokens * price_out) / 1_000_000

    async def _direct(self, task: Task, config: dict[str, Any]) -> dict[str, Any]:
        budget = self.direct_budget(task.question)
        text = truncate_to_tokens(task.document, budget)
        truncated = len(text) < len(task.document)
        shown = count_tokens(text) if truncated else task.document_tokens
        note = TRUNCATION_NOTE.format(shown=shown, total=task.document_tokens) if truncated else ""
        messages = [
            SystemMessage(DIRECT_SYSTEM_PROMPT),
            HumanMessage(DIRECT_PROMPT.format(text=text, note=note, question=task.question)),
        ]
        reply = await self.model.ainvoke(messages, config=config)
        usage = reply.usage_metadata or {}
        tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        return {
            "answer": reply.text,
            "llm_calls": 1,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost": self._cost("model", tokens_in, tokens_out),
            "truncated": truncated,
            "read_tokens": shown,
        }

    async def _graph(
        self, cell: Cell, task: Task, remaining_calls: int | None, config: dict[str, Any]
    ) -> dict[str, Any]:
        graph = self.graph(cell.mode)
        if isinstance(graph, str):
            return {"status": "unsupported", "reason": graph}
        context = RLMContext(part_tokens=cell.part_tokens, max_llm_calls=remaining_calls, on_budget="error")
        question = {"document": task.document, "question": task.question}
        out = await graph.ainvoke(question, context=context, config=config)
        usage = out.get("usage") or {}
        return {
            "answer": out.get("answer", ""),
            "llm_calls": usage.get("llm_calls", 0),
            "input_tokens": usage.get("input_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
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
        return record
