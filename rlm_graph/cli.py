"""Command line: ``rlm-graph ask FILE "question"``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel

from rlm_graph.errors import RLMError
from rlm_graph.graph import create_rlm_graph
from rlm_graph.models import DEFAULT_OPENAI_MODEL, model_from_env
from rlm_graph.offline import rank_sentences, split_sentences

_BAR_WIDTH = 28
_QUOTE_CHARS = 160


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm-graph", description="Answer questions about documents longer than a model's context window."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer a question about a text file")
    ask.add_argument("file", help="UTF-8 text file to read ('-' for standard input)")
    ask.add_argument("question", help="the question to answer")
    ask.add_argument(
        "--model",
        help=f"ChatOpenAI model name (default {DEFAULT_OPENAI_MODEL}); needs OPENAI_API_KEY or OPENAI_BASE_URL",
    )
    ask.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama)")
    ask.add_argument("--offline", action="store_true", help="use the offline extractive model even if a key is set")
    ask.add_argument("--context-window", type=int, help="the model's window in tokens (if its profile lacks it)")
    ask.add_argument("--max-concurrency", type=int, default=8, help="most model calls in flight (default 8)")
    ask.add_argument("--max-depth", type=int, default=8, help="deepest nesting level (default 8)")
    ask.add_argument(
        "--part-tokens",
        type=int,
        help="most document tokens per reading call (default 16384; the window may allow fewer)",
    )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    return parser


def _choose_model(args: argparse.Namespace) -> tuple[BaseChatModel, str]:
    return model_from_env(args.model, base_url=args.base_url, offline=args.offline)


def _read(path: str) -> tuple[str, bool]:
    raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    text = raw.decode("utf-8", errors="replace")
    return text, "\ufffd" in text and b"\xef\xbf\xbd" not in raw


class _Progress:
    """Draws the depth-0 progress as a bar on a terminal, or plain lines otherwise."""

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
        if event["depth"] == 0 and event["stage"] == "analysis" and event["total"]:
            self.done, self.total = event["done"], event["total"]
        filled = int(_BAR_WIDTH * self.done / self.total) if self.total else 0
        bar = "█" * filled + "░" * (_BAR_WIDTH - filled)
        line = f"\r[{bar}] {self.done}/{self.total or '?'} {event['message']}"[:120]
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
    sentences = split_sentences(document[start:end].lstrip("\ufeff"))
    best = rank_sentences(answer, sentences, 1, min_share=0.0)
    quote = sentences[best[0]] if best else " ".join(document[start:end].split())
    return quote if len(quote) <= _QUOTE_CHARS else quote[: _QUOTE_CHARS - 1].rstrip() + "…"


async def _ask(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    model, note = _choose_model(args)
    print(note, file=out, flush=True)
    try:
        document, replaced = _read(args.file)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=err)
        return 2
    if replaced:
        print("warning: the file is not valid UTF-8; undecodable bytes were replaced with U+FFFD", file=err)
    try:
        graph = create_rlm_graph(
            model,
            context_window=args.context_window,
            max_concurrency=args.max_concurrency,
            max_depth=args.max_depth,
            **({} if args.part_tokens is None else {"part_tokens": args.part_tokens}),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
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
    except (RLMError, ValueError, TypeError) as exc:
        progress.close()
        print(f"error: {exc}", file=err)
        return 1
    progress.close()
    if args.json:
        print(json.dumps({k: result.get(k) for k in ("answer", "citations", "usage", "errors")}, indent=2), file=out)
        return 0
    print(result["answer"], file=out)
    if result["citations"]:
        print("\nCitations:", file=out)
        for number, citation in enumerate(result["citations"], start=1):
            quote = quote_for(document, citation["start"], citation["end"], result["answer"])
            print(f'[{number}] characters {citation["start"]}-{citation["end"]}: "{quote}"', file=out)
    if result["errors"]:
        print(f"\nWarning: {len(result['errors'])} part(s) could not be read:", file=out)
        for error in result["errors"]:
            print(f"  characters {error['start']}-{error['end']}: {error['error']}", file=out)
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
        return asyncio.run(_ask(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
