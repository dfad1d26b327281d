"""Navigate mode: window safety, budgets, cancellation, resume, HTTP, the CLI and build-time checks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver

from rlm_graph import RLMContext, create_rlm_graph
from tests.fakes import NEEDLE, PerfectReader, insert_at_paragraph
from tests.navigator_fakes import ScriptedNavigator, call, calls, spans_in, tool_results
from tests.openai_server import ChatServer
from tests.test_navigate import BOOK, needle_document


def _graph(navigator: ScriptedNavigator, **kwargs: Any) -> Any:
    options = {"context_window": navigator.window, "part_tokens": 2048, "cache": False, "mode": "navigate"}
    return create_rlm_graph(navigator, **{**options, **kwargs})


def test_root_conversation_is_compacted_to_fit_the_window() -> None:
    document, _ = needle_document()
    peeks = [calls(call("peek", start=10_000 * n, end=10_000 * n + 9_000)) for n in range(9)]
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[*peeks, calls(call("final", answer="read a lot", citations=[]))],
    )
    result = _graph(navigator).invoke({"document": document, "question": "What happens?"})
    assert result["answer"].split("\n\n")[0] == "read a lot"
    # Each peek was cut to fit its share of the window: only what was shown counts as read.
    assert 0 < result["usage"]["chars_read"] < 9 * 9_000
    # Nine peeks of about a fifth of the window each would overflow it; every root call fitted.
    assert max(navigator.root_tokens) <= 8192
    raw = sum(len(t) for t in tool_results(navigator.root_prompts[-1]))
    assert "[compacted] peek 0-9000" in "\n".join(tool_results(navigator.root_prompts[-1]))
    assert raw < 9 * 9_000
    # The checkpointable conversation is compacted too, not only the copy sent.
    assert result["usage"]["llm_calls"] == 10


def test_budget_runs_out_mid_ask_and_the_answer_says_so() -> None:
    document, _ = needle_document()
    spans = [[0, 3000], [3000, 6000], [6000, 9000]]

    def final_when_told(messages: list[BaseMessage]) -> AIMessage:
        assert "no more tool calls (budget exhausted" in messages[-1].text
        return AIMessage("", tool_calls=[call("final", answer="partial answer", citations=[])])

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(call("ask_all", question="everything", output="count")),
            calls(call("ask", question="q", spans=spans)),
            calls(call("ask", question="q", spans=spans)),
            final_when_told,
        ],
    )
    result = _graph(navigator, max_llm_calls=7).invoke({"document": document, "question": "q"})
    assert result["answer"].startswith("partial answer\n\nThe search stopped before the model finished (budget")
    assert result["usage"]["llm_calls"] <= 7
    first = tool_results(navigator.root_prompts[1])[0]
    assert "needs at least" in first  # ask_all refused up front, nothing spent


async def test_cancellation_in_the_middle_of_a_tool_call() -> None:
    document, _ = needle_document()
    reader = PerfectReader(window=8192, delay=30.0)
    navigator = ScriptedNavigator(
        reader=reader, script=[calls(call("ask", question="q", spans=[[0, 3000], [3000, 6000]]))] * 3
    )
    task = asyncio.ensure_future(_graph(navigator).ainvoke({"document": document, "question": "q"}))
    for _ in range(200):
        if reader.max_in_flight:
            break
        await asyncio.sleep(0.02)
    assert reader.max_in_flight >= 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert len(navigator.root_prompts) == 1  # nothing ran after the cancellation


def test_resume_after_a_crash_with_a_checkpointer() -> None:
    """In-process resume: the root model fails after one tool round; resuming re-runs no tool."""
    document, _ = needle_document()
    reader = PerfectReader(window=8192)

    def final(messages: list[BaseMessage]) -> AIMessage:
        found = NEEDLE.findall(tool_results(messages)[-1])
        return AIMessage("", tool_calls=[call("final", answer="; ".join(found), citations=[])])

    # The second root call dies (as a killed worker would); the third, after resuming, answers.
    script: list[Any] = [
        calls(call("ask", question="NEEDLE?", spans=[[69_000, 72_000]])),
        RuntimeError("killed"),
        final,
    ]
    navigator = ScriptedNavigator(reader=reader, script=script)
    graph = _graph(navigator, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "resume-1"}}
    with pytest.raises(RuntimeError, match="killed"):
        graph.invoke({"document": document, "question": "What is NEEDLE-0042?"}, config)
    assert len(reader.prompts) == 1
    result = graph.invoke(None, config)
    assert result["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    # The read made before the crash counts after the resume (it is in the checkpointed state).
    assert result["usage"]["chars_read"] > 0
    assert len(reader.prompts) == 1  # the ask was not read again
    assert len(navigator.root_prompts) == 3


def test_per_run_context_selects_navigate() -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192), script=[calls(call("final", answer="navigated", citations=[]))]
    )
    graph = _graph(navigator, mode="full")
    result = graph.invoke({"document": document, "question": "q"}, context=RLMContext(mode="navigate"))
    assert result["answer"].split("\n\n")[0] == "navigated"
    # A document that fits one call is still answered directly.
    short = graph.invoke({"document": "NEEDLE-0001 is SHORT.", "question": "q"}, context=RLMContext(mode="navigate"))
    assert short["answer"] == "NEEDLE-0001 is SHORT"


def test_model_without_tool_calling_is_refused_with_the_fix() -> None:
    model = FakeListChatModel(responses=["x"])
    with pytest.raises(ValueError, match=r"bind_tools is not implemented.*mode='full'"):
        create_rlm_graph(model, context_window=8192, mode="navigate")
    graph = create_rlm_graph(model, context_window=8192, part_tokens=256)
    with pytest.raises(ValueError, match="needs a root model with tool calling"):
        graph.invoke({"document": BOOK[:20_000], "question": "q"}, context=RLMContext(mode="navigate"))


def test_progress_events_name_the_tools() -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(call("grep", pattern="NEEDLE-0042"), call("ask", question="q", spans=[[69_000, 72_000]])),
            calls(call("final", answer="x", citations=[])),
        ],
    )
    events = [
        chunk
        for chunk in _graph(navigator).stream({"document": document, "question": "q"}, stream_mode="custom")
        if chunk.get("stage") == "navigate"
    ]
    messages = [event["message"] for event in events]
    assert any(m.startswith('grep({"pattern": "NEEDLE-0042"') for m in messages)
    assert any(m.startswith("ask done: 1 model call,") for m in messages)
    assert messages[-1] == "Answer ready after 2 steps"


async def test_navigate_over_http_with_tool_calls() -> None:
    document, position = insert_at_paragraph(BOOK, "NEEDLE-0042 is QUASAR.", 70_000)

    def navigator(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if not results:
            return [{"name": "grep", "args": {"pattern": "NEEDLE-\\d+"}}]
        if len(results) == 1:
            start, end = spans_in(results[0])[0]
            return [{"name": "ask", "args": {"question": "What is NEEDLE-0042?", "spans": [[start - 200, end + 200]]}}]
        found = NEEDLE.findall(results[-1])
        return [{"name": "final", "args": {"answer": "; ".join(found), "citations": spans_in(results[-1])}}]

    with ChatServer(window=8192, tool_script=navigator) as server:
        model = ChatOpenAI(model="local", base_url=server.base_url, api_key="not-needed", max_retries=0)
        graph = create_rlm_graph(model, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
        result = await graph.ainvoke({"document": document, "question": "What is NEEDLE-0042?"})
    assert result["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    assert "The navigator read <1% of the document" in result["answer"]
    assert any(c["start"] <= position < c["end"] for c in result["citations"])
    assert [r.kind for r in server.requests] == ["direct", "direct", "read", "direct"]
    assert result["usage"]["llm_calls"] == 4
    # Root calls' usage comes from the server's reports (20 completion tokens per tool-call reply).
    assert result["usage"]["output_tokens"] == 3 * 20 + sum(u["completion_tokens"] for u in server.usage)


def test_cli_mode_navigate(tmp_path: Any) -> None:
    from tests.test_cli import run_cli

    filler = "Nothing of note happens on this ordinary day in the village. " * 12
    paragraphs = [filler for _ in range(60)]
    paragraphs[30] = "NEEDLE-0042 is VAULTCODE. " + filler
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")

    def navigator(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if not results:
            return [{"name": "grep", "args": {"pattern": "NEEDLE-0042"}}]
        if len(results) == 1:
            start, end = spans_in(results[0])[0]
            return [{"name": "ask", "args": {"question": "What is NEEDLE-0042?", "spans": [[start, end + 30]]}}]
        return [{"name": "final", "args": {"answer": NEEDLE.findall(results[-1])[0], "citations": []}}]

    with ChatServer(window=4096, tool_script=navigator) as server:
        result = run_cli(
            "ask",
            str(path),
            "What is NEEDLE-0042?",
            "--context-window",
            "4096",
            "--mode",
            "navigate",
            OPENAI_BASE_URL=server.base_url,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("NEEDLE-0042 is VAULTCODE")
    assert 'grep({"pattern": "NEEDLE-0042"' in result.stderr
    # The offline model has no tool calling: a clear error, not a traceback.
    offline = run_cli("ask", str(path), "q", "--mode", "navigate", "--offline")
    assert offline.returncode == 2
    assert "needs a root model with tool calling" in offline.stderr


def test_example_chat_service_can_navigate(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    from pathlib import Path

    from langchain_core.messages import HumanMessage

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    path = Path(__file__).resolve().parent.parent / "examples" / "chat_service.py"
    spec = importlib.util.spec_from_file_location("chat_service_example", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    document, _ = needle_document()

    def final(messages: list[BaseMessage]) -> AIMessage:
        found = NEEDLE.findall(tool_results(messages)[-1])
        return AIMessage("", tool_calls=[call("final", answer="; ".join(found), citations=[])])

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[calls(call("ask", question="What is NEEDLE-0042?", spans=[[69_000, 72_000]])), final],
    )
    chat = module.build_chat_graph(navigator, mode="navigate")
    result = chat.invoke({"messages": [HumanMessage("What is NEEDLE-0042?")], "document": document})
    assert result["messages"][-1].text.startswith("NEEDLE-0042 is QUASAR")
    assert len(navigator.root_prompts) == 2


def test_navigate_resumes_after_sigkill(frankenstein: str, tmp_path: Any) -> None:
    """A worker killed in the middle of ask_all resumes in another process; settled reads are not repeated."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.fakes import plant_needles

    text, facts, _ = plant_needles(frankenstein, 20)
    document = tmp_path / "document.txt"
    document.write_text(text, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent

    def navigator(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if not results:
            return [{"name": "ask_all", "args": {"question": "List every NEEDLE code.", "output": "text"}}]
        return [{"name": "final", "args": {"answer": results[-1], "citations": []}}]

    def worker(server: ChatServer, phase: str) -> subprocess.Popen:
        target = str(tmp_path / "checkpoints.sqlite")
        args = [server.base_url, "sqlite", target, "t-nav", str(document), phase, "navigate"]
        command = [sys.executable, "-m", "tests.resume_worker", *args]
        return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    with ChatServer(delay=0.15, tool_script=navigator) as server:
        first = worker(server, "start")
        deadline = time.monotonic() + 60
        while len([r for r in server.log if r.kind == "read" and r.outcome == "200"]) < 12:
            assert first.poll() is None, first.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the first worker made no progress"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.wait()
        killed_at = len(server.log)
        time.sleep(0.5)
        before = server.log[:killed_at]
        second = worker(server, "resume")
        stdout, stderr = second.communicate(timeout=120)
        after = server.log[killed_at:]
    assert second.returncode == 0, stderr
    out = json.loads(stdout.strip().splitlines()[-1])
    assert all(fact in out["answer"] for fact in facts)
    settled = {r.prompt_hash for r in before if r.outcome == "200" and r.finished < killed - 0.1 and r.kind == "read"}
    repeated = [r for r in after if r.prompt_hash in settled]
    assert repeated == []
    # The root model's first call (which chose ask_all) was not made again either.
    assert [r.kind for r in after].count("direct") == 1


def test_oldest_rounds_are_dropped_when_compacting_results_is_not_enough() -> None:
    document, _ = needle_document()
    long_question = "Which of these words matters most: " + " ".join(f"word{n}" for n in range(700))
    rounds = [calls(call("ask", question=long_question, spans=[[-1, 5]])) for _ in range(6)]
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192), script=[*rounds, calls(call("final", answer="done", citations=[]))]
    )
    result = _graph(navigator).invoke({"document": document, "question": "q"})
    assert result["answer"].split("\n\n")[0] == "done"
    assert max(navigator.root_tokens) <= 8192
    last = navigator.root_prompts[-1]
    # The question and outline stay; the oldest rounds went.
    assert "characters 0-" in last[1].text
    assert sum(isinstance(m, AIMessage) for m in last) < 6


