"""Conversations longer than the window: recent turns verbatim, older turns read only when needed.

:func:`create_history_hook` builds a runnable that turns a thread's ``messages``
into what the chat model should see for this call (``llm_input_messages``): the
most recent turns verbatim, and, when the latest user message is about older
turns, a short digest of what those turns say, with the message ids it comes
from. The older turns become one transcript document that the analysis graph
(:func:`rlm_graph.create_rlm_graph`) reads, focused reading first; whether to
read it at all is decided from word statistics (BM25's IDF weights), without a
model call. Nothing
is removed from state and the digest is not stored as a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.graph import create_rlm_graph
from rlm_graph.history_plan import HistoryPlan, HistoryPlanner
from rlm_graph.nodes.entry import entry_runnable
from rlm_graph.tokens import TokenCounter

__all__ = [
    "CUT_NOTE",
    "DIGEST_TEMPLATE",
    "HISTORY_PROGRESS_MESSAGES",
    "HISTORY_QUESTION",
    "MESSAGE_TOO_LONG_MESSAGE",
    "HistoryPlan",
    "create_history_hook",
    "history_from_options",
]

HISTORY_QUESTION = "{message}"
"""Question the analysis graph answers about the older turns; uses ``{message}``.

The message as is by default: focused reading ranks the transcript's parts by the
question's words, and instructions here would dilute the ranking. Each transcript line
starts with its message id, so findings can name it."""
DIGEST_TEMPLATE = (
    "<earlier_conversation>\n{count} earlier messages of this conversation are not shown. "
    "What they say about the message above:\n{answer}\nSources: {sources}\n</earlier_conversation>"
)
"""How the digest is shown to the chat model; uses ``{count}``, ``{answer}`` and ``{sources}``."""
MESSAGE_TOO_LONG_MESSAGE = (
    "Your message is too long for me to read (about {tokens:,} tokens; I can read about {limit:,} at once). "
    "Please shorten it, or split it into several messages."
)
"""Reply when the latest message alone does not fit the window; uses ``{tokens}`` and ``{limit}``."""
CUT_NOTE = (
    "[Cut to fit the model's window: this {kind} is about {tokens:,} tokens; only its first {shown:,} are shown.]"
)
"""Ends a message of the current turn (a tool result, the agent's own text) that was cut to fit the
window; uses ``{kind}`` (``"tool result"`` or ``"message"``), ``{tokens}`` and ``{shown}``."""
HISTORY_PROGRESS_MESSAGES: Mapping[str, str] = {
    "history.recent": "The recent messages are enough; not looking further back",
    "history.started": "Looking back through {count:,} earlier {count:message|messages}",
    "history.done": "Looked back through {count:,} earlier {count:message|messages}; cited {cited}",
    "history.too_long": "The latest message is too long for the model's window",
    "history.cut": (
        "Cut {count:,} {count:message|messages} of this turn (tool results, the agent's own text) to fit the window"
    ),
    "history.digest_cut": (
        "The answer about earlier messages is about {tokens:,} tokens; cut to its first {shown:,} to fit the window"
    ),
}
"""Progress templates (stage ``history``); fields ``count``, ``cited``, ``tokens`` and ``shown``."""

def create_history_hook(
    model: BaseChatModel,
    graph: CompiledStateGraph | None = None,
    *,
    recent_tokens: int = 4000,
    digest_tokens: int = 600,
    context_window: int | None = None,
    max_output_tokens: int | None = None,
    max_cited: int = 5,
    look_back: Literal["auto", "always", "never"] = "auto",
    look_back_coverage: float = 0.5,
    token_counter: TokenCounter | None = None,
    history_question: str = HISTORY_QUESTION,
    digest_template: str = DIGEST_TEMPLATE,
    too_long_message: str = MESSAGE_TOO_LONG_MESSAGE,
    cut_note: str = CUT_NOTE,
    progress_messages: Mapping[str, str] | None = None,
    name: str = "history",
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """Build a hook that fits a long thread into the chat model's window without losing older turns.

    Use it as ``pre_model_hook`` of ``langgraph.prebuilt.create_react_agent``, or as a plain
    node before the chat model (the node writes ``llm_input_messages``; the chat node sends
    that list to the model). For ``langchain.agents.create_agent`` use
    :class:`rlm_graph.history_middleware.HistoryMiddleware`, built from the same options.

    The most recent turns (within ``recent_tokens`` and the window) are kept verbatim.
    Their first turn moves forward a block (half of ``recent_tokens``) at a time, not with
    every message, so the prompt prefix stays the same for several turns and provider
    prompt caching keeps working; the recent turns thus fill between half and all of
    ``recent_tokens``. Older turns become a transcript (each message's id, role and text;
    character offsets map back to message ids).

    Word statistics decide, without a model call, whether the latest user message is about
    older turns: its words are weighted by rarity over the turns (BM25's IDF), and only
    when one older turn holds at least ``look_back_coverage`` of that weight, and a fifth
    more than any recent turn, does the analysis graph read the transcript (focused
    reading: most relevant parts first, on to the rest while nothing relevant is found).
    Its answer, naming the message ids it comes from and cut to ``digest_tokens`` (a cut
    answer ends with ``cut_note``, and a ``history.digest_cut`` progress event says so), is
    appended to the latest user message of the model's input, after the stable recent
    turns. Nothing is deleted from state and the digest is never stored as a message.
    Progress events have stage ``history``. If the latest user message alone does not fit
    the window, the model is asked to relay ``too_long_message`` (the middleware gives it
    without a model call). Only that message can be too long: when what follows it in
    the current turn (the agent's tool calls and tool results) does not fit, the largest
    of those messages are cut to one size, each ending with ``cut_note``, so the model
    answers from the start of a long tool result and knows it saw only part of it.

    Args:
        model: The chat model whose window is planned for; also reads the older turns unless
            ``graph`` is given.
        graph: The analysis graph; defaults to ``create_rlm_graph(model, mode="focused")``.
            It is run with ``RLMContext(mode="focused")`` whatever its own mode, without the
            chat's checkpointer.
        recent_tokens: Most tokens of recent turns sent verbatim (the window may allow fewer).
        digest_tokens: Most tokens of the digest.
        context_window: The chat model's window; defaults to its profile's ``max_input_tokens``.
        max_output_tokens: Tokens kept free for the reply; defaults to an eighth of the window
            (256 to 2048).
        max_cited: Most message ids the digest names.
        look_back: ``"auto"`` (BM25 decides), ``"always"`` or ``"never"``.
        look_back_coverage: ``"auto"`` reads older turns when one older turn holds at least
            this share of the latest message's words, weighted by rarity (BM25's IDF), and
            a fifth more of it than any recent turn holds.
        token_counter: Counter to use instead of the model's own or cl100k_base.
        history_question: Question for the analysis graph; uses ``{message}``.
        digest_template: How the digest is shown; uses ``{count}``, ``{answer}``, ``{sources}``.
        too_long_message: Reply for an oversized latest message; uses ``{tokens}``, ``{limit}``.
        cut_note: Ends a message of the current turn, or the digest's answer, that was cut to fit; uses ``{kind}``,
            ``{tokens}`` and ``{shown}``.
        progress_messages: Templates overriding :data:`HISTORY_PROGRESS_MESSAGES`.
        name: Name of the runnable.

    Returns:
        A runnable (sync and async) from a state with ``messages`` to ``{"llm_input_messages": [...]}``.

    Raises:
        ValueError: If the window is unknown or a budget is not positive.
    """
    history = history_from_options(
        model,
        graph,
        recent_tokens=recent_tokens,
        digest_tokens=digest_tokens,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        max_cited=max_cited,
        look_back=look_back,
        look_back_coverage=look_back_coverage,
        token_counter=token_counter,
        history_question=history_question,
        digest_template=digest_template,
        too_long_message=too_long_message,
        cut_note=cut_note,
        progress_messages=progress_messages,
    )

    def invoke(state: Mapping[str, Any]) -> dict[str, Any]:
        return history.update(history.run(state.get("messages") or []))

    async def ainvoke(state: Mapping[str, Any]) -> dict[str, Any]:
        return history.update(await history.arun(state.get("messages") or []))

    return entry_runnable(name, invoke, ainvoke)


def history_from_options(model: BaseChatModel, graph: CompiledStateGraph | None, **options: Any) -> HistoryPlanner:
    """The planner behind :func:`create_history_hook` (shared with the agent middleware)."""
    if graph is None:
        window = options.get("context_window")
        graph = create_rlm_graph(model, window, mode="focused")
    templates = {**HISTORY_PROGRESS_MESSAGES, **(options.pop("progress_messages", None) or {})}
    return HistoryPlanner(model, graph, progress_messages=templates, **options)

