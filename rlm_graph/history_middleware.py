"""The history hook as middleware of LangChain's agent factory (``langchain.agents.create_agent``).

``create_agent`` (LangChain 1.x) has no ``pre_model_hook``; its middleware is the
equivalent. ``wrap_model_call`` is used rather than ``before_model``: it changes
the messages of this one model call only, so nothing (digest included) is written
to the agent's state, and it can answer without calling the model when the latest
message does not fit. Needs ``pip install "rlm-graph[agents]"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.history import HistoryPlan, create_history_hook, history_from_options

__all__ = ["HistoryMiddleware"]


class HistoryMiddleware(AgentMiddleware):
    """Fit a long thread into the model's window in ``create_agent``; older turns read when needed.

    Takes the same arguments as :func:`rlm_graph.history.create_history_hook` (except
    ``name``). Each model call gets the recent turns verbatim and, when the latest user
    message is about older turns, a cited digest of them; the agent's state keeps
    every message and never the digest. An oversized latest message is answered with
    ``too_long_message`` without a model call.
    """

    def __init__(self, model: BaseChatModel, graph: CompiledStateGraph | None = None, **options: Any) -> None:
        super().__init__()
        self.history = history_from_options(model, graph, **_with_defaults(options))

    def _request(self, request: ModelRequest, plan: HistoryPlan) -> ModelRequest:
        return request.override(messages=plan.messages)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage:
        system = [request.system_message] if request.system_message is not None else []
        plan = self.history.run(request.messages, system)
        if plan.reply is not None:
            return AIMessage(plan.reply)
        return handler(self._request(request, plan))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse | AIMessage:
        system = [request.system_message] if request.system_message is not None else []
        plan = await self.history.arun(request.messages, system)
        if plan.reply is not None:
            return AIMessage(plan.reply)
        return await handler(self._request(request, plan))


def _with_defaults(options: dict[str, Any]) -> dict[str, Any]:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(create_history_hook).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "name"
    }
    unknown = set(options) - set(defaults)
    if unknown:
        msg = f"unknown HistoryMiddleware option(s): {', '.join(sorted(unknown))}"
        raise TypeError(msg)
    return {**defaults, **options}
