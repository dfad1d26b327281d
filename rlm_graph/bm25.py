"""Okapi BM25's two factors, shared by the part index and the sentence ranker.

The variant is bm25s' default (Lucene's): the idf below, and a term-frequency factor
without the ``k1 + 1`` numerator, which scales every score alike and so leaves the
ranking as it is.
"""

from __future__ import annotations

import math
from typing import TypeVar

__all__ = ["K1", "B", "idf", "saturation"]

K1 = 1.5
"""Default term-frequency saturation."""
B = 0.75
"""Default length normalisation."""

Number = TypeVar("Number")


def idf(documents: int, frequency: int) -> float:
    """Lucene's inverse document frequency, ``log(1 + (N - df + 0.5) / (df + 0.5))``.

    Args:
        documents: How many documents (parts, sentences) are ranked.
        frequency: In how many of them the word occurs.

    Returns:
        The word's weight; never negative.
    """
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))


def saturation(tf: Number, length: Number, average: float, k1: float = K1, b: float = B) -> Number:
    """How much ``tf`` occurrences of a word count in a document of ``length`` words.

    Works on floats and, element by element, on numpy arrays.

    Args:
        tf: Occurrences of the word in the document.
        length: The document's length in words.
        average: The average length of the ranked documents.
        k1: Term-frequency saturation.
        b: Length normalisation.

    Returns:
        ``tf / (tf + k1 * (1 - b + b * length / average))``.
    """
    return tf / (tf + k1 * (1 - b + b * length / average))  # type: ignore[operator]
