"""Per-run settings, passed as ``graph.invoke(..., context=RLMContext(...))``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
        if self.max_depth is not None and self.max_depth < 0:
            msg = f"max_depth must be 0 or more, got {self.max_depth}"
            raise ValueError(msg)
