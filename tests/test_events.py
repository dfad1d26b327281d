"""The progress stream: one event shape, correct done/total at every depth."""

from collections import defaultdict
from typing import get_type_hints

from langgraph.graph import END, START, MessagesState, StateGraph

from rlm_graph import ProgressEvent, RLMContext, UsageEvent, create_rlm_graph
from tests.fakes import PerfectReader, insert_at_paragraph, plant_needles
from tests.helpers import collect

QUESTION = "List every NEEDLE code."
STAGES = {"check", "split", "analysis", "synthesis", "direct"}
STATUSES = {"started", "processing", "done", "failed", "cached"}


def check_shapes(events: list[dict]) -> None:
    progress_keys = set(get_type_hints(ProgressEvent))
    usage_keys = set(get_type_hints(UsageEvent))
    for event in events:
        if event["type"] == "progress":
            assert ProgressEvent.__required_keys__ <= set(event) <= progress_keys
            assert event["stage"] in STAGES
            assert event["status"] in STATUSES
            assert isinstance(event["message"], str)
            assert event["message"]
            assert 0 <= event["done"] <= max(event["total"], 1)
            assert event["span"] is None or event["span"][0] < event["span"][1]
        else:
            assert event["type"] == "usage"
            assert UsageEvent.__required_keys__ <= set(event) <= usage_keys


def check_bars(events: list[dict]) -> None:
    """Each (depth, scope) analysis bar counts 1..total exactly once, in order."""
    finished = defaultdict(list)
    totals = {}
    for event in events:
        if event["type"] == "progress" and event["stage"] == "analysis" and event["status"] in {"done", "failed"}:
            key = (event["depth"], tuple(event["scope"]))
            finished[key].append(event["done"])
            totals[key] = event["total"]
    assert finished
    for key, values in finished.items():
        assert values == list(range(1, totals[key] + 1)), key


async def test_events_through_all_depths(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein, 10)
    graph = create_rlm_graph(PerfectReader())
    out, events = await collect(graph, {"document": text, "question": QUESTION})
    check_shapes(events)
    check_bars(events)
    depths = {e["depth"] for e in events}
    assert depths == {0, 1}
    final_usage = [e for e in events if e["type"] == "usage" and e["depth"] == 0]
    assert len(final_usage) == 1
    assert final_usage[0]["llm_calls"] == out["usage"]["llm_calls"]
    assert events[-1]["type"] == "usage"


async def test_without_subgraphs_only_top_level_events(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader())
    events = [
        chunk async for chunk in graph.astream({"document": frankenstein, "question": QUESTION}, stream_mode="custom")
    ]
    assert {e["depth"] for e in events} == {0}
    check_bars(events)


def test_sync_stream_has_events(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader())
    events = [
        chunk
        for _, chunk in graph.stream(
            {"document": frankenstein, "question": QUESTION}, stream_mode="custom", subgraphs=True
        )
    ]
    check_shapes(events)
    check_bars(events)
    assert {e["depth"] for e in events} == {0, 1}


class ChatState(MessagesState):
    document: str
    question: str
    answer: str


async def test_nested_in_a_parent_graph_needs_subgraphs(frankenstein: str) -> None:
    rlm = create_rlm_graph(PerfectReader(), cache=False)  # the same question is streamed twice below
    parent = StateGraph(ChatState)
    parent.add_node("analyse", rlm)
    parent.add_edge(START, "analyse")
    parent.add_edge("analyse", END)
    app = parent.compile()
    text, facts, _ = plant_needles(frankenstein, 5)
    payload = {"messages": [], "document": text, "question": QUESTION}
    top_only = [c async for c in app.astream(payload, stream_mode="custom")]
    assert top_only == []
    events, final = [], None
    async for namespace, mode, chunk in app.astream(payload, stream_mode=["custom", "values"], subgraphs=True):
        if mode == "custom":
            events.append(chunk)
        elif namespace == ():
            final = chunk
    check_shapes(events)
    check_bars(events)
    assert {e["depth"] for e in events} == {0, 1}
    assert all(fact in final["answer"] for fact in facts)


async def test_progress_messages_can_be_korean(frankenstein: str) -> None:
    korean = {
        "analysis.done": "{total}개 중 {done}개 부분을 읽었습니다",
        "split.done": "{total}개 부분으로 나누었습니다",
    }
    graph = create_rlm_graph(PerfectReader())
    _, events = await collect(
        graph, {"document": frankenstein, "question": QUESTION}, context=RLMContext(progress_messages=korean)
    )
    done = [e["message"] for e in events if e.get("stage") == "analysis" and e["status"] == "done"]
    assert done
    assert all(m.endswith("부분을 읽었습니다") for m in done)
    built = create_rlm_graph(PerfectReader(), progress_messages=korean)
    _, events = await collect(built, {"document": frankenstein, "question": QUESTION})
    assert any(e["message"].endswith("나누었습니다") for e in events if e.get("stage") == "split")


def _reading_prompts(reader: PerfectReader) -> list[str]:
    return [p for p in reader.prompts if "<document_part" in p and '<finding id="' not in p]


def _leaf_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "progress" and e["stage"] == "analysis" and "leaves_total" in e]


async def test_leaf_counts_are_run_wide_across_depths(frankenstein: str) -> None:
    """One overall bar: leaves_done / leaves_total count reading calls of every depth."""
    text, _, _ = plant_needles(frankenstein, 10)
    reader = PerfectReader()
    graph = create_rlm_graph(reader, cache=False)
    _, events = await collect(graph, {"document": text, "question": QUESTION})
    leaf_events = _leaf_events(events)
    reads = len(_reading_prompts(reader))
    assert {e["depth"] for e in leaf_events} == {0, 1}
    assert {e["leaves_total"] for e in leaf_events} == {reads}
    done = [e["leaves_done"] for e in leaf_events]
    assert done == sorted(done)
    assert done[-1] == reads
    # Each finished reading call moves the run-wide count by exactly one.
    finished_reads = [e for e in leaf_events if e["status"] == "done" and "Read " in e["message"]]
    assert len({e["leaves_done"] for e in finished_reads}) >= reads - 1


async def test_failed_part_still_settles_its_leaves(frankenstein: str) -> None:
    text, _ = insert_at_paragraph(frankenstein, "POISON-SPAN", 150_000)

    def fail(prompt: str, _: int) -> BaseException | None:
        return ValueError("unreadable") if "POISON-SPAN" in prompt and '<finding id="' not in prompt else None

    reader = PerfectReader(fail=fail)
    graph = create_rlm_graph(reader, cache=False)
    out, events = await collect(graph, {"document": text, "question": QUESTION})
    assert out["errors"]
    leaf_events = _leaf_events(events)
    assert any(e["status"] == "failed" for e in leaf_events)
    assert leaf_events[-1]["leaves_done"] == leaf_events[-1]["leaves_total"]


async def test_focused_rounds_add_to_the_leaf_total(frankenstein: str) -> None:
    """Focused reading plans its leaves round by round; the bar ends full, never past it."""
    reader = PerfectReader()
    graph = create_rlm_graph(reader, mode="focused", max_concurrency=4)
    _, events = await collect(graph, {"document": frankenstein, "question": "What is NEEDLE-9999?"})
    leaf_events = _leaf_events(events)
    totals = [e["leaves_total"] for e in leaf_events]
    assert totals == sorted(totals)
    assert len(set(totals)) > 1  # later rounds grew the total
    assert all(e["leaves_done"] <= e["leaves_total"] for e in leaf_events)
    assert leaf_events[-1]["leaves_done"] == leaf_events[-1]["leaves_total"] == len(_reading_prompts(reader))
