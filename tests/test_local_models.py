"""Local and self-hosted models on every surface: one builder reads the environment.

Everything runs through the real ``ChatOpenAI`` client against the local
OpenAI-compatible server (``tests/openai_server.py``), started with a model name
LangChain has no profile for, as a new user's vLLM, Ollama or llama.cpp server is.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from rlm_graph import create_rlm_graph, model_from_env
from rlm_graph.models import UnknownContextWindowError
from tests.fakes import NEEDLE
from tests.helpers import collect
from tests.openai_server import ChatServer, Faults

ROOT = Path(__file__).resolve().parent.parent
LOCAL_MODEL = "qwen2.5-local-test"
"""A name LangChain's model profiles do not know (checked below)."""
FILLER = "Nothing of note happens on this ordinary day in the village. " * 12


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command with a clean model environment plus ``env``, from the repository root."""
    drop = {"OPENAI_API_KEY", "OPENAI_BASE_URL", "RLM_MODEL", "RLM_CONTEXT_WINDOW"}
    clean = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        list(args), capture_output=True, text=True, env={**clean, **env}, cwd=ROOT, timeout=300, check=False
    )


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "rlm_graph.cli", *args, **env)


def _document(tmp_path: Path, paragraphs: int = 60) -> Path:
    parts = [FILLER for _ in range(paragraphs)]
    parts[paragraphs // 6] = "NEEDLE-0042 is VAULTCODE. " + FILLER
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(parts), encoding="utf-8")
    return path


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_local_model_name_has_no_langchain_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_openai import ChatOpenAI

    profile = ChatOpenAI(model=LOCAL_MODEL, api_key="x", base_url="http://127.0.0.1:9/v1").profile or {}
    assert "max_input_tokens" not in profile
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("RLM_CONTEXT_WINDOW", raising=False)
    with pytest.raises(UnknownContextWindowError, match="set RLM_CONTEXT_WINDOW"):
        model_from_env(LOCAL_MODEL)


def test_model_from_env_puts_the_window_in_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RLM_MODEL", LOCAL_MODEL)
    monkeypatch.setenv("RLM_CONTEXT_WINDOW", "16384")
    model, note = model_from_env()
    assert model.model_name == LOCAL_MODEL
    assert model.profile["max_input_tokens"] == 16384
    # Retries are the graph's (and shown in its progress), not the client's hidden ones.
    assert model.max_retries == 0
    assert note == f"Using {LOCAL_MODEL} at http://127.0.0.1:9/v1 (16,384-token window)."
    monkeypatch.setenv("RLM_CONTEXT_WINDOW", "lots")
    with pytest.raises(ValueError, match="RLM_CONTEXT_WINDOW must be a whole number"):
        model_from_env()
    # The offline model takes the window too, so the recursion follows it.
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("RLM_CONTEXT_WINDOW", "4096")
    assert model_from_env()[0].profile["max_input_tokens"] == 4096


def test_cli_answers_with_a_local_model_named_by_the_environment(tmp_path: Path) -> None:
    path = _document(tmp_path)
    with ChatServer(window=4096, model=LOCAL_MODEL) as server:
        result = cli(
            "ask", str(path), "What is NEEDLE-0042?",
            OPENAI_BASE_URL=server.base_url, RLM_MODEL=LOCAL_MODEL, RLM_CONTEXT_WINDOW="4096",
        )  # fmt: skip
        outcomes = {request.outcome for request in server.requests}
    assert result.returncode == 0, result.stderr
    assert "VAULTCODE" in result.stdout
    assert result.stderr.startswith(f"Using {LOCAL_MODEL} at {server.base_url} (4,096-token window).")
    assert outcomes == {"200"}


def test_cli_unknown_window_names_the_flag_and_the_variable(tmp_path: Path) -> None:
    path = _document(tmp_path, 4)
    with ChatServer(model=LOCAL_MODEL) as server:
        result = cli("ask", str(path), "What is NEEDLE-0042?", OPENAI_BASE_URL=server.base_url, RLM_MODEL=LOCAL_MODEL)
        requests = len(server.requests)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: the context window of '{LOCAL_MODEL}' is unknown (LangChain has no profile for it): pass "
        "--context-window with its window in tokens, e.g. --context-window 32768 (or set RLM_CONTEXT_WINDOW)"
    )
    assert requests == 0
    result = cli(
        "ask", str(path), "What is NEEDLE-0042?", "--context-window", "8192",
        OPENAI_BASE_URL=server.base_url, RLM_MODEL=LOCAL_MODEL,
    )  # fmt: skip
    # The server is gone by now: the flag was accepted and the run got as far as calling it.
    assert "context window" not in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--part-tokens", "10", "argument --part-tokens: must be at least 64, got 10"),
        ("--part-tokens", "many", "argument --part-tokens: must be a whole number, got 'many'"),
        ("--context-window", "100", "argument --context-window: must be at least 512, got 100"),
        ("--max-concurrency", "0", "argument --max-concurrency: must be at least 1, got 0"),
        ("--max-depth", "-1", "argument --max-depth: must be at least 0, got -1"),
    ],
)
def test_cli_messages_name_the_flag(tmp_path: Path, flag: str, value: str, message: str) -> None:
    path = _document(tmp_path, 2)
    result = cli("ask", str(path), "What?", flag, value)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"rlm-graph ask: error: {message}"
    assert "part_tokens" not in result.stderr
    assert "Traceback" not in result.stderr


def test_part_tokens_above_the_window_says_it_was_capped(tmp_path: Path) -> None:
    path = _document(tmp_path)
    with ChatServer(window=4096, model=LOCAL_MODEL) as server:
        result = cli(
            "ask", str(path), "What is NEEDLE-0042?", "--part-tokens", "100000", "--context-window", "4096",
            OPENAI_BASE_URL=server.base_url, RLM_MODEL=LOCAL_MODEL,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    capped = re.search(
        r"^note: --part-tokens 100000 is more than this model's window allows; "
        r"capped at ([\d,]+) tokens per reading call$",
        result.stderr,
        re.MULTILINE,
    )
    assert capped, result.stderr
    assert int(capped.group(1).replace(",", "")) < 4096
    assert "VAULTCODE" in result.stdout


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"rlm-graph {version('rlm-graph')}\n"


def test_unreachable_server_fails_after_a_few_announced_retries(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("A short document. The answer is 42.\n", encoding="utf-8")
    result = cli(
        "ask", str(path), "What is the answer?", "--context-window", "8192",
        OPENAI_BASE_URL=f"http://127.0.0.1:{_closed_port()}/v1", RLM_MODEL=LOCAL_MODEL,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    # The node's first message once, then each retry in words, then one error line.
    assert lines.count("Answering from the whole text") == 1
    retries = [line for line in lines if line.startswith("Retrying")]
    assert retries == [
        "Retrying the answer in 0.5 s: connection refused, attempt 2 of 4",
        "Retrying the answer in 1 s: connection refused, attempt 3 of 4",
        "Retrying the answer in 2 s: connection refused, attempt 4 of 4",
    ]
    assert lines[-1] == "error: OpenAIConnectionError: Connection error."


async def test_retries_of_parts_are_announced_once_each(tmp_path: Path) -> None:
    """A 503 on a part's first attempt: one retry event for that part, no repeated "Reading part"."""
    text = _document(tmp_path).read_text(encoding="utf-8")
    with ChatServer(window=4096, model=LOCAL_MODEL, faults=Faults(first=1, first_kind="503")) as server:
        model = model_from_env(LOCAL_MODEL, base_url=server.base_url, context_window=4096)[0]
        graph = create_rlm_graph(model, cache=False, read_ahead=False)
        out, events = await collect(graph, {"document": text, "question": "What is NEEDLE-0042?"})
    assert "VAULTCODE" in out["answer"]
    progress = [event for event in events if event["type"] == "progress"]
    retries = [event for event in progress if event["status"] == "retrying"]
    assert len(retries) == 1
    (retry,) = retries
    assert re.fullmatch(r"Retrying part (\d+) of (\d+) in 1-2 s: HTTP 503, attempt 2 of 5", retry["message"])
    index = retry["message"].split()[2]
    starts = [e for e in progress if e["message"].startswith(f"Reading part {index} of ")]
    assert len(starts) == 1
    assert out["errors"] == []
    assert NEEDLE.search(out["answer"])


