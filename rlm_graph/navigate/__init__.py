"""Navigate mode: the root model explores the document with tools and aggregates exactly.

The Recursive Language Model's own strategy, without code execution: the root model gets
the question, the document's size and an outline, and works with the tools ``search``,
``grep``, ``peek``, ``ask``, ``ask_all`` and ``final``. It runs as two nodes of the same
compiled graph, ``navigate`` (the root model) and ``navigate_tools`` (LangGraph's
``ToolNode``), in a loop that Studio shows and checkpointers make durable. ``ask`` on a
span too large for one call invokes the same graph on it (the recursion), under the run's
shared limiter and budgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.constants import TAG_HIDDEN
from langgraph.graph import END, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode

from rlm_graph.navigate.node import NavState, bind_root_model, make_navigate
from rlm_graph.navigate.options import (
    DEFAULT_MAX_STEPS,
    NAVIGATE_MESSAGES,
    NAVIGATE_PROMPT,
    NAVIGATE_SYSTEM_PROMPT,
    NavigateOptions,
    check_max_steps,
    tool_calling_error,
)
from rlm_graph.navigate.tools import MESSAGES_KEY, Navigation
from rlm_graph.navigate.toolset import final_tool, make_tools
from rlm_graph.settings import Settings

__all__ = [
    "DEFAULT_MAX_STEPS",
    "NAVIGATE_MESSAGES",
    "NAVIGATE_PROMPT",
    "NAVIGATE_SYSTEM_PROMPT",
    "NavState",
    "NavigateOptions",
    "add_navigate_nodes",
    "check_max_steps",
    "hide_navigate_nodes",
    "tool_calling_error",
]


def add_navigate_nodes(
    builder: StateGraph,
    settings: Settings,
    options: NavigateOptions,
    model_node_options: dict[str, Any],
    graph: Callable[[], Runnable],
) -> bool:
    """Add ``navigate`` and ``navigate_tools`` to the graph.

    Args:
        builder: The graph builder.
        settings: The graph's settings.
        options: The navigator's options.
        model_node_options: Options of model-calling nodes (the retry policy).
        graph: Returns the compiled graph (bound late), which ``ask`` invokes on a span too large for one call.

    Returns:
        Whether the root model supports tool calling (else choosing navigate raises).
    """
    navigation = Navigation(settings, options, graph)
    tools = make_tools(navigation)
    bound_tools = [*tools, final_tool()]
    root_model = settings.large_model or settings.model
    bound = bind_root_model(root_model, bound_tools)
    builder.add_node(
        "navigate",
        make_navigate(navigation, bound, bound_tools, tool_calling_error(root_model)),
        input_schema=NavState,
        destinations=("navigate_tools", END),
        **model_node_options,
    )
    # Tool errors the model can fix (bad arguments, unknown tool) come back to it as messages;
    # the tools themselves return their own problems as text and let real failures raise.
    builder.add_node(
        "navigate_tools", ToolNode(tools, messages_key=MESSAGES_KEY, name="navigate_tools"), input_schema=NavState
    )
    builder.add_edge("navigate_tools", "navigate")
    return bound is not None


def hide_navigate_nodes(graph: CompiledStateGraph) -> None:
    """Keep the root model's conversation out of what a chat UI receives.

    LangGraph's ``stream_mode="messages"`` also yields the messages a node returns;
    ``navigate`` and ``navigate_tools`` return the root model's tool calls and their
    results, which are the navigation's own bookkeeping. Tagged hidden (LangGraph's
    ``TAG_HIDDEN``, as it does for its own ``__start__`` node), they are not streamed
    as messages nor as ``updates``; progress still arrives as custom events and the
    answer in the graph's output.

    Args:
        graph: The compiled analysis graph (changed in place).
    """
    for name in ("navigate", "navigate_tools"):
        node = graph.nodes.get(name)
        if node is not None and TAG_HIDDEN not in (node.tags or ()):
            node.tags = [*(node.tags or ()), TAG_HIDDEN]
