"""A long scripted conversation for the history hook's tests and benchmark (built by ``examples/long_thread.py``)."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import BaseMessage

from examples.long_thread import EARLY_FACTS, fact
from examples.long_thread import scripted_thread as _scripted_thread

__all__ = ["EARLY_FACTS", "PROSE", "fact", "scripted_thread"]

ROOT = Path(__file__).resolve().parent.parent
# Two books, as when the benchmark's figures were taken (the example page uses one).
PROSE = [ROOT / "tests" / "data" / "frankenstein.txt", ROOT / "examples" / "pride_and_prejudice.txt"]


def scripted_thread(turns: int = 400, words_per_message: int = 140) -> list[BaseMessage]:
    """The scripted thread of :func:`examples.long_thread.scripted_thread`, cut from :data:`PROSE`."""
    return _scripted_thread(turns, words_per_message, PROSE)
