"""The ``rlm-graph ask`` command."""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_graph.cli import _choose_model, _parser, _Progress, quote_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pride_and_prejudice.txt"
QUESTION = "How much a year was Mr. Bennet's estate worth?"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    return subprocess.run(
        [sys.executable, "-m", "rlm_graph.cli", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=300,
        check=False,
    )


def test_ask_offline_prints_answer_citations_and_progress() -> None:
    result = run_cli("ask", str(EXAMPLE), QUESTION)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Using the offline extractive model")
    assert "two thousand a year" in result.stdout
    assert "Citations:" in lines
    citation_lines = [line for line in lines if line.startswith("[")]
    assert citation_lines
    assert all("characters " in line and line.endswith('"') for line in citation_lines)
    # Not a terminal: plain progress lines, nested ones indented.
    assert re.search(r"^Split into [2-9] parts$", result.stderr, re.MULTILINE)
    assert "\n  Read 1 of" in result.stderr
    assert "\r" not in result.stderr


def test_ask_json_output() -> None:
    result = run_cli("ask", str(EXAMPLE), QUESTION, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.split("\n", 1)[1])
    assert set(payload) == {"answer", "citations", "usage", "errors"}
    assert payload["usage"]["llm_calls"] > 1


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("ask", str(tmp_path / "nope.txt"), QUESTION)
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_invalid_utf8_is_read_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café owners pay rent. The café rent is forty pounds.".encode("latin-1"))
    result = run_cli("ask", str(path), "What is the rent of the cafe?")
    assert result.returncode == 0
    assert "not valid UTF-8" in result.stderr


def test_key_or_base_url_selects_chat_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    args = _parser().parse_args(["ask", "f", "q", "--model", "qwen2.5"])
    model, note = _choose_model(args)
    assert type(model).__name__ == "ChatOpenAI"
    assert note == "Using qwen2.5 at http://127.0.0.1:9/v1."
    offline, note = _choose_model(_parser().parse_args(["ask", "f", "q", "--offline"]))
    assert type(offline).__name__ == "ExtractiveChatModel"
    assert "offline was requested" in note


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_redrawn_bar() -> None:
    screen = Terminal()
    progress = _Progress(screen)
    base = {"type": "progress", "stage": "analysis", "status": "done", "depth": 0, "span": None, "scope": [0, 9]}
    progress.show({**base, "message": "Read 1 of 4 parts", "done": 1, "total": 4})
    progress.show({**base, "message": "Read 4 of 4 parts", "done": 4, "total": 4})
    drawn = screen.getvalue()
    assert drawn.count("\r") == 2
    assert "[███████░░░░░░░░░░░░░░░░░░░░░] 1/4 Read 1 of 4 parts" in drawn
    assert "[████████████████████████████] 4/4" in drawn


def test_quote_picks_the_sentence_nearest_the_answer() -> None:
    text = "The weather was cold. Mr. Bennet had an estate of two thousand a year. Dinner was late."
    assert quote_for(text, 0, len(text), "two thousand a year") == "Mr. Bennet had an estate of two thousand a year."
