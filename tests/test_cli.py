"""The ``rlm-graph ask`` command."""

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_graph.cli import _choose_model, _parser, _Progress, quote_for
from tests.openai_server import ChatServer, Faults

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
    # The model note is a note: stderr. Stdout starts with the answer.
    assert result.stderr.startswith("Using the offline extractive model")
    assert "offline extractive" not in result.stdout
    assert "two thousand a year" in lines[0]
    assert "Citations:" in lines
    citation_lines = [line for line in lines if line.startswith("[")]
    assert citation_lines
    assert all("characters " in line and line.endswith('"') for line in citation_lines)
    # Not a terminal: plain progress lines, nested ones indented and naming their parent part.
    assert re.search(r"^Split into [2-9] parts$", result.stderr, re.MULTILINE)
    assert re.search(r"^  Part 1 of [2-9] > Read 1 of [2-9] parts$", result.stderr, re.MULTILINE)
    assert "\r" not in result.stderr


def test_ask_json_output_is_pure_json() -> None:
    result = run_cli("ask", str(EXAMPLE), QUESTION, "--json")
    assert result.returncode == 0, result.stderr
    # The whole of stdout parses: the model note went to stderr.
    payload = json.loads(result.stdout)
    assert set(payload) == {"answer", "citations", "usage", "errors"}
    assert "two thousand a year" in payload["answer"]
    assert payload["usage"]["llm_calls"] > 1
    assert "Using the offline extractive model" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("ask", str(tmp_path / "nope.txt"), QUESTION)
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_invalid_utf8_is_refused_naming_the_encoding_flag(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café owners pay rent. The café rent is forty pounds.".encode("latin-1"))
    result = run_cli("ask", str(path), "What is the rent of the cafe?")
    assert result.returncode == 2
    assert "not valid utf-8" in result.stderr
    assert "--encoding" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_encoding_flag_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café owners pay rent. The café rent is forty pounds.".encode("latin-1"))
    result = run_cli("ask", str(path), "What is the café rent?", "--encoding", "latin-1")
    assert result.returncode == 0, result.stderr
    assert "forty pounds" in result.stdout
    assert "café" in result.stdout


def test_utf16_file_reads_with_its_encoding_and_is_not_called_binary(tmp_path: Path) -> None:
    path = tmp_path / "utf16.txt"
    path.write_bytes("The café rent is forty pounds.".encode("utf-16"))
    refused = run_cli("ask", str(path), "What is the café rent?")
    assert refused.returncode == 2
    assert "--encoding utf-16" in refused.stderr
    result = run_cli("ask", str(path), "What is the café rent?", "--encoding", "utf-16")
    assert result.returncode == 0, result.stderr
    assert "forty pounds" in result.stdout


def test_unknown_encoding_is_bad_usage(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("The rent is forty pounds.", encoding="utf-8")
    result = run_cli("ask", str(path), "What is the rent?", "--encoding", "klingon-8")
    assert result.returncode == 2
    assert "unknown encoding 'klingon-8'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00word/document.xml", "a ZIP archive"),
        (b"The answer is 42.\x00\x00\x00\x01\x02 more text", "binary data (it holds NUL bytes)"),
        (bytes(range(1, 32)) * 20 + b"some words", "binary data"),
    ],
)
def test_binary_input_is_refused(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "input.bin"
    path.write_bytes(content)
    result = run_cli("ask", str(path), "What is the answer?")
    assert result.returncode == 2
    assert f"{path} " in result.stderr
    assert kind in result.stderr
    assert "not text" in result.stderr or "not a text file" in result.stderr
    assert result.stdout == ""


def test_a_damaged_pdf_is_refused_saying_so(tmp_path: Path) -> None:
    # PDFs are read now (tests/test_documents.py); one whose text cannot be extracted is still refused.
    path = tmp_path / "input.bin"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n")
    result = run_cli("ask", str(path), "What is the answer?")
    assert result.returncode == 2
    assert f"{path} could not be read as PDF" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_an_executable_is_refused() -> None:
    result = run_cli("ask", sys.executable, "What does it do?")
    assert result.returncode == 2
    assert "an executable program (ELF)" in result.stderr


def test_binary_from_standard_input_is_refused() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    result = subprocess.run(
        [sys.executable, "-m", "rlm_graph.cli", "ask", "-", "What is it?"],
        input=b"%PDF-1.4\n...",
        capture_output=True,
        env=clean,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert b"standard input could not be read as PDF" in result.stderr


def test_text_with_tabs_escapes_and_form_feeds_is_text() -> None:
    from rlm_graph.file_input import binary_kind

    text = "Name\tRent\r\nCafe\t40\f\n\x1b[1mbold\x1b[0m the rent is forty pounds.\n" * 50
    assert binary_kind(text.encode(), text) is None


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
def test_blank_question_is_bad_input(question: str) -> None:
    result = run_cli("ask", str(EXAMPLE), question)
    assert result.returncode == 2
    assert "question is empty" in result.stderr
    assert "Traceback" not in result.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_provider_error_on_the_one_call_path_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("A short document. The answer is 42.\n", encoding="utf-8")
    base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    # One run (the retries take a while): stderr has one error line, stdout still parses.
    result = run_cli(
        "ask", str(path), "What is the answer?", "--context-window", "8192", "--json", OPENAI_BASE_URL=base_url
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert 'File "' not in result.stderr
    assert re.search(r"^error: \w*ConnectionError: Connection error\.$", result.stderr, re.MULTILINE), result.stderr
    assert json.loads(result.stdout)["error"].endswith("ConnectionError: Connection error.")


def test_http_model_answers_and_failed_parts_go_to_stderr(tmp_path: Path) -> None:
    """A real ChatOpenAI run against the local server: one part always fails (503)."""
    filler = "Nothing of note happens on this ordinary day in the village. " * 12
    paragraphs = [filler for _ in range(60)]
    paragraphs[10] = "NEEDLE-0042 is VAULTCODE. " + filler
    paragraphs[50] = f"POISON {filler}"
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    with ChatServer(window=4096, faults=Faults(marker="POISON", marker_kind="context")) as server:
        result = run_cli(
            "ask", str(path), "What is NEEDLE-0042?", "--context-window", "4096", OPENAI_BASE_URL=server.base_url
        )
    assert result.returncode == 0, result.stderr
    assert "VAULTCODE" in result.stdout
    assert re.search(r"^warning: 1 part could not be read:\n  characters \d+-\d+: ", result.stderr, re.MULTILINE)
    assert not re.search(r"^\s*characters \d+-\d+: ", result.stdout, re.MULTILINE)
def test_key_or_base_url_selects_chat_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RLM_CONTEXT_WINDOW", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    args = _parser().parse_args(["ask", "f", "q", "--model", "qwen2.5", "--context-window", "16384"])
    model, note = _choose_model(args)
    assert type(model).__name__ == "ChatOpenAI"
    assert model.profile["max_input_tokens"] == 16384
    assert note == "Using qwen2.5 at http://127.0.0.1:9/v1 (16,384-token window)."
    offline, note = _choose_model(_parser().parse_args(["ask", "f", "q", "--offline"]))
    assert type(offline).__name__ == "ExtractiveChatModel"
    assert "offline was requested" in note


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_redrawn_bar_of_run_wide_reads() -> None:
    screen = Terminal()
    progress = _Progress(screen)
    base = {"type": "progress", "stage": "analysis", "status": "done", "span": None, "scope": [0, 9]}
    # A nested level's message moves the bar by the run-wide count, not by its own 1 of 2.
    progress.show({**base, "depth": 1, "message": "Read 1 of 2 parts", "done": 1, "total": 2, "leaves_done": 1,
                   "leaves_total": 4})
    progress.show({**base, "depth": 0, "message": "Read 4 of 4 parts", "done": 4, "total": 4, "leaves_done": 4,
                   "leaves_total": 4})
    drawn = screen.getvalue()
    assert drawn.count("\r") == 2
    assert "[███████░░░░░░░░░░░░░░░░░░░░░] 1/4 reads · Read 1 of 2 parts" in drawn
    assert "[████████████████████████████] 4/4 reads" in drawn


def test_quote_picks_the_sentence_nearest_the_answer() -> None:
    text = "The weather was cold. Mr. Bennet had an estate of two thousand a year. Dinner was late."
    assert quote_for(text, 0, len(text), "two thousand a year") == "Mr. Bennet had an estate of two thousand a year."
