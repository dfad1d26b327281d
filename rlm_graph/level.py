"""One nesting level of a run as its nodes see it, and the config keys that carry it to nested levels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.config import get_config
from langgraph.runtime import get_runtime

from rlm_graph.context import RLMContext
from rlm_graph.coverage import Coverage, settle_answer
from rlm_graph.options import overridden
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, is_no_relevant
from rlm_graph.runs import RunResources, release, resources_for
from rlm_graph.settings import Settings
from rlm_graph.splitter import Span
from rlm_graph.state import Citation, Usage

__all__ = [
    "CONFIG_DEPTH",
    "CONFIG_LEAVES",
    "CONFIG_OFFSET",
    "CONFIG_PATH",
    "CONFIG_RUN_KEY",
    "Level",
    "nested_run_config",
]

CONFIG_DEPTH = "rlm_depth"
CONFIG_OFFSET = "rlm_offset"
CONFIG_RUN_KEY = "rlm_run_key"
CONFIG_LEAVES = "rlm_leaves"
"""Config key of a nested level's leaves: ``[start, end, tokens]`` in root offsets."""
CONFIG_PATH = "rlm_path"
"""Config key of where a nested level sits: ``[index, total]`` of the part it reads, one per
level above it, outermost first (empty at depth 0), so its messages can name their parent."""


def nested_run_config(depth: int, start: int, end: int) -> dict[str, Any]:
    """Run name and metadata of a nested level, so tracers show ``rlm[depth=1, 120000-240000]``.

    Args:
        depth: The nested level's depth.
        start: Where its span starts in the root document.
        end: Where its span ends in the root document.

    Returns:
        ``run_name`` and ``metadata`` keys to merge into the nested invocation's config.
    """
    metadata = {"rlm_depth": depth, "rlm_offset": start, "rlm_span": [start, end]}
    return {"run_name": f"rlm[depth={depth}, {start}-{end}]", "metadata": metadata}


@dataclass(slots=True)
class Level:
    """One nesting level of a run, as a node sees it: depth, offset in the root document, run resources, context.

    "Run" means the whole run across depths (its resources are shared); a level is one
    invocation of the graph inside it.
    """

    settings: Settings
    depth: int
    offset: int
    run_key: str
    context: RLMContext | None
    resources: RunResources
    leaf_rows: list[list[int]] | None = None
    """The ``[start, end, tokens]`` of the leaves a nested invocation was handed (from its config)."""
    path: tuple[tuple[int, int], ...] = ()
    """``(index, total)`` of the part each level above this one handed down, outermost first."""

    @property
    def leaves(self) -> list[Span] | None:
        """The reading-call-sized leaves a nested invocation was handed; ``None`` at depth 0."""
        # Made when asked (check and split), not for every node call of the level.
        rows = self.leaf_rows
        return [Span(start, end, tokens, 0) for start, end, tokens in rows] if rows else None

    @classmethod
    def current(cls, settings: Settings, run_key: str) -> Level:
        """Read the running node's config and context.

        Args:
            settings: The graph's settings.
            run_key: Key of the run, from state or payload.

        Returns:
            The level.
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

        return cls(
            settings=settings,
            depth=int(configurable.get(CONFIG_DEPTH, 0)),
            offset=int(configurable.get(CONFIG_OFFSET, 0)),
            run_key=run_key,
            context=context,
            resources=resources_for(
                run_key,
                overridden(context, "max_concurrency", settings.max_concurrency),
                overridden(context, "max_llm_calls", settings.max_llm_calls),
                overridden(context, "max_input_tokens", settings.max_input_tokens),
            ),
            leaf_rows=configurable.get(CONFIG_LEAVES) or None,
            path=tuple((int(index), int(total)) for index, total in configurable.get(CONFIG_PATH) or ()),
        )

    @property
    def durable(self) -> bool:
        """Whether the run is checkpointed, so a worker may resume it in another process."""
        try:
            return get_runtime().execution_info.thread_id is not None
        except Exception:  # noqa: BLE001 - outside a run, or an older LangGraph: assume durable
            return True

    @property
    def attempt(self) -> int:
        """Which attempt of the running node this is (1 for the first; LangGraph's retry policy counts)."""
        try:
            return int(get_runtime().execution_info.node_attempt)
        except Exception:  # noqa: BLE001 - outside a run, or a LangGraph without execution info
            return 1

    @property
    def first_attempt(self) -> bool:
        """Whether the running node runs for the first time: a retry does not repeat its first message."""
        return self.attempt <= 1

    @property
    def max_depth(self) -> int:
        """Deepest nesting level allowed in this run."""
        return overridden(self.context, "max_depth", self.settings.max_depth)

    @property
    def part_tokens(self) -> int:
        """Most document tokens per reading call in this run (the window may allow fewer)."""
        return overridden(self.context, "part_tokens", self.settings.part_tokens)

    @property
    def on_budget(self) -> str:
        """What to do when the plan exceeds a budget: ``"error"`` or ``"partial"``."""
        return overridden(self.context, "on_budget", self.settings.on_budget)

    @property
    def mode(self) -> str:
        """Reading mode of this run: ``"full"``, ``"focused"`` or ``"auto"``."""
        return overridden(self.context, "mode", self.settings.retrieval.mode)

    @property
    def max_focused_parts(self) -> int | float:
        """Focused reading: parts to read at most once something relevant is found."""
        return overridden(self.context, "max_focused_parts", self.settings.retrieval.max_focused_parts)

    def writer(self, scope: tuple[int, int]) -> ProgressWriter:
        """A progress writer for this invocation.

        Args:
            scope: Span of the invocation's text in the root document.

        Returns:
            The writer.
        """
        return ProgressWriter(self.templates, self.depth, scope, self.path)

    @property
    def templates(self) -> dict[str, str]:
        """Message templates: the graph's ``progress_messages``, then the run's, over the defaults' keys."""
        return {**self.settings.progress_messages, **overridden(self.context, "progress_messages", {})}

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
        """At depth 0: write the run's usage event and free the run's resources.

        A nested level writes no usage event: its usage is part of the run's, which
        comes once, last, as the final "Answer ready" does.

        Args:
            progress: The invocation's progress writer.
            usage: Usage of the whole invocation, nested ones included.
        """
        if self.depth == 0:
            progress.usage(usage)
            release(self.run_key)
