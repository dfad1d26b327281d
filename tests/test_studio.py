"""`langgraph dev` serves both graphs from langgraph.json, progress events included."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
LANGGRAPH = Path(sys.executable).parent / "langgraph"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dev_server(tmp_path: Path):
    if not LANGGRAPH.exists() and not shutil.which("langgraph"):
        pytest.skip("langgraph-cli is not installed (pip install -e '.[test]')")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}} | {
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    }
    log = (tmp_path / "langgraph-dev.log").open("w")
    process = subprocess.Popen(
        [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"langgraph dev did not start: {(tmp_path / 'langgraph-dev.log').read_text()[-2000:]}")
    if process.poll() is not None:
        pytest.fail(f"langgraph dev exited: {(tmp_path / 'langgraph-dev.log').read_text()[-2000:]}")
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


async def test_studio_streams_progress_from_every_depth(dev_server: str, pride: str) -> None:
    from langgraph_sdk import get_client

    client = get_client(url=dev_server)
    assistants = {a["graph_id"] for a in await client.assistants.search()}
    assert {"rlm", "chat"} <= assistants
    thread = await client.threads.create()
    depths: set[int] = set()
    final = None
    async for part in client.runs.stream(
        thread["thread_id"],
        "rlm",
        input={"document": pride, "question": "How much a year was Mr. Bennet's estate worth?"},
        stream_mode=["custom", "values"],
        stream_subgraphs=True,
    ):
        if part.event.startswith("custom") and isinstance(part.data, dict) and part.data.get("type") == "progress":
            depths.add(part.data["depth"])
        elif part.event == "values":
            final = part.data
        elif part.event == "error":
            pytest.fail(f"run failed: {part.data}")
    assert {0, 1} <= depths
    assert final is not None
    assert "two thousand a year" in final["answer"]
    assert final["citations"]


async def test_studio_serves_the_chat_graph(dev_server: str) -> None:
    from langgraph_sdk import get_client

    client = get_client(url=dev_server)
    thread = await client.threads.create()
    # Asked in the text's own words: the offline model quotes only sentences holding half the
    # question's key-term weight, and "owns" is not in this two-sentence text.
    result = await client.runs.wait(
        thread["thread_id"],
        "chat",
        input={
            "messages": [{"role": "user", "content": "Who does Pemberley belong to?"}],
            "document": "Pemberley belongs to Mr. Darcy. Longbourn belongs to Mr. Bennet.",
        },
    )
    assert "Pemberley belongs to Mr. Darcy" in result["messages"][-1]["content"]
    # Studio's graph view asks for the xray drawing: the analysis graph's nodes show inside the chat graph.
    (chat,) = await client.assistants.search(graph_id="chat")
    drawn = await client.assistants.get_graph(chat["assistant_id"], xray=True)
    names = {node["id"] for node in drawn["nodes"]}
    assert {"analyse_document:check", "analyse_document:process_chunk", "analyse_document:synthesize"} <= names


async def test_studio_streams_the_chat_answer_token_by_token(dev_server: str) -> None:
    from langgraph_sdk import get_client

    client = get_client(url=dev_server)
    thread = await client.threads.create()
    document = "Pemberley belongs to Mr. Darcy, whose estate in Derbyshire is large. Longbourn belongs to Mr. Bennet."
    chunks: list[dict] = []
    async for part in client.runs.stream(
        thread["thread_id"],
        "chat",
        input={"messages": [{"role": "user", "content": "Who does Pemberley belong to?"}], "document": document},
        stream_mode="messages-tuple",
    ):
        if part.event == "error":
            pytest.fail(f"run failed: {part.data}")
        if part.event == "messages":
            message, _metadata = part.data
            if message["type"] in ("ai", "AIMessageChunk"):
                chunks.append(message)
    stored = (await client.threads.get_state(thread["thread_id"]))["values"]["messages"][-1]
    assert "Pemberley belongs to Mr. Darcy" in stored["content"]
    # Several chunks, all with the stored message's id, that join to its text.
    assert len(chunks) > 3
    assert {c["id"] for c in chunks} == {stored["id"]}
    assert "".join(c["content"] for c in chunks) == stored["content"]
