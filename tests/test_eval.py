"""``rlm-graph eval``: scoring, task generators, the resumable runner, budget, report and chart."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI
from langgraph.types import RetryPolicy
from pydantic import Field

from rlm_graph import ExtractiveChatModel
from rlm_graph.cli import main
from rlm_graph.evaluation import TASK_NAMES, EvaluationCancelled, build_task, evaluate, score_answer
from rlm_graph.evaluation.report import text_table
from rlm_graph.evaluation.scoring import answer_line, score_count, score_label
from rlm_graph.evaluation.summary import shorten, summarize
from tests.fakes import Cl100kWindow
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


def test_the_answer_line_is_scored_and_the_working_before_it_is_not() -> None:
    # Systems are asked to end with "ANSWER: ..."; only that line is scored, wherever the graph's notes put it.
    listed = "1. Ledger entry QHRXW\n2. Ledger entry BRAHG\n3. Ledger entry GRMZD\n"
    assert answer_line(f"The entries are:\n{listed}\nANSWER: 9") == "9"
    assert score_answer("count", f"The entries are:\n{listed}\nANSWER: 9", ["9"], ["9"]) == 1.0
    assert score_answer("count", f"{listed}**Answer:** nine\n\nRead 8 of 41 parts.", ["9"], ["9"]) == 1.0
    tally = "granary: 8, harbour: 4, meadow: 9"
    assert score_answer("label", f"Counting ({tally}).\nANSWER: meadow", ["meadow"], ["granary", "meadow"]) == 1.0
    # Values named in the reasoning but not in the answer line are not the answer's.
    reasoning = "4829137 is for amber-falcon, 1111111 for amber-heron.\nANSWER: 4829137"
    assert score_answer("values", reasoning, ["4829137"], ["4829137", "1111111"]) == 1.0
    # The last answer line counts: a model that corrects itself is scored on its correction.
    assert score_answer("count", "ANSWER: 8\nOn reflection, one more.\nANSWER: 9", ["9"], ["9"]) == 1.0
    assert answer_line("There are 9 entries.") is None


def test_without_an_answer_line_list_numbers_tallies_and_notes_are_not_the_answer() -> None:
    # r34: a count after its list of entries, a label after the tally it was chosen from.
    count = build_task("count", 32 * 1024, seed=0)
    entries = [re.search(r"entry (\w+)", f.text).group(1) for f in count.facts if f.gold]
    label = re.search(r"label (\w+)\?", count.question).group(1)
    listed = "\n".join(f"{i}. Ledger entry {e}" for i, e in enumerate(entries, 1))
    answer = f"The entries with {label} are:\n{listed}\n\nIn total, {len(entries)} ledger entries carry it."
    assert score_answer(count.kind, answer, count.gold, count.known) == 1.0
    labels = ["granary", "harbour", "meadow", "quarry"]
    reasoned = "Counting per label (granary: 8, harbour: 4, meadow: 9, quarry: 5), the most is meadow."
    assert score_answer("label", reasoned, ["meadow"], labels) == 1.0
    # r27: navigate's note about what it read is not part of the answer; its offsets are not values.
    from rlm_graph.navigate import NAVIGATE_MESSAGES

    note = NAVIGATE_MESSAGES["answer.navigate_read_part"].format(
        share="<1%", spans="810311-810359, 1142612-1142661, 1523471-1523521"
    )
    gold = ["4058069", "3661659", "3203594"]
    answer = f"violet-falcon: 4058069; violet-bittern: 3661659; amber-falcon: 3203594\n\n{note}"
    assert score_answer("values", answer, gold, gold) == 1.0


def test_failed_cells_count_as_wrong_and_show_as_failed() -> None:
    # r35: 1 right answer of 4 tasks is 25%, not the 100% of the one that ran.
    def cell(task: str, status: str, score: float | None = None) -> dict:
        reason = "IndexError: list index out of range" if status == "failed" else None
        return {"system": "m", "mode": "navigate", "length": 32768, "task": task, "part_tokens": None,
                "seed": 0, "status": status, "score": score, "reason": reason, "llm_calls": 3}  # fmt: skip

    records = [cell("single", "ok", 1.0), cell("multikey", "failed"), cell("count", "failed"), cell("most", "failed")]
    rows, _ = summarize(records)
    assert rows[0].accuracy(32768) == pytest.approx(0.25)
    assert rows[0].questions(32768) == 4
    table = text_table(records)
    assert "25% (3 failed)" in table
    # A cell that did not run (the budget was spent) is neither right nor wrong.
    rows, _ = summarize([cell("single", "ok", 1.0), cell("count", "skipped")])
    assert rows[0].accuracy(32768) == 1.0
    assert rows[0].questions(32768) == 1


def test_long_reasons_are_shortened_at_a_word() -> None:
    reason = "ValueError: " + " ".join(f"word{i}" for i in range(200))
    short = shorten(reason, 120)
    assert len(short) <= 120
    assert short.endswith("…")
    assert reason.startswith(short[:-1])
    assert reason[len(short) - 1] == " "  # cut before a space, not inside a word
    assert shorten("short", 120) == "short"


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
    server = ChatServer(window=8192, facts=pattern, faults=faults).start()
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

    # The same server, healed (another endpoint would be another model: every cell would run again),
    # and a new model at that endpoint in the same process: ChatOpenAI shares its HTTP client with it.
    server.faults = Faults()
    before = len(server.requests)
    try:
        second = evaluate(_model(server), tmp_path, **options)
    finally:
        server.stop()
    retried = [r for r in second if (r["mode"], r["length"], r["task"]) in failed]
    assert all(r["status"] == "ok" and r["score"] == 1.0 for r in retried)
    # Only the failed cells ran again: no finished cell repeated a call.
    ok_keys = {r["key"] for r in ok}
    healed = len(server.requests) - before
    assert healed == sum(r["calls_started"] for r in second if r["key"] not in ok_keys)
    assert healed >= 3
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
    assert re.search(r"3 cells to run: at most about \d+ model calls, [\d,]+ input tokens", shown[0])
    assert not (tmp_path / "results.jsonl").exists()


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


class AnswerLineReader(Cl100kWindow, BaseChatModel):
    """Names a distractor value in its working, then the gold value on an ANSWER line, when asked for one."""

    window: int = 8192
    gold: str
    distractor: str
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "answer-line-reader"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        self.prompts.append(prompt)
        reply = f"{self.distractor} belongs to another key; the value asked for is {self.gold}."
        if "`ANSWER: the number or numbers only" in prompt:
            reply += f"\nANSWER: {self.gold}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


def test_systems_are_asked_for_an_answer_line_and_answers_without_one_are_counted(tmp_path: Path) -> None:
    task = build_task("single", 4096)
    distractor = next(value for value in task.known if value not in task.gold)
    model = AnswerLineReader(gold=task.gold[0], distractor=distractor)
    options = {"lengths": [4096], "tasks": ["single"], "modes": ["direct"], "confirm": None, "chart": False}
    (record,) = evaluate(model, tmp_path / "asked", progress=io.StringIO(), **options)
    assert "`ANSWER: the number or numbers only, separated by commas`" in model.prompts[0]
    # The working names a distractor; the answer line alone is scored.
    assert (record["status"], record["answer_line"], record["score"]) == ("ok", True, 1.0)
    # The graph is asked in its final answer's prompt, after the question: the question itself, which
    # also ranks parts and sentences, stays the task's own, and the readers are not asked.
    model = AnswerLineReader(gold=task.gold[0], distractor=distractor, window=4096)
    long_task = build_task("single", 12288)
    model.gold = long_task.gold[0]
    (record,) = evaluate(
        model, tmp_path / "graph", progress=io.StringIO(), **{**options, "modes": ["full"], "lengths": [12288]}
    )
    readings = [p for p in model.prompts if "<document_part start=" in p]
    syntheses = [p for p in model.prompts if "<findings>" in p]
    assert readings
    assert syntheses
    assert all("ANSWER:" not in p and f"<question>\n{long_task.question}\n</question>" in p for p in readings)
    assert all("`ANSWER: the number or numbers only" in p for p in syntheses)
    assert (record["status"], record["answer_line"], record["score"]) == ("ok", True, 1.0)
    # A system that ignores the request is scored on its whole answer, and the report says how many did.
    (record,) = evaluate(ExtractiveChatModel(), tmp_path / "ignored", progress=io.StringIO(), **options)
    assert record["answer_line"] is False
    report = (tmp_path / "ignored" / "report.md").read_text()
    assert "Answers without the ANSWER line, scored on their whole text (less exact):\n- direct: 1 of 1" in report


def test_a_rerun_with_other_settings_runs_its_cells_again(tmp_path: Path) -> None:
    options = {"lengths": [4096], "tasks": ["single"], "modes": ["direct"], "confirm": None, "chart": False}
    first = evaluate(ExtractiveChatModel(context_window=8192), tmp_path, progress=io.StringIO(), **options)
    again = evaluate(ExtractiveChatModel(context_window=8192), tmp_path, progress=io.StringIO(), **options)
    assert [r["key"] for r in again] == [r["key"] for r in first]
    assert len(_records(tmp_path / "results.jsonl")) == 1  # same settings: the finished cell is reused
    # Another window (or endpoint, model setting, part size, version...) is another cell.
    other = evaluate(ExtractiveChatModel(context_window=6144), tmp_path, progress=io.StringIO(), **options)
    assert other[0]["key"] != first[0]["key"]
    assert other[0]["settings"]["context_window"] == 6144
    assert len(_records(tmp_path / "results.jsonl")) == 2
    # Prices change only the cost, which is worked out again from the cell's tokens.
    priced = evaluate(
        ExtractiveChatModel(context_window=8192), tmp_path, progress=io.StringIO(), prices=(1.0, 2.0), **options
    )
    assert priced[0]["key"] == first[0]["key"]
    assert first[0]["cost"] is None
    tokens = priced[0]["by_model"]["model"]
    assert priced[0]["cost"] == pytest.approx((tokens["input_tokens"] * 1.0 + tokens["output_tokens"] * 2.0) / 1e6)
    assert len(_records(tmp_path / "results.jsonl")) == 2


def test_default_modes_leave_out_navigate_for_a_model_without_tools(tmp_path: Path) -> None:
    progress = io.StringIO()
    records = evaluate(
        ExtractiveChatModel(), tmp_path, lengths=[4096], tasks=["single"], confirm=None, chart=False, progress=progress
    )
    assert {r["mode"] for r in records} == {"direct", "full", "focused"}
    said = [line for line in progress.getvalue().splitlines() if "navigate" in line]
    assert len(said) == 1
    assert said[0].startswith("Leaving out navigate: ExtractiveChatModel cannot call tools")


def test_a_refused_run_leaves_no_folder_and_lengths_have_a_minimum(tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(EvaluationCancelled):
        evaluate(ExtractiveChatModel(), out, lengths=[4096], tasks=["single"], confirm=lambda _: False,
                 progress=io.StringIO())  # fmt: skip
    assert not out.exists()
    with pytest.raises(ValueError, match=r"at least 1K tokens \(1024\), got 512"):
        evaluate(ExtractiveChatModel(), out, lengths=[512, 4096], confirm=None, progress=io.StringIO())
    assert not out.exists()


def test_cli_eval_help_states_the_minimum_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "at least 1k" in help_text
    assert main(["eval", "--offline", "--lengths", "500", "--yes", "--out", str(tmp_path / "unused")]) == 2
    assert "at least 1K tokens (1024), got 500" in capsys.readouterr().err
    assert not (tmp_path / "unused").exists()


def test_chart_names_the_model_and_the_questions_behind_each_point() -> None:
    pytest.importorskip("matplotlib")
    from rlm_graph.evaluation.chart import build_figure

    def cell(length: int, task: str, status: str, score: float | None = None) -> dict:
        return {"system": "qwen2.5-7b", "mode": "full", "length": length, "task": task, "part_tokens": None,
                "seed": 0, "status": status, "score": score, "llm_calls": 2}  # fmt: skip

    records = [cell(4096, "single", "ok", 1.0), cell(4096, "count", "failed"), cell(16384, "single", "ok", 0.5)]
    figure = build_figure(records, costs=False)
    accuracy_axes = figure.axes[0]
    assert "qwen2.5-7b" in accuracy_axes.get_title()
    # Each point says how many questions its accuracy is the mean of...
    assert sorted(text.get_text() for text in accuracy_axes.texts) == ["n=1", "n=2, 1 failed"]
    # ...or the axis says it once, when every point holds as many (failures are still named at their point).
    accuracy_axes = build_figure(records[:1] + records[2:], costs=False).axes[0]
    assert len(accuracy_axes.texts) == 0
    assert accuracy_axes.get_xlabel().endswith("each point: 1 question")
    accuracy_axes = build_figure([*records, cell(16384, "count", "failed")], costs=False).axes[0]
    assert [text.get_text() for text in accuracy_axes.texts] == ["1 failed", "1 failed"]
    assert accuracy_axes.get_xlabel().endswith("each point: 2 questions")


def test_cli_eval_without_a_terminal_needs_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["eval", "--offline", "--lengths", "4k", "--tasks", "single", "--out", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err
    assert "pass --yes" in err
    assert not (tmp_path / "report.md").exists()


class ThinksTheAnswerThenGivesUp(AnswerLineReader):
    """Finds the gold value while thinking, then answers that it does not know (a reasoning model's
    server left the <think> block in content)."""

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.prompts.append("\n".join(m.text for m in messages))
        reply = f"<think>\nIs it {self.gold}?\nANSWER: {self.gold}\n</think>\n\nI cannot tell from the document."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


def test_a_direct_answer_is_scored_without_the_models_thoughts(tmp_path: Path) -> None:
    task = build_task("single", 4096)
    distractor = next(value for value in task.known if value not in task.gold)
    model = ThinksTheAnswerThenGivesUp(gold=task.gold[0], distractor=distractor)
    options = {"lengths": [4096], "tasks": ["single"], "modes": ["direct"], "confirm": None, "chart": False}
    (record,) = evaluate(model, tmp_path, progress=io.StringIO(), **options)
    assert record["status"] == "ok"
    assert record["score"] == 0.0
    assert record["answer_line"] is False
