"""Long haystack texts built from the public-domain books shipped with the package."""

from __future__ import annotations

import gzip
import re
from functools import cache
from importlib import resources

from rlm_graph.file_input import read_document
from rlm_graph.offline import ExtractiveChatModel

__all__ = ["BOOKS", "book_text", "count_tokens", "haystack", "sentence_boundaries", "truncate_to_tokens"]

BOOKS = ("frankenstein", "pride_and_prejudice")
"""Project Gutenberg books (#84, #1342), boilerplate removed, gzip-compressed in ``evaluation/data``."""

# A sentence ends with . ! or ? (maybe a closing quote) followed by whitespace; facts go right after it.
_BOUNDARY = re.compile(r"[.!?][\"'”’)]*\s+")
_SAMPLE_CHARS = 200_000


@cache
def book_text(name: str) -> str:
    """The text of one shipped book.

    Args:
        name: One of :data:`BOOKS`.

    Returns:
        The book as every surface reads a file (:func:`rlm_graph.file_input.read_document`):
        no byte-order mark, LF line ends, so its offsets are those the CLI cites.
    """
    if name not in BOOKS:
        msg = f"unknown book {name!r}; the package ships {list(BOOKS)}"
        raise ValueError(msg)
    raw = resources.files("rlm_graph.evaluation").joinpath("data", f"{name}.txt.gz").read_bytes()
    return read_document(gzip.decompress(raw), "utf-8", f"{name}.txt").text


@cache
def _counter() -> ExtractiveChatModel:
    return ExtractiveChatModel()


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in cl100k_base (shipped with the package, so this works offline).

    Args:
        text: Any text.

    Returns:
        The token count.
    """
    return _counter().get_num_tokens(text)


@cache
def _chars_per_token() -> float:
    sample = "\n\n".join(book_text(name)[:_SAMPLE_CHARS] for name in BOOKS)
    return len(sample) / max(1, count_tokens(sample))


def haystack(tokens: int, seed: int) -> str:
    """About ``tokens`` tokens of book prose, starting at a seed-dependent paragraph.

    The books are joined and repeated as often as needed; the cut falls on a
    paragraph boundary.

    Args:
        tokens: Target size in cl100k_base tokens.
        seed: Picks the starting paragraph, so samples differ.

    Returns:
        The text.
    """
    library = "\n\n".join(book_text(name).strip() for name in BOOKS)
    paragraphs = library.split("\n\n")
    start = (seed * 7919) % len(paragraphs)
    rotated = "\n\n".join(paragraphs[start:] + paragraphs[:start])
    wanted = int(tokens * _chars_per_token())
    text = rotated
    while len(text) < wanted:
        text += "\n\n" + rotated
    cut = text.rfind("\n\n", 0, wanted)
    return text[: cut if cut > wanted // 2 else wanted]


def sentence_boundaries(text: str) -> list[int]:
    """Offsets where a new sentence starts (after the previous one's end and its spaces).

    Args:
        text: Prose.

    Returns:
        Increasing offsets.
    """
    return [match.end() for match in _BOUNDARY.finditer(text)]


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest start of ``text`` (cut at a line or word) within ``budget`` tokens.

    Args:
        text: The text.
        budget: Most tokens.

    Returns:
        ``text`` itself when it fits, else a prefix.
    """
    if budget <= 0:
        return ""
    total = count_tokens(text)
    if total <= budget:
        return text
    cut = int(len(text) * budget / total)
    # Token density varies along the text: shrink until the prefix fits.
    while cut > 0:
        space = text.rfind(" ", 0, cut)
        prefix = text[: space if space > cut // 2 else cut]
        if count_tokens(prefix) <= budget:
            return prefix
        cut = int(cut * 0.97)
    return ""
