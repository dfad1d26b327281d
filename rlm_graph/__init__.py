"""rlm-graph: answer questions about documents far longer than a model's window.

A LangGraph subgraph that keeps the document as data, reads it part by part in
fresh context windows (recursively where a part is still too large), and
synthesizes one answer with citations, streaming progress all the way.
"""

from rlm_graph.cache import BoundedInMemoryCache
from rlm_graph.chat import DocumentChatState, create_document_node
from rlm_graph.context import RLMContext
from rlm_graph.errors import (
    AllPartsFailedError,
    BudgetExceededError,
    DepthLimitError,
    EmptyReplyError,
    NestedRunError,
    RLMError,
    is_transient_error,
)
from rlm_graph.estimate import CostEstimate, estimate_cost
from rlm_graph.graph import CONNECTION_RETRY_POLICY, DEFAULT_RETRY_POLICY, create_rlm_graph
from rlm_graph.history import create_history_hook
from rlm_graph.index_cache import IndexCache
from rlm_graph.models import UnknownContextWindowError, model_from_env
from rlm_graph.offline import ExtractiveChatModel
from rlm_graph.progress import DEFAULT_PROGRESS_MESSAGES
from rlm_graph.retrieval import BM25Retriever, PartIndex, Retriever, VectorStoreRetriever
from rlm_graph.state import (
    AnswerRestartedEvent,
    Citation,
    ModelUsage,
    PartError,
    ProgressEvent,
    RLMInput,
    RLMOutput,
    Usage,
    UsageEvent,
)

__all__ = [
    "CONNECTION_RETRY_POLICY",
    "DEFAULT_PROGRESS_MESSAGES",
    "DEFAULT_RETRY_POLICY",
    "AllPartsFailedError",
    "AnswerRestartedEvent",
    "BM25Retriever",
    "BoundedInMemoryCache",
    "BudgetExceededError",
    "Citation",
    "CostEstimate",
    "DepthLimitError",
    "DocumentChatState",
    "EmptyReplyError",
    "ExtractiveChatModel",
    "IndexCache",
    "ModelUsage",
    "NestedRunError",
    "PartError",
    "PartIndex",
    "ProgressEvent",
    "RLMContext",
    "RLMError",
    "RLMInput",
    "RLMOutput",
    "Retriever",
    "UnknownContextWindowError",
    "Usage",
    "UsageEvent",
    "VectorStoreRetriever",
    "create_document_node",
    "create_history_hook",
    "create_rlm_graph",
    "estimate_cost",
    "is_transient_error",
    "model_from_env",
]
