"""Runs an evaluation: plan the cells, estimate, confirm, run (resumably), report."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel
from langgraph.types import RetryPolicy

from rlm_graph import estimate_cost
from rlm_graph.evaluation.report import write_outputs
from rlm_graph.evaluation.summary import format_length
from rlm_graph.evaluation.systems import MODES, Cell, Systems
from rlm_graph.evaluation.tasks import TASK_NAMES, Task, build_task
from rlm_graph.options import check_part_tokens, check_run_options, default_output_tokens

__all__ = ["DEFAULT_LENGTHS", "MIN_LENGTH", "EvaluationCancelled", "aevaluate", "evaluate", "plan_cells"]

DEFAULT_LENGTHS = (32 * 1024, 128 * 1024, 256 * 1024, 512 * 1024, 1024 * 1024)
MIN_LENGTH = 1024
"""Shortest document, in tokens: the count and most tasks plant about 400 tokens of facts, which
would otherwise be most of the document (and its length no longer what the row says)."""
RESULTS_FILE = "results.jsonl"
_LOOPS = threading.local()  # evaluate()'s event loop, one per thread
_BAR_WIDTH = 24


class EvaluationCancelled(Exception):
    """The user declined the estimate (or it could not be confirmed)."""


def plan_cells(
    system: str,
    lengths: Sequence[int],
    modes: Sequence[str],
    tasks: Sequence[str],
    part_tokens: Sequence[int | None],
    seeds: Sequence[int],
    settings: str = "",
) -> list[Cell]:
    """Every cell of the evaluation, shortest documents first.

    Args:
        system: The model's label.
        lengths: Document sizes in tokens.
        modes: Systems (``direct`` and graph modes).
        tasks: Task names.
        part_tokens: ``part_tokens`` values for the graph modes (``None``: the graph's default).
        seeds: Sample numbers.
        settings: Digest of the other settings that change results (:meth:`Systems.settings_key`).

    Returns:
        The cells; ``direct`` has one cell per task (``part_tokens`` does not apply to it).
    """
    for mode in modes:
        if mode not in MODES:
            msg = f"unknown mode {mode!r}; choose from {list(MODES)}"
            raise ValueError(msg)
    for task in tasks:
        if task not in TASK_NAMES:
            msg = f"unknown task {task!r}; choose from {list(TASK_NAMES)}"
            raise ValueError(msg)
    return [
        Cell(system, mode, length, task, parts, seed, settings)
        for length in sorted(lengths)
        for seed in seeds
        for task in tasks
        for mode in modes
        for parts in ([None] if mode == "direct" else part_tokens)
    ]


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """The latest record per cell key in a ``results.jsonl`` (unreadable lines are ignored)."""
    records: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            if isinstance(record, dict) and "key" in record:
                records[record["key"]] = record
    return records


def _estimate(cells: Sequence[Cell], tasks: Mapping[tuple[str, int, int], Task], systems: Systems) -> dict[str, int]:
    """Upper bounds on calls and prompt tokens of ``cells`` (graph modes: the full-reading plan)."""
    totals = {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0}
    planner = systems.graph("full")
    plans: dict[tuple[int, int, int | None], dict[str, int]] = {}
    for cell in cells:
        task = tasks[(cell.task, cell.length, cell.seed)]
        if cell.mode == "direct":
            calls = 1
            tokens = min(task.document_tokens, systems.direct_budget(task.question)) + 100
        elif isinstance(planner, str):
            calls, tokens = 0, 0
        else:
            # Tasks of one length differ only in a few sentences: plan once per length and part size.
            plan_key = (cell.length, cell.seed, cell.part_tokens)
            if plan_key not in plans:
                plans[plan_key] = dict(
                    estimate_cost(planner, task.document, task.question, part_tokens=cell.part_tokens)
                )
            calls, tokens = plans[plan_key]["llm_calls"], plans[plan_key]["input_tokens"]
        totals["llm_calls"] += calls
        totals["input_tokens"] += tokens
        window = systems.context_window or 8192
        totals["output_tokens"] += calls * default_output_tokens(window)
    return totals


def _describe_estimate(totals: Mapping[str, int], cells: int, prices: tuple[float, float] | None) -> str:
    text = (
        f"{cells} cells to run: at most about {totals['llm_calls']:,} model calls, "
        f"{totals['input_tokens']:,} input tokens and {totals['output_tokens']:,} output tokens"
    )
    if prices:
        cost = (totals["input_tokens"] * prices[0] + totals["output_tokens"] * prices[1]) / 1_000_000
        text += f", at most ${cost:,.2f}"
    return text + " (focused reading usually spends less; the model alone makes one call per cell)."


def _ask_on_terminal(summary: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{summary}\nProceed? [y/N] ").strip().lower() in {"y", "yes"}


class _Progress:
    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.tty = bool(stream and stream.isatty())

    def show(self, label: str) -> None:
        if self.stream is None:
            return
        filled = _BAR_WIDTH * self.done // max(1, self.total)
        line = f"[{'█' * filled}{'░' * (_BAR_WIDTH - filled)}] {self.done}/{self.total} cells · {label}"
        if self.tty:
            self.stream.write("\r" + line[:119].ljust(119))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def aevaluate(
    model: BaseChatModel,
    out_dir: str | Path,
    *,
    system: str | None = None,
    context_window: int | None = None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    modes: Sequence[str] | None = None,
    tasks: Sequence[str] = TASK_NAMES,
    part_tokens: Sequence[int | None] = (None,),
    samples: int = 1,
    seed: int = 0,
    large_model: BaseChatModel | None = None,
    prices: tuple[float, float] | None = None,
    large_prices: tuple[float, float] | None = None,
    max_llm_calls: int | None = None,
    max_concurrency: int = 8,
    retry_policy: RetryPolicy | None = None,
    confirm: Callable[[str], bool] | None = _ask_on_terminal,
    progress: TextIO | None = None,
    chart: bool = True,
) -> list[dict[str, Any]]:
    """Measure what each system is worth on ``model``; see :func:`evaluate`."""
    progress = progress or sys.stderr  # looked up now: a caller may have replaced sys.stderr
    check_run_options(max_llm_calls=max_llm_calls)
    if samples < 1:
        msg = f"samples must be at least 1, got {samples}"
        raise ValueError(msg)
    for size in part_tokens:
        if size is not None:
            check_part_tokens(size)  # raises ValueError, with the allowed range, before anything runs
    short = [length for length in lengths if length < MIN_LENGTH]
    if short:
        msg = (
            f"document lengths (--lengths) must be at least {format_length(MIN_LENGTH)} tokens ({MIN_LENGTH}), "
            f"got {', '.join(map(str, short))}"
        )
        raise ValueError(msg)
    label = system or str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)
    if large_model is not None:
        label += "→" + str(getattr(large_model, "model_name", None) or type(large_model).__name__)
    role_prices = {"model": prices} if prices else {}
    if large_prices and large_model is not None:
        role_prices["large_model"] = large_prices
    systems = Systems(
        model,
        context_window=context_window,
        large_model=large_model,
        prices=role_prices,
        max_concurrency=max_concurrency,
        retry_policy=retry_policy,
    )
    if systems.context_window is None:
        msg = f"the context window of {type(model).__name__} is unknown: pass context_window (--context-window)"
        raise ValueError(msg)
    if modes is None:
        # By default every mode the model can run: navigate needs tool calling, and a column of
        # "not run" cells would only repeat why.
        modes = list(MODES)
        unavailable = systems.navigate_unavailable()
        if unavailable is not None:
            modes.remove("navigate")
            print(
                f"Leaving out navigate: {type(large_model or model).__name__} cannot call tools "
                "(bind_tools is not implemented or refused the tools); pass --modes to choose the modes.",
                file=progress,
                flush=True,
            )
    cells = plan_cells(label, lengths, modes, tasks, part_tokens, range(seed, seed + samples), systems.settings_key())
    out = Path(out_dir)
    results_path = out / RESULTS_FILE
    earlier = load_results(results_path)
    # A cell is finished once it has an answer; failed, skipped and unsupported cells run again.
    pending = [cell for cell in cells if earlier.get(cell.key, {}).get("status") != "ok"]
    built: dict[tuple[str, int, int], Task] = {}
    for cell in pending:
        task_key = (cell.task, cell.length, cell.seed)
        if task_key not in built:
            built[task_key] = build_task(*task_key)
    if pending:
        summary = _describe_estimate(_estimate(pending, built, systems), len(pending), prices)
        if len(pending) < len(cells):
            summary += f" {len(cells) - len(pending)} cells are already finished in {results_path}."
        if confirm is not None and not confirm(summary):
            msg = "evaluation cancelled: confirm the estimate, or pass --yes (yes=True) to run without asking"
            raise EvaluationCancelled(msg)
        if progress is not None and confirm is None:
            print(summary, file=progress, flush=True)
    # Made only now: a run refused above (bad options, a declined estimate) leaves no empty folder.
    out.mkdir(parents=True, exist_ok=True)
    bar = _Progress(progress, len(pending))
    spent = 0
    # Finished cells are repriced at this run's prices (the key holds no prices).
    records = {
        cell.key: {**earlier[cell.key], "cost": systems.cost_of(earlier[cell.key].get("by_model"))}
        for cell in cells
        if cell.key in earlier
    }
    with results_path.open("a", encoding="utf-8") as sink:
        for cell in pending:
            bar.show(f"{cell.mode} {cell.task} {cell.length // 1024}K")
            remaining = None if max_llm_calls is None else max_llm_calls - spent
            record = await systems.run(cell, built[(cell.task, cell.length, cell.seed)], remaining)
            spent += max(record.get("llm_calls", 0), record.get("calls_started", 0))
            records[cell.key] = record
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()  # resumable: a finished cell survives an interrupted run
            bar.done += 1
        bar.show("done")
    bar.close()
    ordered = [records[cell.key] for cell in cells if cell.key in records]
    write_outputs(ordered, out, prices=prices, chart=chart)
    return ordered


def evaluate(model: BaseChatModel, out_dir: str | Path, **options: Any) -> list[dict[str, Any]]:
    """Measure, on your own model, what each reading strategy is worth.

    Builds long-context tasks (retrieval with distractors, several values, several
    keys, variable tracking, counting and "which the most") from the books shipped
    with the package, at each length; runs the model alone (its window permitting,
    otherwise on the start of the document, marked as truncated) and the graph in
    each mode on them, asking each for a last line ``ANSWER: ...``; scores that
    line (or, without it, the whole answer) against exact gold, a failed run as 0;
    and writes ``results.jsonl`` (one line per cell, appended as it finishes, so a
    rerun skips finished cells measured with the same model, endpoint, window,
    prices and versions), ``report.md`` and ``chart.png`` (with the ``eval``
    extra) to ``out_dir``.

    Args:
        model: The chat model to evaluate.
        out_dir: Directory of the results.
        **options: ``system`` (label, default the model's name), ``context_window``,
            ``lengths`` (tokens, each at least :data:`MIN_LENGTH`), ``modes`` (``direct``,
            ``full``, ``focused``, ``navigate``; by default all of them, navigate only
            when the model can call tools), ``tasks``, ``part_tokens`` (a list; ``None`` for the
            graph's default), ``samples``, ``seed``, ``large_model``, ``prices``
            and ``large_prices`` (dollars per million input and output tokens),
            ``max_llm_calls`` (for the whole evaluation), ``max_concurrency``,
            ``retry_policy``, ``confirm`` (called with the estimate; ``None`` runs
            without asking) and ``progress`` (stream for the estimate and the progress bar; standard
            error by default), ``chart`` (``False``: no PNG).

    Returns:
        One record per cell, in plan order.

    Raises:
        EvaluationCancelled: If ``confirm`` declined the estimate.
        ValueError: For an unknown mode or task, or an option out of range.
    """
    # One event loop per thread, kept for every call: ChatOpenAI shares its async HTTP client
    # between instances with the same endpoint, and that client cannot be used from another
    # loop, so with asyncio.run (a new loop each time) a second evaluate() in one process
    # failed every cell with "Event loop is closed", scored as wrong answers.
    loop = getattr(_LOOPS, "loop", None)
    if loop is None or loop.is_closed():
        loop = _LOOPS.loop = asyncio.new_event_loop()
    return loop.run_until_complete(aevaluate(model, out_dir, **options))
