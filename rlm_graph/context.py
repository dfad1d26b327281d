"""Per-run settings, passed as ``graph.invoke(..., context=RLMContext(...))``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


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
    progress_messages: Mapping[str, str] | None = field(
        default=None,
        metadata={
            "description": "Progress message templates for this run, merged over the graph's "
            "(for example Korean text for a Korean chat service)."
        },
    )

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            msg = f"max_concurrency must be at least 1, got {self.max_concurrency}"
            raise ValueError(msg)
        for name in ("max_llm_calls", "max_input_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                msg = f"{name} must be at least 1, got {value}"
                raise ValueError(msg)
        if self.on_budget not in (None, "error", "partial"):
            msg = f"on_budget must be 'error' or 'partial', got {self.on_budget!r}"
            raise ValueError(msg)
        if self.mode is not None or self.max_focused_parts is not None:
            from rlm_graph.focus import check_focus_options

            check_focus_options(self.mode or "full", 0.2 if self.max_focused_parts is None else self.max_focused_parts)
        if self.part_tokens is not None:
            from rlm_graph.settings import check_part_tokens

            check_part_tokens(self.part_tokens)
        if self.max_depth is not None and self.max_depth < 0:
            msg = f"max_depth must be 0 or more, got {self.max_depth}"
            raise ValueError(msg)
