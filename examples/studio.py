"""The analysis graph as served by ``langgraph dev`` (see langgraph.json).

Offline it uses the bundled extractive model. Set OPENAI_API_KEY or OPENAI_BASE_URL
to use ChatOpenAI, RLM_MODEL to name the model, and RLM_CONTEXT_WINDOW for a model
LangChain has no profile for (any model of a local server): ``model_from_env``
reads them, as every example and the CLI do.
"""

from rlm_graph import create_rlm_graph, model_from_env

graph = create_rlm_graph(model_from_env()[0])
