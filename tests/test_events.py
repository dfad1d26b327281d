"""The progress stream: one event shape, correct done/total at every depth."""

import re
import string
from collections import defaultdict
from typing import get_type_hints

import pytest
from langgraph.graph import END, START, MessagesState, StateGraph
from rlm_graph.state import USAGE_COUNTERS

from rlm_graph import DEFAULT_PROGRESS_MESSAGES, ProgressEvent, RLMContext, UsageEvent, create_rlm_graph
from rlm_graph.history import HISTORY_PROGRESS_MESSAGES
from rlm_graph.navigate.options import NAVIGATE_MESSAGES
from rlm_graph.progress import format_message
from tests.fakes import PerfectReader, insert_at_paragraph, plant_needles
from tests.helpers import collect

QUESTION = "List every NEEDLE code."
STAGES = {"check", "split", "analysis", "synthesis", "direct"}
STATUSES = {"started", "processing", "done", "failed", "cached", "retrying"}


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


async def test_nested_messages_name_their_parent_and_only_the_run_finishes(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein, 10)
    out, events = await collect(create_rlm_graph(PerfectReader()), {"document": text, "question": QUESTION})
    check_shapes(events)
    progress = [e for e in events if e["type"] == "progress"]
    nested = [e for e in progress if e["depth"] == 1]
    assert nested
    assert all(e["path"] == [] for e in progress if e["depth"] == 0)
    # Which depth-0 part each nested level reads: its "still too long" event names it.
    recursing = {
        int(re.match(r"Part (\d+) of", e["message"]).group(1)): e["span"]
        for e in progress
        if e["depth"] == 0 and e["stage"] == "analysis" and "still too long" in e["message"]
    }
    for event in nested:
        ((index, total),) = event["path"]
        assert event["message"].startswith(f"Part {index} of {total} > ")
        assert event["scope"] == recursing[index]
    # "Answer ready" and the usage event come once, from the run, at the end.
    assert [e["message"] for e in progress if "Answer ready" in e["message"]] == ["Answer ready"]
    assert progress[-1]["message"] == "Answer ready"
    usage_events = [e for e in events if e["type"] == "usage"]
    assert len(usage_events) == 1
    assert events[-1] is usage_events[0]
    assert usage_events[0]["depth"] == 0
    assert {k: v for k, v in usage_events[0].items() if k not in {"type", "depth", "scope"}} == out["usage"]


@pytest.mark.parametrize("chars", [2_000, 300_000], ids=["one call", "nested"])
async def test_usage_always_holds_every_counter(frankenstein: str, chars: int) -> None:
    out, _ = await collect(create_rlm_graph(PerfectReader()), {"document": frankenstein[:chars], "question": QUESTION})
    assert set(USAGE_COUNTERS) <= set(out["usage"])
    assert out["usage"]["failed_parts"] == 0
    assert out["usage"]["cached_calls"] == 0
    assert out["usage"]["unparsed_replies"] == 0


def _numbers(template: str) -> set[str]:
    names = set()
    for _, field, spec, _ in string.Formatter().parse(template):
        if field and (field in _NUMERIC or (spec and "|" in spec)):
            names.add(field)
    return names


_NUMERIC = {"count", "total", "done", "parts", "skipped", "read", "unread", "step", "calls", "tokens", "chars",
            "index", "more", "attempt", "attempts", "depth", "max_steps", "start", "end"}
_PLURAL_NOUNS = r"(?:parts?|findings?|quotes?|messages?|calls?|tokens?|steps?|groups?|levels?|characters?)"


@pytest.mark.parametrize(
    "templates",
    [DEFAULT_PROGRESS_MESSAGES, HISTORY_PROGRESS_MESSAGES, NAVIGATE_MESSAGES],
    ids=["analysis", "history", "navigate"],
)
def test_shipped_templates_say_one_and_many_right(templates: dict[str, str]) -> None:
    for key, template in templates.items():
        if not _numbers(template):
            continue
        for n in (1, 2):
            words = {field: "X" for _, field, _, _ in string.Formatter().parse(template) if field}
            text = format_message(templates, key, **(words | dict.fromkeys(_numbers(template), n)))
            assert "(s)" not in text, (key, text)
            # "1 part", "2 parts", "Read 1 of 1 part": the noun after a number agrees with it.
            for number, noun in re.findall(rf"\b(\d+) (?:of \d+ )?(?:[a-z]+ )?({_PLURAL_NOUNS})\b", text):
                if noun in {"characters", "character"} or number != str(n):
                    continue
                assert noun.endswith("s") == (n != 1), (key, text)


def test_plural_forms_and_number_formats_in_templates() -> None:
    templates = {"x": "{n:,} {n:finding|findings} in {total} {total:part|parts}; {missing:a|b}"}
    assert format_message(templates, "x", n=1, total=3) == "1 finding in 3 parts; {missing:a|b}"
    assert format_message(templates, "x", n=1200, total=1) == "1,200 findings in 1 part; {missing:a|b}"
