from pathlib import Path

import pytest
import rlm_graph.nodes.entry as entry

from rlm_graph import ExtractiveChatModel, create_rlm_graph
from tests.fakes import PerfectReader, plant_needles

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.mmd"


def test_mermaid_snapshot() -> None:
    graph = create_rlm_graph(ExtractiveChatModel())
    drawn = graph.get_graph().draw_mermaid()
    if not SNAPSHOT.exists():  # pragma: no cover - first run writes it
        SNAPSHOT.write_text(drawn)
    assert drawn == SNAPSHOT.read_text()


def test_exactly_the_seven_nodes() -> None:
    graph = create_rlm_graph(ExtractiveChatModel())
    # LangGraph adds __start__, __end__ and the error handler's __error_handler__process_chunk.
    ours = {name for name in graph.get_graph().nodes if not name.startswith("__")}
    # The reading nodes, and beside them navigate mode's loop (the root model and its ToolNode).
    assert ours == {"check", "split", "process_chunk", "synthesize", "direct_answer", "navigate", "navigate_tools"}


def test_input_and_output_schemas() -> None:
    graph = create_rlm_graph(ExtractiveChatModel())
    assert set(graph.get_input_jsonschema()["properties"]) == {"document", "question"}
    assert set(graph.get_output_jsonschema()["properties"]) == {"answer", "citations", "usage", "errors"}


def test_context_window_defaults_to_profile() -> None:
    graph = create_rlm_graph(PerfectReader(window=4096, reserved_output=512))
    assert graph.name == "rlm"


def test_unknown_window_says_to_pass_it() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    with pytest.raises(ValueError, match="context_window="):
        create_rlm_graph(FakeListChatModel(responses=["x"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_depth": -1}, "max_depth"),
        ({"max_fanout": 1}, "max_fanout"),
        ({"read_part_prompt": "no fields"}, "read_part_prompt"),
        ({"synthesize_prompt": "{question} {findings} {bogus}"}, "bogus"),
        ({"max_output_tokens": 5000}, "max_output_tokens"),
        ({"chunk_overlap": 4000}, "chunk_overlap"),
    ],
)
def test_bad_options_fail_at_build_time(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_rlm_graph(ExtractiveChatModel(), **kwargs)


def test_model_must_be_a_chat_model() -> None:
    with pytest.raises(TypeError, match="BaseChatModel"):
        create_rlm_graph("gpt-4o", context_window=8192)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapper", ["RunnableCallable", "RunnableLambda"])
async def test_nodes_work_with_either_node_wrapper(
    wrapper: str, monkeypatch: pytest.MonkeyPatch, frankenstein: str
) -> None:
    # Nodes are LangGraph's RunnableCallable, an internal class; a LangGraph that moves it
    # gets langchain_core's RunnableLambda instead, and the graph must answer the same.
    if wrapper == "RunnableLambda":
        monkeypatch.setattr(entry, "RunnableCallable", None)
    graph = create_rlm_graph(PerfectReader(window=8192), cache=False)
    assert type(graph.nodes["split"].bound).__name__ == wrapper
    text, facts, _ = plant_needles(frankenstein[:150_000], 4)
    answers = [
        graph.invoke({"document": text, "question": "List every NEEDLE code."})["answer"],
        (await graph.ainvoke({"document": text, "question": "List every NEEDLE code."}))["answer"],
    ]
    assert all(fact in answer for fact in facts for answer in answers)
