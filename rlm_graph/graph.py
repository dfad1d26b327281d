"""The graph factory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer, RetryPolicy, TimeoutPolicy

from rlm_graph import prompts
from rlm_graph.cache import BoundedInMemoryCache, ReplyCache
from rlm_graph.context import RLMContext
from rlm_graph.errors import is_transient_error, is_unreachable
from rlm_graph.estimate import register
from rlm_graph.index_cache import IndexCache
from rlm_graph.lifetime import owning_runs
from rlm_graph.navigate import (
    DEFAULT_MAX_STEPS,
    NavigateOptions,
    add_navigate_nodes,
    check_max_steps,
    hide_navigate_nodes,
)
from rlm_graph.navigate import tool_calling_error as _tool_calling_error
from rlm_graph.nodes import (
    make_check,
    make_chunk_error_handler,
    make_direct_answer,
    make_process_chunk,
    make_split,
    make_synthesize,
    route_after_check,
)
from rlm_graph.options import (
    DEFAULT_PART_TOKENS,
    FocusOptions,
    check_build_options,
    check_relay_options,
    check_reply_format,
    check_run_options,
    output_budget,
    planned_window,
)
from rlm_graph.progress import DEFAULT_PROGRESS_MESSAGES
from rlm_graph.relay import CONFIDENCE_INSTRUCTION
from rlm_graph.retrieval import Retriever, check_retriever, default_retriever
from rlm_graph.settings import Settings
from rlm_graph.state import ChunkTask, RLMInput, RLMOutput, RLMState
from rlm_graph.timeouts import call_timeout_seconds
from rlm_graph.tokens import TokenCounter, counter_for_model, safety_margin

CONNECTION_RETRY_POLICY = RetryPolicy(
    initial_interval=0.5,
    backoff_factor=2.0,
    max_interval=2.0,
    max_attempts=4,
    jitter=False,
    retry_on=is_unreachable,
)
"""A server that cannot be connected to (connection refused, unknown host) is tried three
more times within 3.5 s: a local server that is starting up gets a moment, one that is
not running fails the run in seconds, not after the minute of backoff a 503 deserves."""

DEFAULT_RETRY_POLICY = RetryPolicy(
    initial_interval=1.0,
    backoff_factor=2.0,
    max_interval=30.0,
    max_attempts=5,
    jitter=True,
    retry_on=is_transient_error,
)
"""Retries 429s, 5xx, timeouts and lost connections; never a 400 such as a context overflow."""

DEFAULT_RETRY_POLICIES = (CONNECTION_RETRY_POLICY, DEFAULT_RETRY_POLICY)
"""``create_rlm_graph``'s default: LangGraph applies the first policy whose ``retry_on`` matches."""


def _policies(retry_policy: RetryPolicy | Sequence[RetryPolicy] | None) -> tuple[RetryPolicy, ...]:
    if retry_policy is None:
        return ()
    return (retry_policy,) if isinstance(retry_policy, RetryPolicy) else tuple(retry_policy)


def _draw_error_route(builder: StateGraph, node: str, goto: str) -> None:
    """Give ``node``'s error handler its edges in drawings: ``node -.-> handler -.-> goto``.

    LangGraph adds the handler node without edges, so a drawing has two nodes
    without incoming edges and two without outgoing ones; ``first_node()`` and
    ``last_node()`` are then ``None`` and ``get_graph(xray=True)`` of a parent
    graph cannot expand this graph. Declared ends only shape drawings: at run
    time a failure still reaches the handler through ``error_handler``, and the
    handler's ``Command(goto=...)`` routes it.
    """
    handler = builder.nodes[node].error_handler_node
    if handler is None:
        return
    ends = builder.nodes[node].ends or ()
    builder.nodes[node].ends = (*ends, handler)
    builder.nodes[handler].ends = (goto,)


