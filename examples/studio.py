"""The analysis graph as served by ``langgraph dev`` (see langgraph.json).

Offline it uses the bundled extractive model; set OPENAI_API_KEY or OPENAI_BASE_URL
(and RLM_MODEL, RLM_CONTEXT_WINDOW for models LangChain has no profile for) to use
ChatOpenAI.
"""

import os

from rlm_graph import create_rlm_graph, model_from_env

_window = os.environ.get("RLM_CONTEXT_WINDOW")
graph = create_rlm_graph(model_from_env()[0], context_window=int(_window) if _window else None)
