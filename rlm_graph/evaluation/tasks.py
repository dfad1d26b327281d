"""Long-context tasks with exact gold answers: synthetic facts hidden in book prose.

Six tasks, in the spirit of RULER and OOLONG:

- ``single``: one key's value, among distractor keys that share a word with it;
- ``multivalue``: every value of one key (four of them), among other keys' values;
- ``multikey``: the values of three keys asked at once;
- ``variables``: variable tracking, a chain of ``VAR X = VAR Y`` assignments across the document;
- ``count``: how many ledger entries carry a label (aggregation);
- ``most``: which label the most ledger entries carry (aggregation).

Each fact is its own sentence, inserted at a sentence boundary at a seeded depth
(share of the document); :class:`Fact` records where it landed.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rlm_graph.evaluation.texts import count_tokens, haystack, sentence_boundaries

__all__ = ["TASK_NAMES", "Fact", "Task", "build_task"]

TASK_NAMES = ("single", "multivalue", "multikey", "variables", "count", "most")

ScoreKind = Literal["values", "names", "count", "label"]

_ADJECTIVES = (
    "amber", "copper", "silver", "crimson", "ivory", "cobalt", "scarlet", "golden",
    "violet", "russet", "azure", "olive", "coral", "slate", "umber", "jade",
)  # fmt: skip
_NOUNS = (
    "falcon", "heron", "lynx", "otter", "badger", "marten", "osprey", "plover",
    "stoat", "wren", "ibex", "tern", "vole", "kestrel", "bittern", "curlew",
)  # fmt: skip
_LABELS = ("harbour", "orchard", "quarry", "meadow", "foundry", "granary")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Fact:
    """One inserted sentence and where it is."""

    text: str
    offset: int
    """Character offset in the task's document: ``document[offset:offset + len(text)] == text``."""
    depth: float
    """Requested position as a share of the document (0 = start, 1 = end)."""
    gold: bool
    """Whether the fact is part of the answer (``False``: a distractor)."""


@dataclass(frozen=True)
class Task:
    """A document, a question about it and the exact gold answer."""

    name: str
    length: int
    """Requested document size in tokens."""
    seed: int
    document: str
    question: str
    gold: tuple[str, ...]
    """Gold answer items: values, variable names, the count, or the label."""
    kind: ScoreKind
    """How answers are scored (see :func:`rlm_graph.evaluation.scoring.score_answer`)."""
    known: tuple[str, ...]
    """Every item the document's facts name (gold and distractors), for the scorer."""
    facts: tuple[Fact, ...] = field(repr=False)
    document_tokens: int = 0


@dataclass
class _Spec:
    facts: list[tuple[str, float, bool]]
    question: str
    gold: list[str]
    kind: ScoreKind
    known: list[str]


def _depth(rng: random.Random) -> float:
    return round(rng.uniform(0.02, 0.98), 3)


def _keys(rng: random.Random, count: int) -> list[str]:
    pairs = rng.sample([(a, n) for a in _ADJECTIVES for n in _NOUNS], count)
    return [f"{a}-{n}" for a, n in pairs]


def _values(rng: random.Random, count: int) -> list[str]:
    return [str(v) for v in rng.sample(range(1_000_000, 10_000_000), count)]


def _near_keys(rng: random.Random, key: str, count: int) -> list[str]:
    """Distractor keys that share a word with ``key`` (so word matching alone cannot tell them apart)."""
    adjective, noun = key.split("-")
    near = [f"{adjective}-{n}" for n in _NOUNS if n != noun] + [f"{a}-{noun}" for a in _ADJECTIVES if a != adjective]
    return rng.sample(near, count)


def _single(rng: random.Random) -> _Spec:
    key = _keys(rng, 1)[0]
    others = _near_keys(rng, key, 4)
    value, *decoys = _values(rng, 5)
    facts = [(f"The special magic number for {key} is {value}.", _depth(rng), True)]
    facts += [
        (f"The special magic number for {k} is {v}.", _depth(rng), False) for k, v in zip(others, decoys, strict=True)
    ]
    return _Spec(facts, f"What is the special magic number for {key}?", [value], "values", [value, *decoys])


def _multivalue(rng: random.Random) -> _Spec:
    key = _keys(rng, 1)[0]
    others = _near_keys(rng, key, 2)
    values = _values(rng, 8)
    gold, decoys = values[:4], values[4:]
    facts = [(f"One of the special magic numbers for {key} is {v}.", _depth(rng), True) for v in gold]
    facts += [
        (f"One of the special magic numbers for {others[i % 2]} is {v}.", _depth(rng), False)
        for i, v in enumerate(decoys)
    ]
    question = f"What are all the special magic numbers for {key}?"
    return _Spec(facts, question, gold, "values", values)


