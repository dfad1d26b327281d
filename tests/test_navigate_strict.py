"""Navigate mode reads what the models wrote, or says it could not: tool arguments, root replies, ask_all replies."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage

from rlm_graph import create_rlm_graph
from tests.fakes import PerfectReader
from tests.navigator_fakes import ScriptedNavigator, call, calls, tool_results
from tests.test_navigate import needle_document


def _graph(navigator: ScriptedNavigator, **kwargs: Any) -> Any:
    options = {"context_window": navigator.window, "part_tokens": 2048, "cache": False, "mode": "navigate"}
    return create_rlm_graph(navigator, **{**options, **kwargs})


async def _run(graph: Any, payload: dict[str, Any], use_async: bool) -> dict[str, Any]:
    return await graph.ainvoke(payload) if use_async else graph.invoke(payload)


def _final(answer: str) -> Any:
    return lambda _messages: AIMessage("", tool_calls=[call("final", answer=answer, citations=[])])


# r28: a blank span is reported to the root model, never a crash.


@pytest.mark.parametrize("use_async", [False, True])
async def test_ask_on_blank_spans_says_there_is_nothing_to_read(use_async: bool) -> None:
    document, _ = needle_document()
    # A stretch of blank lines larger than one reading call (page layout, padding), and a small one.
    large = "\n" * 5 + (" " * 79 + "\n") * 2500
    small = "\n" + " " * 300 + "\n"
    document = document[:30_000] + large + document[30_000:60_000] + small + document[60_000:]
    large_span = [30_000, 30_000 + len(large)]
    small_start = 60_000 + len(large)
    small_span = [small_start, small_start + len(small)]
    needle = document.index("NEEDLE-0042")
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(
                call(
                    "ask",
                    question="What is NEEDLE-0042?",
                    spans=[large_span, small_span, [needle - 300, needle + 300]],
                )
            ),
            _final("NEEDLE-0042 is QUASAR"),
        ],
    )
    out = await _run(_graph(navigator), {"document": document, "question": "What is NEEDLE-0042?"}, use_async)
    result = tool_results(navigator.root_prompts[-1])[-1]
    assert f"nothing to read in characters {large_span[0]}-{large_span[1]}" in result
    assert f"nothing to read in characters {small_span[0]}-{small_span[1]}" in result
    assert "NEEDLE-0042 is QUASAR" in result  # the other span is read as usual
    assert out["answer"].startswith("NEEDLE-0042 is QUASAR")
    assert not out["errors"]
