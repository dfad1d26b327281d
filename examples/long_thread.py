"""A long scripted conversation: early turns state code words, to recall much later.

Used by the web page's conversation mode (``examples/web``) and by the history hook's
tests and benchmark (``tests/threads.py``). Each message is a slice of a novel, so the
thread is long (about 375 tokens per exchange) and no passage repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

__all__ = ["BOOK", "EARLY_FACTS", "fact", "scripted_thread"]

BOOK = Path(__file__).with_name("pride_and_prejudice.txt")
"""The prose the messages are cut from (about 122,000 words: 400 turns never repeat a passage)."""
EARLY_FACTS = {3: "CEDAR", 7: "ZEBRA", 20: "MAPLE", 50: "OTTER", 120: "QUARTZ", 200: "BISON"}
"""Turn number -> the code word stated in that turn (``NEEDLE-<turn> is <WORD>``)."""


def fact(turn: int) -> str:
    """The sentence stated in ``turn`` (one of :data:`EARLY_FACTS`), e.g. ``NEEDLE-0007 is ZEBRA``."""
    return f"NEEDLE-{turn:04d} is {EARLY_FACTS[turn]}"


def scripted_thread(
    turns: int = 400, words_per_message: int = 140, prose: Sequence[Path] = (BOOK,)
) -> list[BaseMessage]:
    """``turns`` exchanges (a user message and a reply each), about 375 tokens per exchange.

    Every message has an id ``turn-NNN-user`` / ``turn-NNN-assistant``; the turns in
    :data:`EARLY_FACTS` state a code word; the last exchange mentions the meeting room.

    Args:
        turns: Number of exchanges.
        words_per_message: Words of prose in each message.
        prose: Text files the messages are cut from, in order (wrapping around at the end).

    Returns:
        The messages, oldest first.
    """
    words = [word for path in prose for word in path.read_text(encoding="utf-8").split()]
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
