"""``rlm-graph eval``: scoring, task generators, the resumable runner, budget, report and chart."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from langchain_openai import ChatOpenAI
from langgraph.types import RetryPolicy

from rlm_graph import ExtractiveChatModel
from rlm_graph.cli import main
from rlm_graph.evaluation import TASK_NAMES, EvaluationCancelled, build_task, evaluate, score_answer
from rlm_graph.evaluation.scoring import score_count, score_label
from tests.openai_server import ChatServer, Faults

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- scoring -------------------------------------------------------------------------------------


def test_value_scoring_exact_partial_wrong() -> None:
    gold, known = ["4829137"], ["4829137", "1111111", "2222222"]
    assert score_answer("values", "The special magic number is 4829137.", gold, known) == 1.0
    # Naming a distractor beside the gold value halves precision: F1 = 2/3.
    assert score_answer("values", "Either 4829137 or 1111111.", gold, known) == pytest.approx(2 / 3)
    assert score_answer("values", "It is 1111111.", gold, known) == 0.0
    assert score_answer("values", "The document does not say.", gold, known) == 0.0
    # An invented 7-digit number counts against the answer too.
    assert score_answer("values", "4829137, 9999999", gold, known) == pytest.approx(2 / 3)


def test_list_scoring_counts_recall() -> None:
    gold = ["1000001", "1000002", "1000003", "1000004"]
    assert score_answer("values", "1000004; 1000003; 1000002; 1000001", gold, gold) == 1.0
    # Half of the values and nothing else: precision 1, recall 1/2.
    assert score_answer("values", "1000001 and 1000002", gold, gold) == pytest.approx(2 / 3)
    names = ["ABCDE", "FGHIJ", "KLMNO"]
    known = [*names, "PQRST"]
    assert score_answer("names", "ABCDE, FGHIJ and KLMNO.", names, known) == 1.0
    assert score_answer("names", "Only ABCDE. (The NOTE says...)", names, known) == pytest.approx(0.5)
    assert score_answer("names", "PQRST", names, known) == 0.0


def test_count_and_label_scoring() -> None:
    assert score_answer("count", "Seven ledger entries carry it [F2].", ["7"], ["7"]) == 1.0
    assert score_answer("count", "[3] There are 7 such entries.", ["7"], ["7"]) == 1.0
    assert score_count("There are 8 entries.", 7) == pytest.approx(0.75)
    assert score_count("5 of them", 7) == pytest.approx(0.75**2)
    assert score_count("No entry is mentioned.", 7) == 0.0
    # The graph's note about focused reading is not a count.
    note = "Read 8 of 41 parts, the most relevant; the other 33 were not read, so the answer may be incomplete."
    assert score_answer("count", f"Ledger entry ABCDE carries the label meadow.  {note}", ["6"], ["6"]) == 0.0
    assert score_answer("count", f"There are 6 such entries. {note}", ["6"], ["6"]) == 1.0
    failed = "2 parts of the document could not be read (characters 1200000-1300000, 4% of the text), so the answer"
    assert score_answer("values", f"It is 4829137. {failed} does not cover them.", ["4829137"], []) == 1.0
    labels = ["meadow", "quarry", "orchard"]
    assert score_label("Quarry (9 entries), then meadow (4).", "quarry", labels) == 1.0
    assert score_label("Meadow, followed by quarry.", "quarry", labels) == 0.0
    assert score_answer("label", "none of them", ["quarry"], labels) == 0.0


# --- generators ----------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"VAR ([A-Z]{5}) = (?:VAR ([A-Z]{5})|(\d{5}))\.")
_VALUE_FACT = re.compile(
    r"(?:The special magic number|One of the special magic numbers) for ([a-z]+-[a-z]+) is (\d{7})\."
)
_LEDGER = re.compile(r"Ledger entry [A-Z]{5} carries the label ([a-z]+)\.")


def _gold_from_document(task_name: str, document: str, question: str) -> list[str]:
    """Recompute the answer by reading the document, independently of the generator."""
    if task_name in {"single", "multivalue", "multikey"}:
        keys = re.findall(r"[a-z]+-[a-z]+", question)
        return [value for key, value in _VALUE_FACT.findall(document) if key in keys]
    if task_name == "variables":
        values: dict[str, str] = {}
        for name, source, literal in _ASSIGNMENT.findall(document):  # in document order
            values[name] = literal or values[source]
        target = re.search(r"value (\d{5})", question).group(1)
        return [name for name, value in values.items() if value == target]
    labels = Counter(_LEDGER.findall(document))
    if task_name == "count":
        return [str(labels[re.search(r"label ([a-z]+)\?", question).group(1)])]
    top, count = labels.most_common(1)[0]
    assert list(labels.values()).count(count) == 1  # a unique winner
    return [top]


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("length", [4096, 20_000])
def test_generators_place_facts_where_they_say(name: str, length: int) -> None:
    task = build_task(name, length, seed=3)
    assert task == build_task(name, length, seed=3)  # deterministic
    assert abs(task.document_tokens - length) / length < 0.05
    for fact in task.facts:
        assert task.document[fact.offset : fact.offset + len(fact.text)] == fact.text
        assert task.document.count(fact.text) == 1
        # Each fact starts a sentence, near the depth it was given.
        assert abs(fact.offset / len(task.document) - fact.depth) < 0.03
        assert fact.offset == 0 or task.document[fact.offset - 1].isspace()
    assert sorted(_gold_from_document(name, task.document, task.question)) == sorted(task.gold)
    assert score_answer(task.kind, " ".join(task.gold), task.gold, task.known) == 1.0


def test_variable_chain_is_assigned_in_order() -> None:
    task = build_task("variables", 8192, seed=1)
    chain = [fact for fact in task.facts if fact.gold]
    assert [fact.offset for fact in chain] == sorted(fact.offset for fact in chain)
    assert len(task.gold) == 4
    assert len(task.known) == 7


# --- end to end ----------------------------------------------------------------------------------

LENGTHS = [4096, 16384]
TASKS = ["single", "multivalue", "count"]
NO_RETRY = RetryPolicy(max_attempts=1)


def _gold_fact_pattern() -> re.Pattern[str]:
    """The server's "facts": the gold sentences of the value tasks and every ledger entry."""
    texts = {
        fact.text
        for length in LENGTHS
        for name in TASKS
        for fact in build_task(name, length).facts
        if fact.gold or name == "count"
    }
    return re.compile("|".join(re.escape(text) for text in sorted(texts, key=len, reverse=True)))


