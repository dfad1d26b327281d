"""``mode="auto"``: read in full or focused, judged from the question alone.

A documented, offline heuristic (:func:`decide_mode`): any question whose answer may
be spread over the document is read in full; only targeted single-fact questions are
read focused (:mod:`rlm_graph.focus`).
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["decide_mode"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words and phrases whose answer is spread over the document: lists, counts, totals,
# coverage ("every", "all", "mention"), order (first, last, before, after), comparison
# (more, fewer, than), superlatives and change over time. Matched case-insensitively.
_AGGREGATION = re.compile(
    r"\b(?:list|lists|listing|every|everyone|everything|everywhere|all|each|both|summari[sz]e|summary|summaries|"
    r"overview|how\s+many|count|counts|counted|(?:the|a|what|which|total)\s+number\s+of|totals?|altogether|"
    r"in\s+all|sum|sums|average|median|overall|timeline|chronolog\w*|throughout|entire|whole|enumerate|"
    r"compare|compared|comparison|versus|vs|themes?|always|never|frequency|frequently|how\s+often|trace|"
    r"outline|describe|most|least|fewest|first|last|best|worst|top\s+(?:\d+|two|three|four|five|ten)|"
    r"maximum|minimum|rank|ranking|ranked|in\s+(?:what|which)\s+order|sequence|more|less|fewer|than|"
    r"before|after|differ\w*|in\s+common|mention|mentions|mentioned|appear|appears|appeared|occur|occurs|"
    r"occurred|occurrences?|instances?|times|whenever|wherever|whoever|whatever|else|other|others|various|"
    r"several|multiple|distinct|unique|change|changes|changed|evolve\w*|develop|develops|developed|"
    r"over\s+time|only|none|nobody|no\s+one|no\s+\w+|main|major|principal|"
    r"older|younger|taller|shorter|richer|poorer|bigger|smaller|larger|higher|lower|longer|earlier|later|"
    r"better|worse|cheaper|dearer|faster|slower|heavier|greater|wealthier|happier|closer|nearer|farther|"
    r"stronger|weaker|wiser)\b"
    # "What is the novel about?": a question about the whole text.
    r"|\babout\s*[?.!]*\s*$"
    # A plural subject: "who are", "what were", "which have", "are there".
    r"|\b(?:who|what|which|where|when|how|whose)\s+(?:are|were|have|do)\b|\b(?:are|were)\s+there\b",
    re.IGNORECASE,
)
# Superlatives: any word ending in -est except these.
_SUPERLATIVE = re.compile(r"\b[a-z]{2,}est\b", re.IGNORECASE)
_NOT_SUPERLATIVE = _words(
    "rest test west interest request guest quest forest honest modest chest nest pest vest zest crest protest "
    "contest suggest digest arrest invest harvest manifest priest conquest inquest earnest behest unrest attest "
    "detest lest jest ernest everest budapest bucharest midwest southwest northwest bequest tempest divest infest "
    "molest pretest retest wrest abreast breast beast feast east yeast northeast southeast celeste forrest",
)
# "Which/what <plural noun>": the words after the question word, up to the verb.
_HEAD_AFTER = re.compile(
    r"\b(?:which|what)\s+((?:[^\W\d_][\w'’-]*(?:\s+|[?.!,;:]+\s*)){0,3})|"
    r"^\s*(?:please\s+)?(?:name|give|find|show|identify|extract|collect|gather|provide|tell|get|pull|cite|quote)\s+"
    r"((?:[^\W\d_][\w'’-]*(?:\s+|[?.!,;:]+\s*|$)){1,3})",
    re.IGNORECASE,
)
_VERBS = _words(
    "is was are were be been has have had does do did will would can could should may might must shall",
)
_IRREGULAR_PLURALS = _words("people men women children mice feet teeth geese data criteria phenomena")
_NOT_PLURAL = _words(
    "always perhaps news series species means physics mathematics politics economics whereabouts sometimes "
    "afterwards towards besides unless thus yes its this his hers ours yours theirs mrs ms lens bias alias atlas "
    "canvas chaos ethos pathos iris gas plus",
)
# Common English function words; a question must use more of them than of the
# other languages' ones below to be judged by the English word lists.
_ENGLISH = _words(
    "what who whom whose when where which why how is are was were did does do the a an of to in on at by for "
    "from with and or his her their this that these those has have had can could should would will "
    "name give find show tell list summarize summarise extract identify describe explain",
)
_FOREIGN = _words(
    "ist die der das den dem und von ein eine wer wie wo wann welche welcher het een van wat wie waar wanneer "
    "le la les de des du est qui quel quelle quels où quand el los las es que quién qué cuál dónde cuándo "
    "il di che chi ha lo gli dove quando kuka mikä missä milloin ja oli",
)


def _plural_head(question: str) -> str | None:
    """The plural noun a "which/what ..." question (or a request like "name the ...") asks for."""
    for found in _HEAD_AFTER.finditer(question):
        for word in (found.group(1) or found.group(2) or "").split():
            word = word.strip("'’?.!,;:")
            lower = word.lower()
            if lower in _VERBS:
                break
            if lower in _IRREGULAR_PLURALS:
                return word
            plural = (
                word[:1].islower()
                and len(lower) > 3
                and lower.endswith("s")
                and not lower.endswith(("ss", "us", "is", "ous", "'s", "’s"))
                and lower not in _NOT_PLURAL
            )
            if plural:
                return word
    return None


def _is_english(question: str) -> bool:
    words = re.findall(r"[^\W\d_]+", question.lower())
    english = sum(word in _ENGLISH for word in words)
    return english > 0 and english > sum(word in _FOREIGN for word in words)


def decide_mode(question: str) -> tuple[Literal["full", "focused"], str]:
    """Decide between a full and a focused read from the question alone (``mode="auto"``).

    A documented, offline heuristic. A focused read stops after a share of the parts,
    so any question whose answer may be spread over the document is read in full:

    - lists, counts and totals: list, every, all, each, both, how many, number of,
      total, in all, average, summarize, timeline, mention, appear, times, ...;
    - superlatives and order: most, least, first, last, best, any ``-est`` word,
      top 5, in what order, ...;
    - comparisons: more, fewer, less, than, before, after, older, larger, ...,
      compare, differ, in common;
    - plural questions: "which/what" followed by a plural noun ("Which chapters
      ...", "What places ..."), requests for a plural ("Extract the dates"), and a
      plural verb ("Who are ...", "What were ...", "Are there ...");
    - change and exclusivity: change, develop, only, none, no one, other, else, ...

    Only what is left, a targeted single-fact question ("What is X's phone number?",
    "When did the ship leave Lisbon?", "Who wrote the letter to Elizabeth?"), is read
    focused. When in doubt the heuristic reads in full: a verb in ``-s`` after
    "which <noun>" counts as a plural noun ("Which girl loves Darcy?" is read in full).
    The word lists are English; a question with no English function words, or more
    words of another language than of English, is read in full unless
    ``mode="focused"`` is asked for.

    Args:
        question: The question.

    Returns:
        ``"full"`` or ``"focused"``, and the reason (reported by the ``split.mode`` event).
    """
    found = _AGGREGATION.search(question)
    if found:
        return "full", f"the question asks about the whole document ({found.group(0).strip().lower()!r})"
    for match in _SUPERLATIVE.finditer(question):
        if match.group(0).lower() not in _NOT_SUPERLATIVE:
            return "full", f"the question asks for a superlative ({match.group(0).lower()!r})"
    plural = _plural_head(question)
    if plural:
        return "full", f"the question asks about several things ({plural.lower()!r})"
    # Checked last, so that an English request such as "List every code." gets its real reason.
    if not _is_english(question):
        return "full", "the question is not in English, which the heuristic cannot judge"
    return "focused", "the question looks targeted"
