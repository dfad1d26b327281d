"""The reading pipeline's reply forms: a part's reading, a synthesis, a focused synthesis.

Each is a :class:`rlm_graph.replies.ReplyForm`, read strictly (rule 1 of issue 27): a reply
is what it says, or :class:`rlm_graph.replies.Unreadable`. Never guessed either way:

- "Nothing relevant" is only the ``NO_RELEVANT_INFORMATION`` marker alone (or, structured,
  ``relevant: false``). The marker after a preamble or beside other text, and prose that
  says the part holds nothing ("There is no information about that in this part.") without
  reporting anything, cannot be read: the reader is asked again, in the expected form.
- A reading that reports something (with or without a preamble) is a reading.
- A focused synthesis must end with its ``COMPLETE:`` line; a relay reading's
  ``CONFIDENCE:`` line, when it is written, must say high, medium or low.

Values are canonical text, the form the rest of the pipeline reads: a reading's report and
its ``QUOTE:`` lines (or the bare marker), a focused synthesis' answer and its ``COMPLETE:``
line. A structured reply becomes the same text, so quotes, synthesis and coverage work the
same for both formats.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from rlm_graph.focus import split_complete
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, is_no_relevant, mentions_marker
from rlm_graph.relay import LEVELS, split_confidence
from rlm_graph.replies import ReplyForm, Unreadable
from rlm_graph.reply_schemas import FOCUSED_SYNTHESIS_SCHEMA, READING_SCHEMA, RELAY_READING_SCHEMA

__all__ = [
    "ANSWER_FORM",
    "FOCUSED_SYNTHESIS_FORM",
    "SYNTHESIS_FORM",
    "VERDICT_UNREADABLE",
    "Reading",
    "reading_form",
    "says_nothing",
    "verdict_only",
]

# Phrases by which a reader says in words that its part holds nothing. A reply that says so
# and reports nothing else (no QUOTE line) is neither a finding nor the marker.
_NOTHING = re.compile(
    r"\b(?:"
    r"no (?:relevant |specific |such |direct )?(?:information|mention|details?|facts?|data|reference|answer)"
    r"|nothing (?:relevant|about|regarding|related|in|here|that|to)"
    r"|(?:does|do|did) ?(?:not|n't) (?:contain|mention|include|provide|say|state|discuss|address|answer|specify|"
    r"give|reveal|refer|indicate)"
    r"|(?:is|are|was|were) not (?:mentioned|found|present|stated|provided|given|specified|relevant|discussed)"
    r"|(?:isn't|aren't|wasn't|weren't) (?:mentioned|found|present|stated|provided|given|specified|relevant)"
    r"|(?:cannot|can't|could not|couldn't|unable to) (?:find|locate|determine|identify|answer)"
    r"|not relevant"
    r")\b",
    re.IGNORECASE,
)
# A reply that is only one of these words says the same ("None.", "N/A"). "No" is not among them:
# it may answer a yes-or-no question.
_BARE_NOTHING = frozenset(
    {"none", "n/a", "na", "nothing", "nil", "unknown", "not applicable", "not mentioned", "not found", "not stated"}
)
_QUOTE_LINE = re.compile(r"^[ \t>*_`\-]*quote[ \t*_`]*:", re.IGNORECASE | re.MULTILINE)
_SAYS_NOTHING_MOST_CHARS = 400
# A longer reply that happens to use such a phrase is reporting something.


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# A sentence that turns ("..., but the code is ZULU-7") reports something after all.
_CONTRAST = re.compile(r"\b(?:but|however|although|though|except|yet|while|whereas|instead)\b", re.IGNORECASE)


def says_nothing(text: str) -> bool:
    """Whether a reply only says, in words, that its part holds nothing relevant.

    Every sentence of a short reply must say so ("no information", "does not mention", ...)
    and none may turn to report something ("..., but the code is ZULU-7").

    Args:
        text: The reply (no ``QUOTE:`` line in it).

    Returns:
        True for a short reply whose every sentence says the part holds nothing.
    """
    if len(text) > _SAYS_NOTHING_MOST_CHARS:
        return False
    sentences = [sentence for sentence in _SENTENCE_END.split(text.strip()) if sentence.strip()]
    return bool(sentences) and all(
        (_NOTHING.search(sentence) or sentence.strip(" \t.!*_`'\"-").lower() in _BARE_NOTHING)
        and not _CONTRAST.search(sentence)
        for sentence in sentences
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """A part's reading, as the reader gave it."""

    relevant: bool
    """False: the reader said the part holds nothing relevant."""
    text: str
    """The report and its ``QUOTE:`` lines; the bare marker when not relevant."""
    confidence: float | None = None
    """Relay: the stated confidence (high 0.9, medium 0.6, low 0.3); ``None`` when none was stated."""


_MARKER_MIXED = (
    f"it mixes the marker {NO_RELEVANT_INFORMATION} with other text, so it neither reports facts "
    "nor says plainly that the part holds nothing"
)
_SAYS_NOTHING = (
    "it says in words that the part holds nothing relevant, instead of reporting facts "
    f"or replying with the marker {NO_RELEVANT_INFORMATION} alone"
)


def _reading_text(reply: str, relay: bool) -> Reading | Unreadable:
    text = reply.strip()
    confidence: float | None = None
    if relay:
        split = split_confidence(text)
        if isinstance(split, Unreadable):
            return split
        text, confidence = split
        if not text:
            return Unreadable("it holds only the CONFIDENCE line, no reading")
    if is_no_relevant(text):
        return Reading(False, NO_RELEVANT_INFORMATION, confidence)
    # Prose first: "No relevant information." is a sentence, not the marker with text beside it.
    if not _QUOTE_LINE.search(text) and says_nothing(text):
        return Unreadable(_SAYS_NOTHING)
    if mentions_marker(text):
        return Unreadable(_MARKER_MIXED)
    return Reading(True, text, confidence)


