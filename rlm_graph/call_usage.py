"""What a model call cost: usage from the reply's metadata, priced per model role."""

from __future__ import annotations

from collections.abc import Mapping

from langchain_core.messages import AIMessage, BaseMessage

from rlm_graph.errors import EmptyReplyError
from rlm_graph.reasoning import split_reasoning
from rlm_graph.settings import Settings
from rlm_graph.state import ModelUsage, Usage

__all__ = ["cached_usage", "model_usage", "reply_usage", "was_cut"]


def model_usage(
    prices: Mapping[str, tuple[float, ...]] | None,
    role: str,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
) -> ModelUsage:
    """One call's entry of ``Usage.by_model``, priced when ``prices`` names the role.

    Args:
        prices: Price per million input and output tokens by role, and optionally per million
            cached input tokens (``(input, output, cached_input)``; without it cached input
            costs the input price).
        role: ``"model"`` or ``"large_model"``.
        input_tokens: The call's prompt tokens, cached ones included (as providers report them).
        output_tokens: The call's reply tokens.
        cached_input_tokens: Prompt tokens the provider read from its prompt cache.

    Returns:
        The entry.
    """
    entry: ModelUsage = {"llm_calls": 1, "input_tokens": input_tokens, "output_tokens": output_tokens}
    if cached_input_tokens:
        entry["cached_input_tokens"] = cached_input_tokens
    if prices and role in prices:
        price_in, price_out, *rest = prices[role]
        price_cached = rest[0] if rest else price_in
        fresh_input = input_tokens - cached_input_tokens
        billed = fresh_input * price_in + cached_input_tokens * price_cached + output_tokens * price_out
        entry["cost"] = billed / 1_000_000
    return entry


_CUT_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS"})


def was_cut(reply: BaseMessage) -> bool:
    """Whether a model stopped its reply at the output limit (``max_tokens``) rather than at its end.

    Args:
        reply: The model's message.

    Returns:
        True when the provider's finish or stop reason says the reply was cut at the limit.
    """
    metadata = getattr(reply, "response_metadata", None) or {}
    return (metadata.get("finish_reason") or metadata.get("stop_reason")) in _CUT_REASONS


def reply_usage(settings: Settings, prompt_tokens: int, reply: BaseMessage, role: str) -> tuple[str, Usage]:
    """A reply's text (the reasoning it starts with set apart) and what it cost.

    An empty reply, or one that holds only reasoning, raises ``EmptyReplyError``, unless it
    stopped at ``max_tokens``: then its text is empty, and the caller knows it was cut.

    Args:
        settings: The graph's settings.
        prompt_tokens: The prompt's own count, used when the provider reports none.
        reply: The model's reply.
        role: ``"model"`` or ``"large_model"``.

    Returns:
        The text and the usage of one call.
    """
    raw = reply.text if isinstance(reply, AIMessage) else str(reply.content)
    # A reasoning model's thoughts, when the server leaves them in content, are not its reply
    # (rlm_graph.reasoning); they are billed as output all the same.
    reasoning, text = split_reasoning(raw)
    # A reply that stopped at max_tokens before any answer (thinking, in content or in a
    # reasoning field of its own) is a cut reply: the caller asks again for a shorter one
    # (rlm_graph.replies).
    if not text.strip() and not was_cut(reply):
        # An empty 200 (content filter, length cut-off, proxy) says nothing about the text:
        # fail the call so the node's retry policy tries again, never read it as "nothing here".
        finish = (getattr(reply, "response_metadata", None) or {}).get("finish_reason")
        detail = f" (finish_reason={finish})" if finish else ""
        what = "a reply that holds only its reasoning" if reasoning else "an empty reply"
        msg = f"the model returned {what}{detail}"
        raise EmptyReplyError(msg)
    metadata = getattr(reply, "usage_metadata", None) or {}
    input_tokens = metadata.get("input_tokens") or prompt_tokens
    output_tokens = metadata.get("output_tokens")
    if output_tokens is None:
        output_tokens = settings.counter.count(raw)
    # Prompt tokens the provider served from its prompt cache (billed at a discount);
    # part of input_tokens, never more than it.
    details = metadata.get("input_token_details") or {}
    cached_input = min(int(details.get("cache_read") or 0), input_tokens)
    usage: Usage = {
        "llm_calls": 1,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "by_model": {role: model_usage(settings.prices, role, input_tokens, output_tokens, cached_input)},
    }
    if cached_input:
        usage["cached_input_tokens"] = cached_input
    return str(text), usage


def cached_usage(settings: Settings, role: str) -> Usage:
    """The usage of a reply served by the reply cache: no call, no tokens, one cached call."""
    # No call was made: zero calls and tokens (and zero cost when priced), one cached call.
    by_role = model_usage(settings.prices, role, 0, 0)
    by_role.update(llm_calls=0, cached_calls=1)
    usage: Usage = {
        "llm_calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cached_calls": 1,
        "by_model": {role: by_role},
    }
    return usage