def test_budget_runs_out_inside_a_nested_ask() -> None:
    document, _ = needle_document()

    def final_when_told(messages: list[BaseMessage]) -> AIMessage:
        assert "no more tool calls (budget exhausted" in messages[-1].text
        return AIMessage("", tool_calls=[call("final", answer="what I have", citations=[])])

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        # A 60,000-character span is read by the graph invoked on it: more reads than the budget allows.
        script=[calls(call("ask", question="q", spans=[[0, 60_000]])), final_when_told],
    )
    result = _graph(navigator, max_llm_calls=8).invoke({"document": document, "question": "q"})
    assert result["answer"].startswith("what I have\n\nThe search stopped before the model finished (budget")
    assert result["usage"]["llm_calls"] <= 8
    assert result["errors"]  # the nested reads the budget refused are listed


def test_a_retried_root_call_is_announced() -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[ConnectionRefusedError(111, "Connection refused"), calls(call("final", answer="x", citations=[]))],
    )
    events = [
        chunk
        for chunk in _graph(navigator).stream({"document": document, "question": "q"}, stream_mode="custom")
        if chunk.get("stage") == "navigate"
    ]
    retries = [event["message"] for event in events if event["status"] == "retrying"]
    assert retries == ["Retrying the navigator's call in 0.5 s: connection refused, attempt 2 of 4"]
    assert events[-1]["message"] == "Answer ready after 1 step"