def create_rlm_graph(
    model: BaseChatModel,
    context_window: int | None = None,
    max_concurrency: int = 8,
    max_depth: int = 8,
    checkpointer: Checkpointer = None,
    cache: BaseCache | Literal[False] | None = None,
    name: str = "rlm",
    *,
    max_output_tokens: int | None = None,
    part_tokens: int = DEFAULT_PART_TOKENS,
    chunk_overlap: int = 0,
    max_fanout: int | None = None,
    token_counter: TokenCounter | None = None,
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = DEFAULT_RETRY_POLICIES,
    timeout: float | TimeoutPolicy | None = None,
    cache_ttl: int | None = 3600,
    max_llm_calls: int | None = None,
    max_input_tokens: int | None = None,
    on_budget: Literal["error", "partial"] = "error",
    system_prompt: str = prompts.SYSTEM_PROMPT,
    read_part_prompt: str = prompts.READ_PART_PROMPT,
    direct_answer_prompt: str = prompts.DIRECT_ANSWER_PROMPT,
    synthesize_prompt: str = prompts.SYNTHESIZE_PROMPT,
    no_answer_message: str = prompts.NO_ANSWER_MESSAGE,
    empty_document_message: str = prompts.EMPTY_DOCUMENT_MESSAGE,
    progress_messages: Mapping[str, str] | None = None,
    large_model: BaseChatModel | None = None,
    escalate_below: float = 0.5,
    prices: Mapping[str, tuple[float, ...]] | None = None,
    mode: Literal["full", "focused", "auto", "navigate"] = "full",
    retriever: Retriever | None = None,
    max_focused_parts: int | float = 0.2,
    index_cache_size: int = 16,
    max_steps: int = DEFAULT_MAX_STEPS,
    prompt_cache_markers: bool = False,
    read_ahead: bool = True,
    reply_format: Literal["auto", "structured", "text"] = "auto",
) -> CompiledStateGraph[RLMState, RLMContext, RLMInput, RLMOutput]:
    """Build the document-analysis graph.

    The graph answers ``{"document", "question"}`` with ``{"answer", "citations",
    "usage", "errors"}``. A document that fits one call is answered directly;
    a longer one is split into parts that are read in parallel (a part still too
    large is handed to a nested invocation of this same graph), and the
    findings are combined into one answer.

    Args:
        model: Any LangChain chat model; plain text in and out is enough.
        context_window: The model's window in tokens. Defaults to
            ``model.profile["max_input_tokens"]``.
        max_concurrency: Most model calls in flight at once per run, across
            all depths together.
        max_depth: Deepest nesting level (0 = parts must fit one call).
        checkpointer: Checkpointer for durable runs; when the graph is a
            subgraph, leave ``None`` to use the parent's.
        cache: Backend of the reply cache, any LangGraph ``BaseCache``. Each
            model reply is cached under the model's identity (class, endpoint,
            deployment, headers, sampling settings; credentials only hashed) and
            the exact messages sent, so asking the same question about the same
            document again makes no model call, and a hit counts no calls or
            tokens in ``usage`` (only ``cached_calls`` and ``cached_parts``).
            ``None`` (the default) keeps a ``BoundedInMemoryCache`` per graph
            (least recently used first, 10,000 replies or 64 MiB at most); pass
            a ``SqliteCache`` to share replies across processes, or ``False`` to
            disable caching. Failures and empty replies are never cached.
        name: Name of the compiled graph.
        max_output_tokens: Tokens reserved for each call's reply. Defaults to
            an eighth of the window, between 256 and 2048.
        part_tokens: Most document tokens one reading call holds (16,384 by
            default), or what the window allows if that is less. Long prompts are
            read worse than short ones, so a document larger than this is split
            even when it fits the window; synthesis and the fan-out still use the
            whole window. Per run: ``RLMContext(part_tokens=...)``.
        chunk_overlap: Tokens of the previous part repeated at the start of
            each part that is read directly.
        max_fanout: Upper bound on parts per level (the window sets another).
        token_counter: Counter to use instead of the model's own or cl100k_base.
        retry_policy: Retry policy of the model-calling nodes, or several (LangGraph
            applies the first that matches the error). The default retries an
            unreachable server briefly (``CONNECTION_RETRY_POLICY``) and other transient
            errors with a longer backoff (``DEFAULT_RETRY_POLICY``). Every retry is
            announced in the progress stream (status ``"retrying"``).
        timeout: Most seconds one model call (one attempt) may take, sync or
            async; a call over it raises ``ModelCallTimeoutError`` (a
            ``TimeoutError``) and is retried by ``retry_policy``. It bounds each
            call, never a node, so a part read by a nested graph is not cut off
            as a whole. A ``TimeoutPolicy`` gives the smaller of its
            ``run_timeout`` and ``idle_timeout`` (a call shows no progress until
            it replies). Sync runs abandon a timed-out call in a worker thread;
            give the client its own timeout too so the request ends.
        cache_ttl: Seconds a cached reply stays valid (``None``: no expiry); an
            hour by default. The default in-memory cache also drops expired
            replies (it is bounded by size and age); other backends drop
            them when they are read again.
        max_llm_calls: Most model calls per run, all depths together.
        max_input_tokens: Most prompt tokens per run, all depths together.
        on_budget: When the plan exceeds a budget, ``"error"`` raises
            ``BudgetExceededError`` before any call; ``"partial"`` reads the
            document from the start as far as the budget allows and lists the
            skipped spans in ``errors``. Either way no run goes over budget.
        system_prompt: System message of every call.
        read_part_prompt: Template for reading one part (fields ``question``,
            ``text``, ``start``, ``end``, ``no_relevant``).
        direct_answer_prompt: Template for a document that fits one call
            (fields ``question``, ``text``, ``no_relevant``).
        synthesize_prompt: Template for combining findings (fields
            ``question``, ``findings``, ``final_instruction``, ``no_relevant``).
        no_answer_message: Answer when no part says anything relevant.
        empty_document_message: Answer for an empty or whitespace-only document.
        progress_messages: Progress message templates by key, merged over
            ``DEFAULT_PROGRESS_MESSAGES`` (for example in Korean).
        large_model: Relay: with a large model, ``model`` (small and cheap)
            reads the parts and ``large_model`` synthesizes, answers documents
            that fit one call, and re-reads the parts whose small-model reading
            ends with low confidence. Parts are planned for the smaller of the
            two windows.
        escalate_below: Relay: a reading whose stated confidence is below this
            (high = 0.9, medium = 0.6, low = 0.3, cannot tell = 0) is re-read by
            ``large_model``. A reading that states none counts as confident.
        prices: Price per million input and output tokens by role, e.g.
            ``{"model": (0.15, 0.60), "large_model": (2.50, 10.00)}``; adds
            ``cost`` to the usage. A third number prices cached input tokens
            (those the provider reports as read from its prompt cache), e.g.
            ``(0.15, 0.60, 0.075)``; without it they cost the input price.
        mode: ``"full"`` reads every part; ``"focused"`` reads the top-level
            parts most relevant to the question first and stops once the
            findings answer it; ``"auto"`` decides from the question
            (aggregation questions are read in full; it never picks navigate);
            ``"navigate"``: the root model (``large_model`` if given, else
            ``model``; it must support tool calling) explores the document with
            tools (search, grep, peek, ask, ask_all, final) and never sees it
            whole. Per run: ``RLMContext(mode=...)``.
        retriever: Ranks parts for focused reading; ``BM25Retriever()`` (offline,
            the ``retrieval`` extra) by default, or
            ``VectorStoreRetriever(embeddings)``.
        max_focused_parts: Focused reading stops after this many parts (an int)
            or this share of the parts (a float) once something relevant was
            found; with nothing relevant yet it reads on.
        index_cache_size: Part indexes kept in memory (by document hash), so
            follow-up questions on a document reuse its index.
        max_steps: Navigate mode: most root-model calls per run, the last
            (forced final) one included.
        prompt_cache_markers: Mark where each prompt's static prefix
            (instructions and document text) ends with an Anthropic-style
            ``cache_control`` block, for providers that cache a prompt prefix
            only at such markers (Anthropic, Bedrock, OpenRouter). It does
            nothing for OpenAI's and Azure's own endpoints, which cache
            repeated prefixes automatically. Either way every prompt puts the
            document before the question, so a follow-up question on the same
            document is billed mostly at the provider's cached-input price.
        read_ahead: Start reading a long document's first parts while the rest
            is still being planned, so the first model call does not wait for
            the whole document to be tokenized. It applies in full mode without
            a budget (a budget needs the whole plan checked first). Calls made
            ahead show in traces under ``split``, named ``read ahead START-END``
            with ``rlm_kind="read_ahead"``; ``False`` plans first and keeps
            every read under its part.
        reply_format: How the model is asked to reply. ``"structured"`` sends a
            JSON schema with each reading (and focused synthesis) call, as
            ``response_format`` (``with_structured_output(method="json_schema")``);
            ``"text"`` asks for the plain-text format (a ``NO_RELEVANT_INFORMATION``
            marker, ``QUOTE:`` lines); ``"auto"`` (the default) is structured when
            the model supports it (its LangChain profile, or ``ChatOpenAI``) and
            falls back to text for the rest of a run if the server refuses a
            schema. Either way a reply is read strictly: one that cannot be read
            is asked again once with a correction, then counted in
            ``usage["unparsed_replies"]`` and reported (``errors`` of kind
            ``"unparsed"``, and the answer's note). Per run:
            ``RLMContext(reply_format=...)``.

    Returns:
        The compiled graph, ready to invoke or to add as a node of a parent graph.

    Raises:
        ValueError: If an option is out of range, a template lacks a field, or
            the context window is unknown.
        TypeError: If ``model`` is not a chat model.
    """
    if not isinstance(model, BaseChatModel):
        msg = f"model must be a LangChain BaseChatModel, got {type(model).__name__}"
        raise TypeError(msg)
    window = planned_window(model, large_model, context_window)
    checked_prices = check_relay_options(model, large_model, escalate_below, prices)
    check_run_options(
        max_concurrency=max_concurrency,
        max_depth=max_depth,
        max_llm_calls=max_llm_calls,
        max_input_tokens=max_input_tokens,
        on_budget=on_budget,
        mode=mode,
        max_focused_parts=max_focused_parts,
        part_tokens=part_tokens,
    )
    check_max_steps(max_steps)
    check_reply_format(reply_format)
    if retriever is not None:
        check_retriever(retriever)
    elif mode in ("focused", "auto"):
        # navigate's search falls back to word matching without bm25s, so it needs none.
        retriever = default_retriever()  # fail now, not mid-run, if bm25s is missing
    for flag_name, flag in (("prompt_cache_markers", prompt_cache_markers), ("read_ahead", read_ahead)):
        if not isinstance(flag, bool):
            msg = f"{flag_name} must be True or False, got {flag!r}"
            raise TypeError(msg)
    check_build_options(
        max_fanout=max_fanout, chunk_overlap=chunk_overlap, index_cache_size=index_cache_size, cache_ttl=cache_ttl
    )
    output_tokens = output_budget(window, max_output_tokens)
    for template_name, template in (
        ("read_part_prompt", read_part_prompt),
        ("direct_answer_prompt", direct_answer_prompt),
        ("synthesize_prompt", synthesize_prompt),
    ):
        prompts.check_template(template_name, template)
    if cache is not None and cache is not False and not isinstance(cache, BaseCache):
        msg = (
            f"cache must be a LangGraph BaseCache (e.g. SqliteCache), None for the in-memory default, "
            f"or False to disable it; got {type(cache).__name__}"
        )
        raise TypeError(msg)
    # Compared with None/False, never by truth: a cache may define __len__ and be empty.
    backend: BaseCache | None = None if cache is False else BoundedInMemoryCache() if cache is None else cache
    counter = token_counter or counter_for_model(model)
    settings = Settings(
        model=model,
        counter=counter,
        context_window=window,
        max_output_tokens=output_tokens,
        safety_margin=safety_margin(counter, window),
        max_concurrency=max_concurrency,
        max_depth=max_depth,
        max_fanout=max_fanout,
        chunk_overlap=chunk_overlap,
        part_tokens=part_tokens,
        max_llm_calls=max_llm_calls,
        max_input_tokens=max_input_tokens,
        on_budget=on_budget,
        system_prompt=system_prompt,
        read_part_prompt=read_part_prompt + (CONFIDENCE_INSTRUCTION if large_model is not None else ""),
        direct_answer_prompt=direct_answer_prompt,
        synthesize_prompt=synthesize_prompt,
        no_answer_message=no_answer_message,
        empty_document_message=empty_document_message,
        progress_messages={**DEFAULT_PROGRESS_MESSAGES, **(progress_messages or {})},
        large_model=large_model,
        escalate_below=float(escalate_below),
        prices=checked_prices,
        call_timeout=call_timeout_seconds(timeout),
        retrieval=FocusOptions(
            mode=mode,
            retriever=retriever,
            max_focused_parts=max_focused_parts,
            index_cache=IndexCache(index_cache_size),
        ),
        replies=None if backend is None else ReplyCache(backend, cache_ttl),
        prompt_cache_markers=prompt_cache_markers,
        read_ahead=read_ahead,
        retry_policies=_policies(retry_policy),
        reply_format=reply_format,
    )
    # Fail at build time, not on the first run, if even a one-word question leaves no room.
    largest_part = settings.budget_for("?")["part_tokens"]
    if chunk_overlap * 2 > largest_part:
        msg = f"chunk_overlap ({chunk_overlap}) must be at most half of a part ({largest_part} tokens)"
        raise ValueError(msg)

    # No node-level timeout: it would also bound a part that runs a nested graph, killing
    # whole subtrees; timeout= bounds each model call instead (Settings.call_timeout).
    model_node_options: dict[str, Any] = {"retry_policy": retry_policy}

    builder = StateGraph(RLMState, context_schema=RLMContext, input_schema=RLMInput, output_schema=RLMOutput)
    builder.add_node("check", make_check(settings))
    builder.add_node("split", make_split(settings), destinations=("process_chunk", "synthesize"))
    def this_graph() -> CompiledStateGraph:
        # Bound late: a part too large for one call is read by this same graph, nested.
        return graph

    builder.add_node(
        "process_chunk",
        make_process_chunk(settings, this_graph),
        input_schema=ChunkTask,
        error_handler=make_chunk_error_handler(settings),
        **model_node_options,
    )
    _draw_error_route(builder, "process_chunk", "synthesize")
    # Focused reading: synthesize may send the next round of parts back to reading.
    builder.add_node(
        "synthesize", make_synthesize(settings), destinations=("process_chunk", END), **model_node_options
    )
    builder.add_node("direct_answer", make_direct_answer(settings), **model_node_options)
    builder.add_edge(START, "check")
    builder.add_conditional_edges("check", route_after_check, ["direct_answer", "split", "navigate", END])
    # Navigate mode: the root model's loop, beside the reading nodes.
    navigable = add_navigate_nodes(
        builder, settings, NavigateOptions(max_steps=max_steps), model_node_options, this_graph
    )
    if not navigable and mode == "navigate":
        raise ValueError(_tool_calling_error(large_model or model))
    builder.add_edge("process_chunk", "synthesize")
    builder.add_edge("synthesize", END)
    builder.add_edge("direct_answer", END)
    # No node has a cache policy: replies are cached per model call (see rlm_graph.calls),
    # so the nodes always run. The backend is still given to compile so that
    # ``graph.cache`` shows it (for example to clear it).
    graph = owning_runs(builder.compile(checkpointer=checkpointer, cache=backend, name=name))
    hide_navigate_nodes(graph)
    register(graph, settings)
    return graph
