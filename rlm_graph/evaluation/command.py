"""The ``rlm-graph eval`` subcommand (argument parsing and output; the work is in :mod:`.runner`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel

from rlm_graph import ExtractiveChatModel, model_from_env
from rlm_graph.evaluation.report import text_table
from rlm_graph.evaluation.runner import DEFAULT_LENGTHS, MIN_LENGTH, RESULTS_FILE, EvaluationCancelled, aevaluate
from rlm_graph.evaluation.summary import format_length
from rlm_graph.evaluation.systems import MODES
from rlm_graph.evaluation.tasks import TASK_NAMES
from rlm_graph.models import UnknownContextWindowError

__all__ = ["add_eval_parser", "parse_size", "run_eval_command"]

_SUFFIXES = {"k": 1024, "m": 1024 * 1024}


def parse_size(text: str) -> int:
    """``"32k"`` -> 32768, ``"1m"`` -> 1048576, ``"5000"`` -> 5000.

    Args:
        text: A token count, optionally with a ``k`` or ``m`` suffix.

    Returns:
        The count.
    """
    value = text.strip().lower()
    try:
        number = int(value[:-1]) * _SUFFIXES[value[-1]] if value[-1:] in _SUFFIXES else int(value)
    except ValueError:
        msg = f"not a token count: {text!r} (write e.g. 32k, 1m or 5000)"
        raise argparse.ArgumentTypeError(msg) from None
    if number < 1:
        msg = f"a token count must be positive, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _sizes(text: str) -> list[int]:
    return [parse_size(part) for part in text.split(",") if part.strip()]


def _names(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            msg = f"unknown {', '.join(unknown) or 'empty list'}; choose from {','.join(choices)}"
            raise argparse.ArgumentTypeError(msg)
        return names

    return parse


def _prices(text: str) -> tuple[float, float]:
    try:
        price_in, price_out = (float(part) for part in text.split(","))
    except ValueError:
        msg = f"--prices takes IN,OUT in dollars per million tokens, e.g. 0.15,0.60; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return price_in, price_out


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to the CLI's subparsers.

    Args:
        commands: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The subcommand's parser.
    """
    lengths = ",".join(format_length(n).lower() for n in DEFAULT_LENGTHS)
    parser = commands.add_parser(
        "eval",
        help="measure, on your model, what each reading strategy is worth",
        description="Run the model alone and the graph's reading modes on long-context tasks built from "
        "public-domain books, and report accuracy against length with calls, tokens and cost.",
    )
    parser.add_argument("--model", help="ChatOpenAI model name ('offline' for the offline extractive model)")
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--offline", action="store_true", help="use the offline extractive model (not an LLM)")
    parser.add_argument("--context-window", type=int, help="the model's window in tokens (if its profile lacks it)")
    parser.add_argument("--large-model", help="relay: a larger model at the same endpoint for synthesis")
    parser.add_argument(
        "--lengths",
        type=_sizes,
        default=list(DEFAULT_LENGTHS),
        help=f"document sizes in tokens, each at least {format_length(MIN_LENGTH).lower()} (default {lengths})",
    )
    parser.add_argument(
        "--modes",
        type=_names(MODES),
        default=None,
        help=f"of {','.join(MODES)} (default: all; navigate only if the model can call tools)",
    )
    parser.add_argument("--tasks", type=_names(TASK_NAMES), default=list(TASK_NAMES), help="default: all")
    parser.add_argument(
        "--part-tokens", type=lambda t: [*_sizes(t)], default=[None], help="e.g. 8k,32k (default: the graph's)"
    )
    parser.add_argument("--samples", type=int, default=1, help="documents per task and length (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first sample's seed (default 0)")
    parser.add_argument("--prices", type=_prices, help="IN,OUT dollars per million tokens, e.g. 0.15,0.60")
    parser.add_argument("--large-prices", type=_prices, help="IN,OUT for --large-model")
    parser.add_argument("--max-llm-calls", type=int, help="most model calls for the whole evaluation")
    parser.add_argument("--max-concurrency", type=int, default=8, help="most model calls in flight (default 8)")
    parser.add_argument("--out", default="rlm-eval", help="directory of results (default ./rlm-eval)")
    parser.add_argument("--yes", action="store_true", help="run without asking to confirm the estimate")
    return parser


def _models(args: argparse.Namespace) -> tuple[BaseChatModel, BaseChatModel | None, str, str]:
    offline = args.offline or args.model == "offline"
    if offline or not (args.base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")):
        # The offline model honours the window it is given, so --context-window shapes the recursion.
        model = ExtractiveChatModel(**({"context_window": args.context_window} if args.context_window else {}))
        note = (
            "Using the offline extractive model: it quotes the best-matching sentences (BM25) and is not a "
            "language model, so its rows show the pipeline at work, not model quality."
        )
        return model, None, "offline", note
    # The window goes into the models' profiles, so models LangChain does not know (local servers) work.
    window = {"base_url": args.base_url, "context_window": args.context_window}
    model, note = model_from_env(args.model, **window)
    large = model_from_env(args.large_model, **window)[0] if args.large_model else None
    return model, large, str(getattr(model, "model_name", args.model)), note


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.samples < 1 or (args.max_llm_calls is not None and args.max_llm_calls < 1):
        print("error: --samples and --max-llm-calls must be at least 1", file=err)
        return 2
    try:
        model, large, label, note = _models(args)
    except UnknownContextWindowError as exc:
        print(f"error: the context window of {exc.model_name!r} is unknown: pass --context-window", file=err)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    print(note, file=err, flush=True)

    def confirm(summary: str) -> bool:
        print(summary, file=err, flush=True)
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print("error: not a terminal, so nothing can be confirmed: pass --yes to run", file=err)
            return False
        return input("Proceed? [y/N] ").strip().lower() in {"y", "yes"}

    try:
        records = await aevaluate(
            model,
            args.out,
            system=label,
            context_window=args.context_window,
            lengths=args.lengths,
            modes=args.modes,
            tasks=args.tasks,
            part_tokens=args.part_tokens,
            samples=args.samples,
            seed=args.seed,
            large_model=large,
            prices=args.prices,
            large_prices=args.large_prices,
            max_llm_calls=args.max_llm_calls,
            max_concurrency=args.max_concurrency,
            confirm=confirm,
            progress=err,
        )
    except EvaluationCancelled as exc:
        print(str(exc), file=err)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    print(text_table(records), file=out)
    chart = os.path.join(args.out, "chart.png")
    files = [os.path.join(args.out, RESULTS_FILE), os.path.join(args.out, "report.md")]
    if os.path.exists(chart):
        files.append(chart)
    else:
        print('note: install the eval extra for the chart: pip install "rlm-graph[eval]"', file=err)
    print(f"\nWrote {', '.join(files)}.", file=out)
    return 0


def run_eval_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``rlm-graph eval`` with parsed arguments.

    Args:
        args: Arguments from the parser made by :func:`add_eval_parser`.
        out: Where the table goes (default standard output).
        err: Where notes, the estimate and the progress bar go (default standard error).

    Returns:
        The exit status: 0 on success, 1 if cancelled, 2 for bad usage.
    """
    return asyncio.run(_run(args, out or sys.stdout, err or sys.stderr))
