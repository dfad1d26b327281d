"""Many workers: the reply cache shared between worker processes through a real Redis server."""

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import plant_needles
from tests.openai_server import ChatServer

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "List every NEEDLE code."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server from Debian's packages on a loopback port, its files in a temp dir."""
    redis = pytest.importorskip("redis")
    debian = Path("/usr/bin/redis-server")
    binary = shutil.which("redis-server") or (str(debian) if debian.exists() else None)
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly",
         "no", "--protected-mode", "yes", "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.skip(f"redis-server did not start: {process.stderr.read()[-500:]!r}")
            time.sleep(0.05)
    yield url
    client.close()
    process.terminate()
    process.wait(timeout=10)


def _worker(server: ChatServer, redis_url: str, document: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.cache_worker", server.base_url, redis_url, str(document), QUESTION],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_worker_process_reuses_the_first_ones_readings(
    frankenstein: str, redis_url: str, tmp_path: Path
) -> None:
    text, facts, _ = plant_needles(frankenstein[:150_000], 8)
    document = tmp_path / "document.txt"
    document.write_text(text, encoding="utf-8")
    with ChatServer(window=8192) as server:
        first = _worker(server, redis_url, document)
        first_requests = len(server.requests)
        second = _worker(server, redis_url, document)
        later = server.requests[first_requests:]
    reads = [request for request in server.requests[:first_requests] if request.kind == "read"]
    assert len(reads) >= 4
    assert all(fact in first["answer"] for fact in facts)
    # The second process read nothing: every reading (and the synthesis) came from Redis.
    assert [request.kind for request in later] == []
    assert second["answer"] == first["answer"]
    assert all(fact in second["answer"] for fact in facts)
    assert second["usage"]["llm_calls"] == 0
    assert second["usage"]["cached_calls"] == first["usage"]["llm_calls"]