def _model(server: ChatServer) -> ChatOpenAI:
    return ChatOpenAI(model="local-reader", base_url=server.base_url, api_key="not-needed", max_retries=0)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_failures_are_recorded_and_a_rerun_resumes(tmp_path: Path) -> None:
    failing_value = build_task("single", 4096).gold[0]
    options = {
        "system": "local-reader",
        "context_window": 8192,
        "lengths": LENGTHS,
        "tasks": TASKS,
        "retry_policy": NO_RETRY,
        "confirm": None,
        "progress": io.StringIO(),
        "chart": False,  # drawn (and checked) in the CLI test; it costs seconds
    }
    pattern = _gold_fact_pattern()
    faults = Faults(marker=failing_value, marker_kind="500")
    with ChatServer(window=8192, facts=pattern, faults=faults) as server:
        first = evaluate(_model(server), tmp_path, **options)
    by_cell = {(r["mode"], r["length"], r["task"]): r for r in first}
    assert len(first) == len(LENGTHS) * len(TASKS) * 4
    # Every prompt holding the failing value got a 500: its cells failed, the others finished.
    failed = {key for key, record in by_cell.items() if record["status"] == "failed"}
    # (navigate joins them once create_rlm_graph offers it.)
    expected = {("direct", 4096, "single"), ("full", 4096, "single"), ("focused", 4096, "single")}
    assert failed - {("navigate", 4096, "single")} == expected
    assert all("Error code: 500" in by_cell[key]["reason"] for key in failed)
    # navigate runs like the other modes (or is recorded as unsupported where a model lacks tools), never a crash;
    # only its cell on the failing document may fail.
    navigate = [r for r in first if r["mode"] == "navigate"]
    assert {r["status"] for r in navigate if r["task"] != "single" or r["length"] != 4096} <= {"unsupported", "ok"}
    ok = [r for r in first if r["status"] == "ok"]
    assert len(ok) == len(first) - len(failed) - sum(r["status"] == "unsupported" for r in navigate)
    # The graph read every gold fact; the model alone saw only the start of the 16K documents.
    for task in ("single", "multivalue"):
        assert by_cell[("full", 16384, task)]["score"] == 1.0
    assert by_cell[("direct", 4096, "multivalue")]["score"] == 1.0
    assert by_cell[("direct", 16384, "single")]["truncated"] is True
    assert by_cell[("full", 16384, "single")]["llm_calls"] > 1
    assert by_cell[("direct", 4096, "multivalue")]["truncated"] is False
    # Calls counted per cell match the server's log (failed calls included).
    assert sum(r.get("calls_started", 0) for r in first) == len(server.requests)
    assert (tmp_path / "report.md").read_text().count("| full |") == 1

    with ChatServer(window=8192, facts=pattern) as healthy:
        second = evaluate(_model(healthy), tmp_path, **options)
    retried = [r for r in second if (r["mode"], r["length"], r["task"]) in failed]
    assert all(r["status"] == "ok" and r["score"] == 1.0 for r in retried)
    # Only the failed cells ran again: no finished cell repeated a call.
    ok_keys = {r["key"] for r in ok}
    assert len(healthy.requests) == sum(r["calls_started"] for r in second if r["key"] not in ok_keys)
    assert len(healthy.requests) >= 3
    lines = Counter(r["key"] for r in _records(tmp_path / "results.jsonl"))
    assert all(lines[r["key"]] == 1 for r in ok)
    assert all(lines[r["key"]] == 2 for r in retried)


