"""State, payload and progress-event schemas of the rlm-graph subgraph.

Installed as ``rlm_graph.state``. Everything here is a plain ``TypedDict`` so the
values stay JSON-serialisable for checkpointers, LangGraph Studio and chat UIs.
"""

from rlm_graph.state.events import AnswerRestartedEvent, ProgressEvent, Stage, Status, UsageEvent
from rlm_graph.state.schema import (
    USAGE_COUNTERS,
    CallLayout,
    ChunkTask,
    Citation,
    Finding,
    ModelUsage,
    PartError,
    PartRange,
    RLMInput,
    RLMOutput,
    RLMState,
    Sentence,
    TextRange,
    Usage,
    merge_usage,
    reset,
    zero_usage,
)

__all__ = [
    "USAGE_COUNTERS",
    "AnswerRestartedEvent",
    "CallLayout",
    "ChunkTask",
    "Citation",
    "Finding",
    "ModelUsage",
    "PartError",
    "PartRange",
    "ProgressEvent",
    "RLMInput",
    "RLMOutput",
    "RLMState",
    "Sentence",
    "Stage",
    "Status",
    "TextRange",
    "Usage",
    "UsageEvent",
    "merge_usage",
    "reset",
    "zero_usage",
]
