"""Command line: ``rlm-graph ask FILE "question"`` and ``rlm-graph eval``.

FILE may be plain text, Markdown, HTML, PDF or DOCX; the text of HTML, PDF and
DOCX files is extracted first (PDF and DOCX need the ``documents`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel

from rlm_graph.citations import citation_kind, describe_citation, mark_answer, nearest_sentence
from rlm_graph.errors import describe_error
from rlm_graph.estimate import part_limit
from rlm_graph.file_input import BadInputError, read_file
from rlm_graph.graph import create_rlm_graph
from rlm_graph.models import DEFAULT_OPENAI_MODEL, MIN_CONTEXT_WINDOW, UnknownContextWindowError, model_from_env
from rlm_graph.options import DEFAULT_PART_TOKENS, MIN_PART_TOKENS

__all__ = ["main", "quote_for"]

_BAR_WIDTH = 28
_QUOTE_CHARS = 160


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``.

    argparse names the flag in its message ("argument --part-tokens: must be at
    least 64, got 10"), which the graph's own checks, written for Python callers,
    cannot do.
    """

    def whole_number(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            msg = f"must be a whole number, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if value < minimum:
            msg = f"must be at least {minimum}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return whole_number


def _version() -> str:
    try:
        return version("rlm-graph")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        return "unknown"

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm-graph", description="Answer questions about documents longer than a model's context window."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer a question about a document")
    ask.add_argument(
        "file", help="document to read: text, Markdown, HTML, PDF or DOCX ('-' for standard input)"
    )
    ask.add_argument("question", help="the question to answer")
    ask.add_argument(
        "--model",
        help=f"ChatOpenAI model name (default {DEFAULT_OPENAI_MODEL}); needs OPENAI_API_KEY or OPENAI_BASE_URL",
    )
    ask.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama)")
    ask.add_argument("--offline", action="store_true", help="use the offline extractive model even if a key is set")
    ask.add_argument(
        "--context-window",
        type=_at_least(MIN_CONTEXT_WINDOW),
        help="the model's window in tokens, for models LangChain has no profile for (default: RLM_CONTEXT_WINDOW)",
    )
    ask.add_argument(
        "--max-concurrency", type=_at_least(1), default=8, help="most model calls in flight (default 8)"
    )
    ask.add_argument("--max-depth", type=_at_least(0), default=8, help="deepest nesting level (default 8)")
    ask.add_argument(
        "--part-tokens",
        type=_at_least(MIN_PART_TOKENS),
        help=f"most document tokens per reading call (default {DEFAULT_PART_TOKENS}; the window may allow fewer)",
    )
    ask.add_argument(
        "--mode",
        choices=["full", "focused", "auto", "navigate"],
        default="full",
        help="full: read every part (default); focused: the most relevant parts first; auto: pick from the "
        "question; navigate: the model explores the document with tools (needs tool calling)",
    )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON (notes go to stderr)")
    ask.add_argument(
        "--encoding", default="utf-8", help="the file's text encoding, e.g. latin-1, cp1252, utf-16 (default utf-8)"
    )
    from rlm_graph.evaluation.command import add_eval_parser

    add_eval_parser(commands)
    return parser


def _choose_model(args: argparse.Namespace) -> tuple[BaseChatModel, str]:
    """The model the flags and the environment name, with its window.

    Raises:
        ValueError: With a message that names the flags, if the window is unknown or invalid.
    """
    try:
        return model_from_env(
            args.model, base_url=args.base_url, offline=args.offline, context_window=args.context_window
        )
    except UnknownContextWindowError as exc:
        msg = (
            f"the context window of {exc.model_name!r} is unknown (LangChain has no profile for it): "
            "pass --context-window with its window in tokens, e.g. --context-window 32768 "
            "(or set RLM_CONTEXT_WINDOW)"
        )
        raise ValueError(msg) from None


