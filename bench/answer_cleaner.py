"""CPU time of the streaming answer cleaner per answer length (the token callback's own cost).

Run: ``.venv/bin/python bench/answer_cleaner.py``. Prints, for answers of growing length
with two citation markers per sentence, the CPU seconds the cleaner spends on all the
tokens and the time per token: a linear cleaner keeps the per-token figure flat.
"""

from __future__ import annotations

import time

from rlm_graph.answer_stream import AnswerCleaner
from rlm_graph.tokens import cl100k_base

SENTENCE = (
    "Elizabeth refuses Darcy's first proposal at Hunsford because of his pride and his part in "
    "separating Jane and Bingley [F3][F7]. "
)


def main() -> None:
    encoding = cl100k_base()
    print(f"{'tokens':>7} {'cpu s':>8} {'us/token':>9}")
    for repeats in (60, 120, 240, 480, 960):
        tokens = [encoding.decode([t]) for t in encoding.encode(SENTENCE * repeats)]
        cleaner = AnswerCleaner(40, strip=True)
        started = time.process_time()
        for token in tokens:
            cleaner.feed(token)
        spent = time.process_time() - started
        print(f"{len(tokens):7d} {spent:8.3f} {spent / len(tokens) * 1e6:9.2f}")


if __name__ == "__main__":
    main()