def _reports_something(text: str) -> bool:
    """Whether a field's text reports something: not empty, not the marker, not prose saying nothing."""
    text = text.strip()
    return bool(text) and not is_no_relevant(text) and not says_nothing(text)


_CONTRADICTS = "relevant is false, but {field} something: set relevant to true, or leave {it} empty"


def _reading_json(data: dict[str, Any]) -> Reading | Unreadable:
    confidence = LEVELS.get(str(data.get("confidence", "")).lower())
    findings = data["findings"].strip()
    quotes = [quote.strip() for quote in data["quotes"] if quote.strip()]
    if not data["relevant"]:
        # A reply that says both is not read either way: its facts are neither kept nor dropped unasked.
        if quotes or _reports_something(findings):
            field = "the quotes hold" if quotes else "the findings report"
            return Unreadable(_CONTRADICTS.format(field=field, it="them" if quotes else "it"))
        return Reading(False, NO_RELEVANT_INFORMATION, confidence)
    if not findings and not quotes:
        return Unreadable("relevant is true, but findings and quotes are empty")
    if not quotes and (mentions_marker(findings) or says_nothing(findings)):
        return Unreadable("relevant is true, but the findings say the part holds nothing relevant")
    quoted = "".join(f'\nQUOTE: "{quote}"' for quote in quotes)
    return Reading(True, (findings + quoted).strip(), confidence)


_READING_EXPECTED = (
    'the facts, then each supporting sentence on its own line as QUOTE: "..."; or, only if the part '
    f"holds nothing about the question, the single word {NO_RELEVANT_INFORMATION} and nothing else"
)
_RELAY_EXPECTED = _READING_EXPECTED + ", then a last line CONFIDENCE: high, CONFIDENCE: medium or CONFIDENCE: low"


@functools.cache
def reading_form(relay: bool) -> ReplyForm[Reading]:
    """The form of a part's reading (relay readings also state their confidence).

    Args:
        relay: Whether the run has a ``large_model`` (the reading then ends with a confidence).

    Returns:
        The form.
    """
    return ReplyForm(
        "reading",
        functools.partial(_reading_text, relay=relay),
        _RELAY_EXPECTED if relay else _READING_EXPECTED,
        schema=RELAY_READING_SCHEMA if relay else READING_SCHEMA,
        parse_json=_reading_json,
    )


def _answer_text(reply: str) -> str | Unreadable:
    text = reply.strip()
    if is_no_relevant(text):
        return NO_RELEVANT_INFORMATION
    if mentions_marker(text):
        return Unreadable(_MARKER_MIXED)
    return text


SYNTHESIS_FORM: ReplyForm[str] = ReplyForm(
    "synthesis",
    _answer_text,
    f"the combined answer with its [F1] citations; or, only if no finding is relevant, {NO_RELEVANT_INFORMATION} alone",
)
"""A synthesis: the answer, or the marker alone (text only: the final answer streams to the user)."""


ANSWER_FORM: ReplyForm[str] = ReplyForm(
    "answer",
    _answer_text,
    "the whole answer to the question, shorter if need be, without the text it comes from",
)
"""A whole document's answer in one call (``direct_answer``): any text, read whole (never a cut one)."""


VERDICT_UNREADABLE = "its last line is not COMPLETE: yes, COMPLETE: partly or COMPLETE: no"
"""The problem of a focused synthesis whose answer could be read but not its ``COMPLETE:`` line."""


def verdict_only(error: dict[str, Any]) -> bool:
    """Whether an ``errors`` entry is a focused synthesis' unreadable ``COMPLETE:`` line alone.

    Its answer was read and counts as ``partly`` (reading goes on, the note says the answer may
    be incomplete), so the entry is reported without a note of text not covered.
    """
    return error.get("kind") == "unparsed" and str(error.get("error", "")).endswith(VERDICT_UNREADABLE)


def _focused_text(reply: str) -> str | Unreadable:
    body, verdict = split_complete(reply)
    if verdict is None:
        return Unreadable(VERDICT_UNREADABLE)
    answer = _answer_text(body)
    if isinstance(answer, Unreadable):
        return answer
    return f"{answer}\nCOMPLETE: {verdict}"


def _focused_json(data: dict[str, Any]) -> str | Unreadable:
    if not data["relevant"]:
        if _reports_something(data["answer"]):
            return Unreadable(_CONTRADICTS.format(field="the answer gives", it="it"))
        return f"{NO_RELEVANT_INFORMATION}\nCOMPLETE: no"
    answer = _answer_text(data["answer"])
    if isinstance(answer, Unreadable):
        return answer
    if not answer:
        return Unreadable("relevant is true, but the answer is empty")
    return f"{answer}\nCOMPLETE: {data['complete']}"


FOCUSED_SYNTHESIS_FORM: ReplyForm[str] = ReplyForm(
    "focused_synthesis",
    _focused_text,
    "the combined answer with its [F1] citations, then a last line of its own: COMPLETE: yes, "
    "COMPLETE: partly or COMPLETE: no",
    schema=FOCUSED_SYNTHESIS_SCHEMA,
    parse_json=_focused_json,
)
"""A focused round's synthesis: the answer (or the marker) and the ``COMPLETE:`` verdict, as text."""