class _Progress:
    """Draws the run's reading progress as a bar on a terminal, or plain lines otherwise.

    The bar counts reading calls across all depths (``leaves_done / leaves_total``),
    so it moves with every message printed beside it, whatever its depth.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.done = 0
        self.total = 0

    def show(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress":
            return
        if not self.tty:
            print("  " * event["depth"] + event["message"], file=self.stream, flush=True)
            return
        if event.get("leaves_total"):
            self.done, self.total = event["leaves_done"], event["leaves_total"]
        elif event["stage"] == "direct" and event["status"] == "done":
            self.done, self.total = 1, 1
        filled = int(_BAR_WIDTH * min(self.done, self.total) / self.total) if self.total else 0
        bar = "█" * filled + "░" * (_BAR_WIDTH - filled)
        line = f"\r[{bar}] {self.done}/{self.total or '?'} reads · {event['message']}"[:120]
        self.stream.write(line.ljust(121))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 121 + "\r")
            self.stream.flush()


def quote_for(document: str, start: int, end: int, answer: str) -> str:
    """A short quote from a cited span: its sentence closest to the answer.

    Args:
        document: The whole document.
        start: Span start.
        end: Span end.
        answer: The answer, used to pick the sentence.

    Returns:
        At most about 160 characters of the span.
    """
    sentence = nearest_sentence(document, start, end, answer)
    quote = " ".join((sentence["text"] if sentence else document[start:end]).split())
    return quote if len(quote) <= _QUOTE_CHARS else quote[: _QUOTE_CHARS - 1].rstrip() + "…"


def _print_citations(citations: list[dict[str, Any]], document: str, answer: str, out: TextIO) -> None:
    print("\nCitations:", file=out)
    for number, citation in enumerate(citations, start=1):
        if citation_kind(citation) == "part" and "sentence" not in citation:
            # No sentence matched the reader's report (or the result predates them): try the answer.
            sentence = nearest_sentence(document, citation["start"], citation["end"], answer)
            citation = {**citation, **({"sentence": sentence} if sentence else {})}
        print(f"[{number}] {describe_citation(citation)}", file=out)


def _fail(message: str, args: argparse.Namespace, out: TextIO, err: TextIO, status: int) -> int:
    """Report a failure on stderr (and as JSON on stdout with ``--json``) and return ``status``."""
    print(f"error: {message}", file=err, flush=True)
    if args.json:
        print(json.dumps({"error": message}, ensure_ascii=False), file=out)
    return status


async def _ask(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.question.strip():
        return _fail("the question is empty: ask something about the document", args, out, err, 2)
    try:
        extracted = read_file(args.file, args.encoding)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror or exc}", args, out, err, 2)
    except BadInputError as exc:
        return _fail(str(exc), args, out, err, 2)
    document = extracted.text
    try:
        model, note = _choose_model(args)
    except ValueError as exc:
        return _fail(str(exc), args, out, err, 2)
    # Notes go to stderr: stdout holds only the answer (or, with --json, only JSON).
    print(note, file=err, flush=True)
    if extracted.format in {"pdf", "docx", "html"}:
        pages = f"{len(extracted.pages)} pages, " if extracted.pages else ""
        name = "standard input" if args.file == "-" else args.file
        kind = extracted.format.upper()
        print(f"Read {name} as {kind}: {pages}{len(document):,} characters of text", file=err, flush=True)
    try:
        # The window is in the model's profile (model_from_env put it there).
        graph = create_rlm_graph(
            model,
            max_concurrency=args.max_concurrency,
            max_depth=args.max_depth,
            mode=args.mode,
            **({} if args.part_tokens is None else {"part_tokens": args.part_tokens}),
        )
        limit = part_limit(graph, args.question)
    except ValueError as exc:
        return _fail(str(exc), args, out, err, 2)
    if args.part_tokens is not None and args.part_tokens > limit:
        print(
            f"note: --part-tokens {args.part_tokens} is more than this model's window allows; "
            f"capped at {limit:,} tokens per reading call",
            file=err,
            flush=True,
        )
    progress = _Progress(err)
    result: dict[str, Any] = {}
    try:
        async for namespace, mode, chunk in graph.astream(
            {"document": document, "question": args.question},
            stream_mode=["custom", "values"],
            subgraphs=True,
        ):
            if mode == "custom":
                progress.show(chunk)
            elif namespace == ():
                result = chunk
    except Exception as exc:  # noqa: BLE001 - any failure (a provider's too) becomes one line, not a traceback
        progress.close()
        return _fail(describe_error(exc), args, out, err, 1)
    progress.close()
    errors = result.get("errors") or []
    if errors:
        print(f"warning: {len(errors)} {'part' if len(errors) == 1 else 'parts'} could not be read:", file=err)
        for error in errors:
            print(f"  characters {error['start']}-{error['end']}: {error['error']}", file=err)
    # A PDF's citations also name their pages (offsets mapped to the pages they fall on).
    citations = [extracted.cite(citation) for citation in result.get("citations") or []]
    if args.json:
        payload = {k: result.get(k) for k in ("answer", "usage", "errors")} | {"citations": citations}
        if extracted.format in {"pdf", "docx", "html"}:
            # Offsets refer to the extracted text, not to the file: give it with the answer.
            pages = [[page.start, page.end, page.number] for page in extracted.pages or ()]
            payload["document"] = {"format": extracted.format, "chars": len(document), "text": document}
            payload["document"] |= {"pages": pages} if extracted.pages else {}
        print(json.dumps(payload, indent=2), file=out)
        return 0
    # The answer is printed with [n] after each sentence that uses citation n; it may end with
    # notes about parts that were not read.
    print(mark_answer(result["answer"], citations), file=out)
    if citations:
        _print_citations(citations, document, result["answer"], out)
    usage = result["usage"]
    print(
        f"\n{usage.get('llm_calls', 0)} model calls, {usage.get('input_tokens', 0)} input and "
        f"{usage.get('output_tokens', 0)} output tokens, depth {usage.get('max_depth', 0)}.",
        file=out,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 if the run failed, 2 for bad usage or input.
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "eval":
            from rlm_graph.evaluation.command import run_eval_command

            return run_eval_command(args)
        return asyncio.run(_ask(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