def _multikey(rng: random.Random) -> _Spec:
    keys = _keys(rng, 6)
    values = _values(rng, 6)
    facts = [
        (f"The special magic number for {k} is {v}.", _depth(rng), i < 3)
        for i, (k, v) in enumerate(zip(keys, values, strict=True))
    ]
    question = f"What are the special magic numbers for {keys[0]}, {keys[1]} and {keys[2]}?"
    return _Spec(facts, question, values[:3], "values", values)


def _names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(_LETTERS) for _ in range(5)))
    return rng.sample(sorted(names), count)


def _variables(rng: random.Random) -> _Spec:
    names = _names(rng, 7)
    chain, decoy_chain = names[:4], names[4:]
    value, decoy_value = (str(v) for v in rng.sample(range(10_000, 100_000), 2))
    facts: list[tuple[str, float, bool]] = []
    for members, first, is_gold in ((chain, value, True), (decoy_chain, decoy_value, False)):
        # Each assignment must come after the one it copies: increasing depths in chain order.
        depths = sorted(_depth(rng) for _ in members)
        facts.append((f"VAR {members[0]} = {first}.", depths[0], is_gold))
        facts += [
            (f"VAR {name} = VAR {previous}.", depth, is_gold)
            for previous, name, depth in zip(members, members[1:], depths[1:], strict=False)
        ]
    question = (
        f"Which variables are assigned the value {value}, directly or through other variables? "
        "(A line VAR X = VAR Y gives X the value of Y.)"
    )
    return _Spec(facts, question, chain, "names", names)


def _ledger(rng: random.Random) -> tuple[list[tuple[str, float, bool]], list[str], dict[str, int]]:
    labels = rng.sample(_LABELS, 4)
    counts = dict(zip(labels, rng.sample(range(2, 10), 4), strict=True))
    ids = _names(rng, sum(counts.values()))
    facts = []
    for label, number in counts.items():
        facts += [(f"Ledger entry {ids.pop()} carries the label {label}.", _depth(rng), True) for _ in range(number)]
    return facts, labels, counts


def _count(rng: random.Random) -> _Spec:
    facts, labels, counts = _ledger(rng)
    label = rng.choice(labels)
    facts = [(text, depth, text.endswith(f" {label}.")) for text, depth, _ in facts]
    question = f"How many ledger entries carry the label {label}?"
    return _Spec(facts, question, [str(counts[label])], "count", [str(counts[label])])


def _most(rng: random.Random) -> _Spec:
    facts, labels, counts = _ledger(rng)
    top = max(labels, key=counts.__getitem__)
    question = f"Which label do the most ledger entries carry ({', '.join(sorted(labels))})?"
    return _Spec(facts, question, [top], "label", labels)


_GENERATORS: dict[str, Callable[[random.Random], _Spec]] = {
    "single": _single,
    "multivalue": _multivalue,
    "multikey": _multikey,
    "variables": _variables,
    "count": _count,
    "most": _most,
}


def _place(text: str, facts: list[tuple[str, float, bool]]) -> tuple[str, list[Fact]]:
    """Insert each fact at the first sentence boundary at or after its depth, each at its own boundary."""
    boundaries = sentence_boundaries(text) or [0]
    order = sorted(range(len(facts)), key=lambda i: facts[i][1])  # stable: chain order kept on ties
    chosen: list[int] = []
    used = -1
    for i in order:
        index = bisect.bisect_left(boundaries, int(facts[i][1] * len(text)))
        index = min(max(index, used + 1), len(boundaries) - 1)
        used = index
        chosen.append(boundaries[index])
    pieces, placed, shift, previous = [], [], 0, 0
    for i, position in zip(order, chosen, strict=True):
        sentence, depth, gold = facts[i]
        pieces.append(text[previous:position])
        placed.append(Fact(sentence, position + shift, depth, gold))
        pieces.append(sentence + " ")
        shift += len(sentence) + 1
        previous = position
    pieces.append(text[previous:])
    return "".join(pieces), placed


def build_task(name: str, length: int, seed: int = 0) -> Task:
    """Generate one task: the same ``(name, length, seed)`` always gives the same task.

    Args:
        name: One of :data:`TASK_NAMES`.
        length: Document size in tokens (cl100k_base), facts included (about).
        seed: Sample number.

    Returns:
        The task, its facts and their offsets.
    """
    if name not in _GENERATORS:
        msg = f"unknown task {name!r}; choose from {list(TASK_NAMES)}"
        raise ValueError(msg)
    rng = random.Random(f"{name}:{length}:{seed}")
    spec = _GENERATORS[name](rng)
    fact_tokens = sum(count_tokens(text) + 1 for text, _, _ in spec.facts)
    document, facts = _place(haystack(max(64, length - fact_tokens), seed), spec.facts)
    return Task(
        name=name,
        length=length,
        seed=seed,
        document=document,
        question=spec.question,
        gold=tuple(spec.gold),
        kind=spec.kind,
        known=tuple(spec.known),
        facts=tuple(facts),
        document_tokens=count_tokens(document),
    )
