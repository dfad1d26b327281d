"""A run killed with SIGKILL resumes in another process; finished parts are not read again."""

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from tests.fakes import plant_needles
from tests.openai_server import ChatServer

ROOT = Path(__file__).resolve().parent.parent


def worker(server: ChatServer, kind: str, target: str, thread: str, document: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.resume_worker", server.base_url, kind, target, thread, str(document), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def saved_findings(kind: str, target: str, thread: str) -> set[tuple[int, int]]:
    """Spans of the findings the checkpointer holds for ``thread``, at every depth.

    A part whose finding was saved is settled: the resumed run must not read it again.
    """
    if kind == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(target)) as connection:
            rows = connection.execute(
                "SELECT type, value FROM writes WHERE thread_id = ? AND channel = 'findings'", (thread,)
            ).fetchall()
    else:
        import psycopg

        with psycopg.connect(target) as connection:
            rows = connection.execute(
                "SELECT type, blob FROM checkpoint_writes WHERE thread_id = %s AND channel = 'findings'", (thread,)
            ).fetchall()
    serde = JsonPlusSerializer()
    spans: set[tuple[int, int]] = set()
    for type_, blob in rows:
        value = serde.loads_typed((type_, bytes(blob)))
        for finding in value if isinstance(value, list) else [value]:
            if isinstance(finding, dict) and "start" in finding:
                spans.add((finding["start"], finding["end"]))
    return spans


def kill_and_resume(server: ChatServer, kind: str, target: str, document: Path, facts: list[str]) -> dict:
    first = worker(server, kind, target, "t-1", document, "start")
    deadline = time.monotonic() + 60
    while len([r for r in server.log if r.kind == "read" and r.outcome == "200"]) < 12:
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = len(server.log)
    time.sleep(0.5)  # let the server notice the dropped connections
    before = server.log[:killed_at]
    # What the killed worker had saved, read from the database itself (not guessed from timing).
    settled = saved_findings(kind, target, "t-1")
    second = worker(server, kind, target, "t-1", document, "resume")
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    out = json.loads(stdout.strip().splitlines()[-1])
    after = server.log[killed_at:]
    read_before = {r.span for r in before if r.kind == "read" and r.outcome == "200"}
    repeated = [r for r in after if r.kind == "read" and r.span in read_before]
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []
    # Parts whose findings were saved are not read again; the others were in flight or
    # finished in the worker's last moments, before their findings were written.
    assert len(settled) >= 6, settled
    assert [r.span for r in repeated if r.span in settled] == []
    # A part read but not saved is one the worker still held: at most its concurrency
    # in calls, plus as many finished replies still on their way to the database.
    assert len(repeated) <= 4
    return {"before": len(before), "after": len(after), "repeated": len(repeated), "saved": len(settled)}


@pytest.fixture
def long_document(frankenstein: str, tmp_path: Path) -> tuple[Path, list[str]]:
    text, facts, _ = plant_needles(frankenstein, 20)
    path = tmp_path / "document.txt"
    path.write_text(text, encoding="utf-8")
    return path, facts


def test_sqlite_resume_after_sigkill(long_document: tuple[Path, list[str]], tmp_path: Path) -> None:
    document, facts = long_document
    with ChatServer(delay=0.15) as server:
        figures = kill_and_resume(server, "sqlite", str(tmp_path / "checkpoints.sqlite"), document, facts)
    print(f"resume figures: {figures}")
    assert figures["before"] >= 12


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("langgraph.checkpoint.postgres")
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    data = tmp_path_factory.mktemp("pgdata")
    for parent in data.parents:
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o711)  # the postgres user must reach its data directory
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    init = subprocess.run(
        [*run_as, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        pytest.skip(f"PostgreSQL initdb failed: {init.stderr[-500:]}")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    start = subprocess.run(
        [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"],
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr[-500:]}")
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)


def test_postgres_resume_after_sigkill(long_document: tuple[Path, list[str]], postgres_url: str) -> None:
    document, facts = long_document
    with ChatServer(delay=0.15) as server:
        figures = kill_and_resume(server, "postgres", postgres_url, document, facts)
    print(f"resume figures: {figures}")
    assert figures["before"] >= 12
