"""Studio's graph view: the analysis graph's nodes show inside a chat graph (get_graph(xray=True))."""

from langgraph.graph import END, START, StateGraph

from rlm_graph import DocumentChatState, ExtractiveChatModel, create_document_node, create_rlm_graph

ANALYSIS_NODES = {"check", "split", "process_chunk", "synthesize", "direct_answer"}


def test_analysis_graph_has_one_first_and_one_last_node() -> None:
    drawn = create_rlm_graph(ExtractiveChatModel()).get_graph()
    # An edgeless error-handler node would be a second "first" and "last" node, and stop xray expansion.
    assert drawn.first_node() is not None
    assert drawn.first_node().id == "__start__"
    assert drawn.last_node() is not None
    assert drawn.last_node().id == "__end__"
    edges = {(edge.source, edge.target) for edge in drawn.edges}
    assert ("process_chunk", "__error_handler__process_chunk") in edges
    assert ("__error_handler__process_chunk", "synthesize") in edges


def test_compiled_analysis_graph_added_as_a_node_expands() -> None:
    builder = StateGraph(DocumentChatState)
    builder.add_node("rlm", create_rlm_graph(ExtractiveChatModel()))
    builder.add_edge(START, "rlm")
    builder.add_edge("rlm", END)
    nodes = set(builder.compile().get_graph(xray=True).nodes)
    assert {f"rlm:{name}" for name in ANALYSIS_NODES} <= nodes
    assert "rlm" not in nodes


def test_document_node_in_a_chat_graph_expands_in_xray() -> None:
    model = ExtractiveChatModel()
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse_document", create_document_node(model, create_rlm_graph(model)))
    builder.add_edge(START, "analyse_document")
    builder.add_edge("analyse_document", END)
    chat = builder.compile()
    assert set(chat.get_graph().nodes) == {"__start__", "analyse_document", "__end__"}
    drawn = chat.get_graph(xray=True)
    assert {f"analyse_document:{name}" for name in ANALYSIS_NODES} <= set(drawn.nodes)
    edges = {(edge.source, edge.target) for edge in drawn.edges}
    assert ("__start__", "analyse_document:check") in edges
    # Several nodes end the analysis, so LangGraph keeps its __end__ as the box's exit.
    assert ("analyse_document:__end__", "__end__") in edges
    assert ("analyse_document:synthesize", "analyse_document:__end__") in edges
    assert "subgraph analyse_document" in drawn.draw_mermaid()


def test_example_chat_service_graph_expands_in_xray() -> None:
    from examples.chat_service import build_chat_graph

    drawn = build_chat_graph(ExtractiveChatModel()).get_graph(xray=True)
    assert {f"analyse_document:{name}" for name in ANALYSIS_NODES} <= set(drawn.nodes)
    assert "small_talk" in drawn.nodes
