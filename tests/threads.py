"""A long scripted conversation for the history hook's tests and benchmark."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

ROOT = Path(__file__).resolve().parent.parent
# Two books, so 400 turns never repeat a passage (a repeat would really be "about" an older turn).
PROSE = [ROOT / "tests" / "data" / "frankenstein.txt", ROOT / "examples" / "pride_and_prejudice.txt"]
EARLY_FACTS = {3: "CEDAR", 7: "ZEBRA", 20: "MAPLE", 50: "OTTER", 120: "QUARTZ", 200: "BISON"}
"""Turn number -> the code word stated in that turn (``NEEDLE-<turn> is <WORD>``)."""


def fact(turn: int) -> str:
    return f"NEEDLE-{turn:04d} is {EARLY_FACTS[turn]}"


def scripted_thread(turns: int = 400, words_per_message: int = 140) -> list[BaseMessage]:
    """``turns`` exchanges (a user message and a reply each), about 375 tokens per exchange.

    Every message has an id ``turn-NNN-user`` / ``turn-NNN-assistant``; the turns in
    :data:`EARLY_FACTS` state a code word; the last exchange mentions the meeting room.
    """
    words = [word for path in PROSE for word in path.read_text(encoding="utf-8").split()]
    messages: list[BaseMessage] = []
    cursor = 0
    for turn in range(1, turns + 1):
        chunk = " ".join(words[cursor : cursor + 2 * words_per_message])
        cursor = (cursor + 2 * words_per_message) % (len(words) - 2 * words_per_message)
        first, second = chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]
        said = f"For the record, {fact(turn)}. " if turn in EARLY_FACTS else ""
        if turn == turns:
            said += "We meet in the meeting room BLUE-ROOM-42 tomorrow. "
        messages.append(HumanMessage(f"{said}Turn {turn}: {first}", id=f"turn-{turn:03d}-user"))
        messages.append(AIMessage(f"Noted. {second}", id=f"turn-{turn:03d}-assistant"))
    return messages
