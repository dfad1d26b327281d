"""Per-run settings, passed as ``graph.invoke(..., context=RLMContext(...))``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rlm_graph.options import check_reply_format, check_run_options


@dataclass(kw_only=True)
class RLMContext:
    """Overrides for one run; fields left as ``None`` keep the graph's defaults.

    The context reaches nested invocations too, so one value governs all depths.
    """

    max_concurrency: int | None = field(
        default=None,
        metadata={"description": "Most model calls in flight at once for this run, across all depths."},
    )
    max_depth: int | None = field(
        default=None,
        metadata={"description": "Deepest nesting level allowed for this run (0 = no nested invocations)."},
    )
    max_llm_calls: int | None = field(
        default=None, metadata={"description": "Most model calls this run may make, all depths together."}
    )
    max_input_tokens: int | None = field(
        default=None, metadata={"description": "Most prompt tokens this run may send, all depths together."}
    )
    on_budget: Literal["error", "partial"] | None = field(
        default=None,
        metadata={
            "description": "When the plan exceeds a budget: 'error' stops before spending; 'partial' reads "
            "the document from the start as far as the budget allows and lists what it skipped."
        },
    )
    mode: Literal["full", "focused", "auto", "navigate"] | None = field(
        default=None,
        metadata={
            "description": "Reading mode for this run: 'full' reads every part; 'focused' reads the most "
            "relevant parts first and stops once the answer is found; 'auto' picks from the question; "
            "'navigate' lets a tool-calling model explore the document with tools."
        },
    )
    max_focused_parts: int | float | None = field(
        default=None,
        metadata={"description": "Focused reading: most parts to read once something relevant is found."},
    )
    part_tokens: int | None = field(
        default=None,
        metadata={
            "description": "Most document tokens per reading call for this run (the window may allow fewer); "
            "smaller parts are read more reliably."
        },
    )
    reply_format: Literal["auto", "structured", "text"] | None = field(
        default=None,
        metadata={
            "description": "How replies are asked for in this run: 'structured' sends a JSON schema "
            "(response_format), 'text' the plain-text format, 'auto' structured when the model supports it."
        },
    )
    progress_messages: Mapping[str, str] | None = field(
        default=None,
        metadata={
            "description": "Progress message templates for this run, merged over the graph's "
            "(for example Korean text for a Korean chat service)."
        },
    )

    def __post_init__(self) -> None:
        if self.reply_format is not None:
            check_reply_format(self.reply_format)
        check_run_options(
            max_concurrency=self.max_concurrency,
            max_depth=self.max_depth,
            max_llm_calls=self.max_llm_calls,
            max_input_tokens=self.max_input_tokens,
            on_budget=self.on_budget,
            mode=self.mode,
            max_focused_parts=self.max_focused_parts,
            part_tokens=self.part_tokens,
        )
