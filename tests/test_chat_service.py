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


async def test_example_chat_service_recalls_an_early_turn_of_a_long_thread() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from chat_service import build_chat_graph
    from langchain_core.messages import HumanMessage

    from rlm_graph import ExtractiveChatModel
    from tests.threads import fact, scripted_thread

    chat = build_chat_graph(ExtractiveChatModel())
    thread = scripted_thread(400)
    state = await chat.ainvoke({"messages": [*thread, HumanMessage("Remind me: what was NEEDLE-0007?")]})
    answer = state["messages"][-1].text
    assert fact(7) in answer
    assert "turn-007-user" in answer
    assert len(state["messages"]) == len(thread) + 2
