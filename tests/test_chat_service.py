"""The example chat service runs offline end to end."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_example_chat_service_offline() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "chat_service.py"),
            str(ROOT / "examples" / "pride_and_prejudice.txt"),
            "How much a year was Mr. Bennet's estate worth?",
            "Who inherits it?",
            "thanks!",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Using the offline extractive model")
    assert "two thousand a year" in out
    assert "(read as: Who inherits it? (How much a year was Mr. Bennet's estate worth?))" in out
    assert "entailed" in out.split("user: Who inherits it?")[1]
    assert "assistant: Happy to help" in out
