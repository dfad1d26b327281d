"""The documentation runs: every Python block of README.md and docs/ that can run offline.

The convention (docs/development.md): a ```python block runs unless the line just
before its fence is ``<!-- docs-test: skip (why) -->``. The blocks of one page run in
order in one namespace, seeded with the names the pages take as given (``text``,
``model``, ``graph``, ``chat``...), and may use top-level ``await``. ``ChatOpenAI``
talks to the local OpenAI-compatible test server over HTTP (``OPENAI_BASE_URL``), so
nothing leaves the machine. The site itself must build with ``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.openai_server import ChatServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(skip|run)\b(.*?)-->\s*$")
REASON = re.compile(r"^\s*\((.*\S.*)\)\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})(\S*)")
README_MAX_LINES = 250
"""The README says what rlm-graph is and where the docs are; the rest lives in docs/."""


@dataclass
class Block:
    page: Path
    line: int
    """Line of the opening fence, counted from 1."""
    lang: str
    code: str
    marker: str | None
    """``"skip"`` or ``"run"`` when the line before the fence is a ``docs-test`` marker."""
    reason: str = ""
    """The reason a skip marker gives in parentheses."""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        """Python blocks run unless skipped; shell blocks only when marked to run."""
        return self.marker == "run" if self.lang in SHELLS else self.lang == "python" and self.marker != "skip"


SHELLS = ("bash", "sh", "shell", "console")


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, dedented, with their ``docs-test`` markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks, lang = opening.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]]
        marker = MARKER.match(lines[i - 1]) if i else None
        block = Block(page, i + 1, lang, "\n".join(body) + "\n", marker.group(1) if marker else None)
        if marker and (given := REASON.match(marker.group(2))):
            block.reason = given.group(1).strip()
        blocks.append(block)
        i = end + 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [block for block in code_blocks(page) if block.lang == "python"]


ALL_BLOCKS = [block for page in PAGES for block in python_blocks(page)]
RUN_PAGES = sorted({block.page for block in ALL_BLOCKS if block.runs})
SHELL_BLOCKS = [block for page in PAGES for block in code_blocks(page) if block.lang in SHELLS and block.runs]


class Recorder:
    """Stands in for a UI: ``ui.update(event)`` and ``ui.show(id, text, citations)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    # gpt-4o-mini's profile says 128K tokens; the server refuses what would not fit it.
    with ChatServer(window=128_000) as chat_server:
        yield chat_server


@pytest.fixture
def namespace(server: ChatServer, pride: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The names the pages take as given, as a reader's own code would define them."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from rlm_graph import DocumentChatState, RLMContext, create_document_node, create_rlm_graph

    model = ChatOpenAI(model="gpt-4o-mini", max_retries=0)
    question = "How much a year was Mr. Bennet's estate worth?"
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse_document", create_document_node(model))
    builder.add_edge(START, "analyse_document")
    builder.add_edge("analyse_document", END)
    return {
        "__name__": "__docs__",
        "ChatOpenAI": ChatOpenAI,
        "RLMContext": RLMContext,
        "create_rlm_graph": create_rlm_graph,
        "text": pride,
        "q": question,
        "question": question,
        "payload": {"document": pride, "question": question},
        "model": model,
        "graph": create_rlm_graph(model),
        "checkpointer": InMemorySaver(),
        "chat": builder.compile(checkpointer=InMemorySaver()),
        "config": {"configurable": {"thread_id": "docs"}},
        "tools": [],
        "ui": Recorder(),
    }


def run_block(block: Block, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    code = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        loop.run_until_complete(result)


@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(ROOT)) for p in RUN_PAGES])
def test_the_pages_python_blocks_run(page: Path, namespace: dict[str, Any]) -> None:
    # One loop per page: the async blocks of a page share clients bound to it.
    loop = asyncio.new_event_loop()
    try:
        for block in python_blocks(page):
            if not block.runs:
                continue
            try:
                run_block(block, namespace, loop)
            except Exception as error:
                error.add_note(f"in the Python block at {block.where}")
                raise
    finally:
        # Finish what the blocks left behind (async generators, the default executor's
        # threads) before the next page's loop starts.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    if "out" in namespace and isinstance(namespace["out"], dict) and "answer" in namespace["out"]:
        out = namespace["out"]
        assert isinstance(out["answer"], str), f"{page}: the answer is not a str"
        assert out["answer"].strip(), f"{page}: an empty answer"


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[block.where for block in SHELL_BLOCKS])
def test_the_shell_blocks_marked_to_run_run(block: Block) -> None:
    # Offline: no key or server in the environment, so the commands use the bundled model.
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    command = block.code.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{block.where} exited {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip(), f"{block.where} printed nothing"


def test_only_shell_blocks_are_marked_to_run() -> None:
    marked = [block.where for page in PAGES for block in code_blocks(page) if block.marker == "run"]
    assert [where for where in marked if where not in {block.where for block in SHELL_BLOCKS}] == []


def test_every_skip_says_why() -> None:
    unexplained = [block.where for block in ALL_BLOCKS if block.marker == "skip" and not block.reason]
    assert not unexplained, f"skip markers without a reason in parentheses: {unexplained}"


def test_most_python_blocks_run() -> None:
    # A marker put on everything would make the test above pass trivially.
    skipped = [block for block in ALL_BLOCKS if not block.runs]
    assert len(ALL_BLOCKS) >= 10, "the extractor found too few blocks"
    assert len(skipped) <= len(ALL_BLOCKS) // 4, [b.where for b in skipped]


def test_the_extractor_reads_markers_indented_blocks_and_other_languages(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip (needs a key) -->\n```python\ny = 2\n```\n\n"
        "```bash\necho no\n```\n\n- item:\n  ```python\n  z = 3\n  ```\n\n<!-- docs-test: skip -->\n```python\n```\n"
        "\n<!-- docs-test: run -->\n```bash\necho yes\n```\n"
    )
    found = [(b.lang, b.code, b.runs, b.reason) for b in code_blocks(page)]
    assert found == [
        ("python", "x = 1\n", True, ""),
        ("python", "y = 2\n", False, "needs a key"),
        ("bash", "echo no\n", False, ""),
        ("python", "z = 3\n", True, ""),
        ("python", "\n", False, ""),
        ("bash", "echo yes\n", True, ""),
    ]


def test_the_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; put the details in the matching page of docs/ and link to it"
    )


def test_the_readmes_links_lead_to_files() -> None:
    # The README is not part of the site, so the strict build does not check its links.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links to no page of docs/"
    broken = [target for target in local if not (ROOT / target).exists()]
    assert not broken, f"README.md links to missing files: {broken}"


def test_the_api_reference_covers_every_export() -> None:
    import rlm_graph

    directives = "\n".join(page.read_text(encoding="utf-8") for page in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: (?:\S+\.)?(\w+)$", directives, flags=re.M))
    missing = sorted(set(rlm_graph.__all__) - documented)
    assert not missing, f"add these exports of rlm_graph to a page of docs/reference/: {missing}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]")')
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
