"""Build-time settings shared by the nodes: the models, limits, prompts and caches of one graph."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langgraph.types import RetryPolicy

from rlm_graph.cache import ReplyCache
from rlm_graph.model_identity import model_identity
from rlm_graph.options import FocusOptions
from rlm_graph.prompts import (
    CONFIDENCE_INSTRUCTION,
    NO_RELEVANT_INFORMATION,
    READ_REPLY_STRUCTURED,
    READ_REPLY_TEXT,
    STRUCTURED_CONFIDENCE_INSTRUCTION,
    add_cache_markers,
    caches_automatically,
)
from rlm_graph.window import CallWindow

__all__ = ["Settings", "with_max_tokens"]


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
    reply_format: str = "auto"
    """``"auto"``, ``"structured"`` or ``"text"``: how replies are asked for (:mod:`rlm_graph.replies`)."""
    _sent_models: dict[tuple[str, str], Runnable] = field(default_factory=dict, repr=False, compare=False)

    def read_template(self, structured: bool) -> str:
        """The reading template for a reply format: a relay run's confidence request fits the format."""
        if structured and self.large_model is not None:
            return self.read_part_prompt.removesuffix(CONFIDENCE_INSTRUCTION) + STRUCTURED_CONFIDENCE_INSTRUCTION
        return self.read_part_prompt

    @staticmethod
    def read_instructions(structured: bool) -> dict[str, str]:
        """The ``reply_instructions`` field of the reading template, for a reply format."""
        text = READ_REPLY_STRUCTURED if structured else READ_REPLY_TEXT
        return {"reply_instructions": text.format(no_relevant=NO_RELEVANT_INFORMATION)}

    def capped_model(self, role: str, max_tokens: int | None = None) -> Runnable:
        """A role's model with its reply capped at ``max_output_tokens`` where the model takes ``max_tokens``.

        The plan reserves ``max_output_tokens`` of the window for every reply; sending it as
        the call's ``max_tokens`` holds a rambling reader to that reservation. A smaller cap
        the user set on the model is kept. Models without a ``max_tokens`` field are sent as they are.

        Args:
            role: ``"model"`` or ``"large_model"``.
            max_tokens: A smaller cap for one call (a corrective retry, whose longer prompt takes
                its room from the reply's); ``None``: ``max_output_tokens``.
        """
        if max_tokens is not None:
            return with_max_tokens(self.model_for(role), max_tokens)
        key = (role, "")
        if (model := self._sent_models.get(key)) is None:
            model = self._sent_models[key] = with_max_tokens(self.model_for(role), self.max_output_tokens)
        return model

    def structured_model(self, role: str, schema: Mapping[str, object], max_tokens: int | None = None) -> Runnable:
        """A role's capped model asked for replies that follow ``schema`` (``{"name", "schema"}``).

        LangChain's own ``with_structured_output(method="json_schema", include_raw=True)``:
        the raw message is read strictly by :mod:`rlm_graph.replies`, with its usage.
        """
        key = (role, str(schema.get("name")))
        if max_tokens is None and (model := self._sent_models.get(key)) is not None:
            return model
        capped = self.capped_model(role, max_tokens)
        base = capped if isinstance(capped, BaseChatModel) else self.model_for(role)
        json_schema = {"title": schema["name"], **dict(schema["schema"])}  # type: ignore[arg-type]
        model = base.with_structured_output(json_schema, method="json_schema", include_raw=True, strict=True)
        if max_tokens is None:
            self._sent_models[key] = model
        return model

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


def with_max_tokens(model: BaseChatModel, max_output_tokens: int) -> BaseChatModel:
    """``model`` with its ``max_tokens`` set to at most ``max_output_tokens``, where it has that field.

    Args:
        model: A chat model.
        max_output_tokens: The reply room the plan assumed for the call.

    Returns:
        The model itself when it has no ``max_tokens`` field or already asks for no more; else a copy.
    """
    fields = getattr(type(model), "model_fields", {})
    if "max_tokens" not in fields:
        return model
    current = getattr(model, "max_tokens", None)
    if isinstance(current, int) and current <= max_output_tokens:
        return model
    # A copy shares the client (private attributes are copied by reference).
    return model.model_copy(update={"max_tokens": max_output_tokens})