def test_every_example_builds_its_model_from_the_environment(tmp_path: Path) -> None:
    """Both Studio graphs, the chat service and the web page, as a new user starts them."""
    script = textwrap.dedent(
        """
        import json
        from langchain_core.messages import HumanMessage
        from starlette.testclient import TestClient

        import examples.chat_service as chat_service
        import examples.studio as studio
        from examples.web.app import create_app

        text = open(TEXT, encoding="utf-8").read()
        rlm = studio.graph.invoke({"document": text, "question": "What is NEEDLE-0042?"})
        chat = chat_service.graph.invoke({"messages": [HumanMessage("What is NEEDLE-0042?")], "document": text})
        client = TestClient(create_app())
        stored = client.post("/api/documents", json={"text": text}).json()
        with client.stream("GET", "/api/ask", params={"doc": stored["id"], "q": "What is NEEDLE-0042?"}) as reply:
            events = "".join(reply.iter_text())
        result = json.loads(events.split("event: result")[1].split("data: ", 1)[1].split("\\n")[0])
        print(json.dumps({
            "rlm": rlm["answer"], "chat": chat["messages"][-1].text, "page": result["answer"],
            "info": client.get("/api/info").json()["model"],
        }))
        """
    ).replace("TEXT", repr(str(_document(tmp_path))))
    with ChatServer(window=16384, model=LOCAL_MODEL) as server:
        result = run(
            sys.executable, "-c", script,
            OPENAI_BASE_URL=server.base_url, RLM_MODEL=LOCAL_MODEL, RLM_CONTEXT_WINDOW="16384",
        )  # fmt: skip
        served = {request.outcome for request in server.requests}
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.splitlines()[-1])
    assert "VAULTCODE" in answers["rlm"]
    assert "VAULTCODE" in answers["chat"]
    assert "VAULTCODE" in answers["page"]
    assert answers["info"] == f"Using {LOCAL_MODEL} at {server.base_url} (16,384-token window)."
    assert served == {"200"}