def test_budget_covers_the_whole_evaluation(tmp_path: Path) -> None:
    records = evaluate(
        ExtractiveChatModel(),
        tmp_path,
        lengths=[16384],
        modes=["direct", "full"],
        tasks=["single", "count", "most"],
        max_llm_calls=7,
        confirm=None,
        progress=io.StringIO(),
        chart=False,
    )
    spent = sum(r.get("llm_calls", 0) for r in records)
    assert spent <= 7
    assert sum(r.get("calls_started", 0) for r in records) == spent  # none started beyond the answered ones
    skipped = [r for r in records if r["status"] == "skipped"]
    assert skipped
    assert all("budget" in r["reason"] or "max_llm_calls" in r["reason"] for r in skipped)
    assert any(r["status"] == "ok" and r["mode"] == "full" for r in records)


def test_declining_the_estimate_runs_nothing(tmp_path: Path) -> None:
    shown: list[str] = []

    def decline(summary: str) -> bool:
        shown.append(summary)
        return False

    with pytest.raises(EvaluationCancelled):
        evaluate(
            ExtractiveChatModel(), tmp_path, lengths=[4096], tasks=["single"], confirm=decline, progress=io.StringIO()
        )
    assert re.search(r"4 cells to run: at most about \d+ model calls, [\d,]+ input tokens", shown[0])
    assert not (tmp_path / "results.jsonl").exists() or not (tmp_path / "results.jsonl").read_text()


def test_cli_eval_offline_writes_table_report_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["eval", "--offline", "--lengths", "4k,12k", "--tasks", "single,most", "--modes", "direct,full"]
    status = main([*argv, "--prices", "0.15,0.60", "--out", str(out), "--yes"])
    captured = capsys.readouterr()
    assert status == 0
    assert "not a language model" in captured.err
    assert "cells to run" in captured.err
    assert "8/8 cells" in captured.err
    table = captured.out.splitlines()
    assert table[0].split()[:4] == ["system", "4K", "12K", "calls/q"]
    assert any(line.startswith("direct") and "†" in line for line in table)  # 12K does not fit 8K
    assert any(line.startswith("full") and "$" in line for line in table)
    png = (out / "chart.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5_000
    from PIL import Image

    with Image.open(out / "chart.png") as image:
        image.verify()
        assert image.size[0] > 600
        assert image.size[1] > 300
    assert "![accuracy against length" in (out / "report.md").read_text()
    # A rerun has nothing left to do, and says so through the table alone.
    assert main([*argv, "--out", str(out), "--yes"]) == 0
    assert "cells to run" not in capsys.readouterr().err


def test_cli_eval_without_a_terminal_needs_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["eval", "--offline", "--lengths", "4k", "--tasks", "single", "--out", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err
    assert "pass --yes" in err
    assert not (tmp_path / "report.md").exists()
