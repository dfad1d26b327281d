"""A run killed with SIGKILL resumes in another process; finished parts are not read again."""

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


def kill_and_resume(server: ChatServer, kind: str, target: str, document: Path, facts: list[str]) -> dict:
    first = worker(server, kind, target, "t-1", document, "start")
    deadline = time.monotonic() + 60
    while len([r for r in server.log if r.kind == "read" and r.outcome == "200"]) < 12:
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    first.wait()
    killed_at = len(server.log)
    time.sleep(0.5)  # let the server notice the dropped connections
    before = server.log[:killed_at]
    second = worker(server, kind, target, "t-1", document, "resume")
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    out = json.loads(stdout.strip().splitlines()[-1])
    after = server.log[killed_at:]
    # A reply is settled once the worker has had time to checkpoint it; replies that
    # reached the worker in its last moments were still in flight from its side.
    settled = {r.prompt_hash for r in before if r.outcome == "200" and r.finished < killed - 0.1}
    in_flight = [r for r in before if r.prompt_hash not in settled]
    repeated = [r for r in after if r.prompt_hash in {b.prompt_hash for b in before}]
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []
    # Only calls that were in flight at the kill are repeated; settled reads are not.
    assert [r for r in repeated if r.prompt_hash in settled] == []
    assert len(repeated) <= 2  # max_concurrency of the worker
    return {"before": len(before), "after": len(after), "repeated": len(repeated), "in_flight": len(in_flight)}


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
