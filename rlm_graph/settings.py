"""Build-time settings shared by the nodes: the models, limits, prompts and caches of one graph."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langgraph.types import RetryPolicy

from rlm_graph.cache import ReplyCache
from rlm_graph.model_identity import model_identity
from rlm_graph.options import FocusOptions
from rlm_graph.prompts import add_cache_markers, caches_automatically
from rlm_graph.window import CallWindow

__all__ = ["Settings"]


@dataclass(kw_only=True)
class Settings(CallWindow):
    """Everything the nodes need, fixed when the graph is built (the window arithmetic is inherited)."""

    model: BaseChatModel
    max_concurrency: int
    max_depth: int
    max_llm_calls: int | None
    max_input_tokens: int | None
    on_budget: str
    no_answer_message: str
    empty_document_message: str
    progress_messages: Mapping[str, str]
    large_model: BaseChatModel | None = None
    """Relay: reads synthesis, direct answers and escalated parts; ``model`` reads the rest."""
    escalate_below: float = 0.5
    """Relay: a reading whose stated confidence is below this is redone by ``large_model``."""
    prices: Mapping[str, tuple[float, ...]] | None = None
    """Per model role, price per million input, output and cached input tokens, for the usage ``cost``."""
    retrieval: FocusOptions = field(default_factory=FocusOptions)
    """The focused-reading options."""
    call_timeout: float | None = None
    """Seconds one model call (one attempt) may take; ``None``: no limit."""
    replies: ReplyCache | None = None
    """The reply cache (``None``: replies are not cached)."""
    model_identities: dict[str, str] = field(default_factory=dict)
    """``identity_of`` by role, filled on first use."""
    prompt_cache_markers: bool = False
    """Mark the end of each prompt's static prefix with ``cache_control`` (providers that need markers)."""
    read_ahead: bool = True
    """Start reading the first parts while ``split`` plans the rest (full mode, no budget)."""
    retry_policies: tuple[RetryPolicy, ...] = ()
    """The model-calling nodes' retry policies, so a node can say when it will be retried."""

    def identity_of(self, role: str) -> str:
        """Stable text naming the model of a role and its settings (reply cache keys).

        Computed once per role: it reads the model's fields, which do not change after
        the graph is built.
        """
        if role not in self.model_identities:
            self.model_identities[role] = model_identity(self.model_for(role))
        return self.model_identities[role]

    def role_of(self, large: bool) -> str:
        """Which model answers a call: ``"large_model"`` for a large call when there is one, else ``"model"``."""
        return "large_model" if large and self.large_model is not None else "model"

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
