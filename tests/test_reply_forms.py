"""The reading pipeline's replies, read strictly: what each form reads, and what it refuses."""

from __future__ import annotations

import pytest

from rlm_graph.focus import split_complete
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, is_no_relevant
from rlm_graph.relay import split_confidence
from rlm_graph.replies import Unreadable
from rlm_graph.reply_forms import FOCUSED_SYNTHESIS_FORM, SYNTHESIS_FORM, Reading, reading_form
from rlm_graph.retrieval import term_spans

READING = reading_form(relay=False)
RELAY = reading_form(relay=True)


def test_is_no_relevant_accepts_the_marker_alone_only() -> None:
    assert is_no_relevant("NO_RELEVANT_INFORMATION")
    assert is_no_relevant("**NO_RELEVANT_INFORMATION**.")
    assert is_no_relevant("`no_relevant_information`")
    # It used to accept anything that started with the marker.
    assert not is_no_relevant("NO_RELEVANT_INFORMATION, but NEEDLE-0001 is ABC.")
    assert not is_no_relevant("I read it.\nNO_RELEVANT_INFORMATION")


@pytest.mark.parametrize(
    "reply",
    [
        "There is no information about that in this part.",
        "This part does not mention the launch code.",
        "The launch code is not mentioned in this part.",
        "I could not find anything about the launch code here.",
        "This part does not mention the launch code. There is no information about it here.",
        "I have read the part carefully.\n\nNO_RELEVANT_INFORMATION",
        "NO_RELEVANT_INFORMATION. The part is about the weather, though it says the code is ZULU-7.",
        "No relevant information.",
        "None.",
        "**N/A**",
        "Nothing.",
        "Not mentioned.",
    ],
)
def test_a_reading_that_neither_reports_nor_is_the_marker_cannot_be_read(reply: str) -> None:
    assert isinstance(READING.parse(reply), Unreadable)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("No relevant information.", "says in words"),
        ("None.", "says in words"),
        ("I read it.\n\nNO_RELEVANT_INFORMATION", "mixes the marker"),
    ],
)
def test_the_correction_names_what_the_reply_did(reply: str, problem: str) -> None:
    unreadable = READING.parse(reply)
    assert isinstance(unreadable, Unreadable)
    assert problem in unreadable.problem


def test_a_bare_no_may_answer_a_yes_or_no_question() -> None:
    assert READING.parse("No.") == Reading(True, "No.")


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ("NEEDLE-0001 is ABC.", "NEEDLE-0001 is ABC."),
        # A "not mentioned" clause beside a reported fact is a reading, quotes or not.
        ("The year is not mentioned, but the code is ZULU-7.", "The year is not mentioned, but the code is ZULU-7."),
        (
            "The part does not mention the launch. The code ZULU-7 is listed in the appendix.",
            "The part does not mention the launch. The code ZULU-7 is listed in the appendix.",
        ),
        ("Sure! Here is what I found:\nNEEDLE-0001 is ABC.", "Sure! Here is what I found:\nNEEDLE-0001 is ABC."),
        # A report that quotes its support is a reading, even with a "does not mention" clause in it.
        (
            'The part does not mention the year, but the code is ZULU-7.\nQUOTE: "The code is ZULU-7."',
            'The part does not mention the year, but the code is ZULU-7.\nQUOTE: "The code is ZULU-7."',
        ),
    ],
)
def test_a_reading_that_reports_is_read_as_written(reply: str, text: str) -> None:
    assert READING.parse(reply) == Reading(True, text)


def test_the_marker_alone_is_nothing_relevant() -> None:
    assert READING.parse("  NO_RELEVANT_INFORMATION\n") == Reading(False, NO_RELEVANT_INFORMATION)


def test_structured_readings() -> None:
    reply = '{"relevant": true, "findings": "The code is ZULU-7.", "quotes": ["The code is ZULU-7."]}'
    found = READING.read(reply, True)
    assert found == Reading(True, 'The code is ZULU-7.\nQUOTE: "The code is ZULU-7."')
    nothing = READING.read('{"relevant": false, "findings": "Nothing here.", "quotes": []}', True)
    assert nothing == Reading(False, NO_RELEVANT_INFORMATION)
    # relevant: true with findings that say there is nothing: a contradiction, not read either way.
    prose = '{"relevant": true, "findings": "There is no information about that in this part.", "quotes": []}'
    assert isinstance(READING.read(prose, True), Unreadable)
    assert isinstance(READING.read('{"relevant": true, "findings": "", "quotes": []}', True), Unreadable)
    assert isinstance(READING.read('{"relevant": true, "findings": "cut', True), Unreadable)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ('{"relevant": false, "findings": "The code is ZULU-7.", "quotes": []}', "the findings report something"),
        ('{"relevant": false, "findings": "", "quotes": ["The code is ZULU-7."]}', "the quotes hold something"),
    ],
)
def test_a_structured_reading_that_contradicts_itself_is_not_read_either_way(reply: str, problem: str) -> None:
    # Small models do write relevant: false beside the facts they found. Neither half is taken on trust:
    # the facts are not dropped unasked, and the part is not counted as holding them.
    unreadable = READING.read(reply, True)
    assert isinstance(unreadable, Unreadable)
    assert problem in unreadable.problem
    assert READING.read('{"relevant": false, "findings": "", "quotes": []}', True) == Reading(
        False, NO_RELEVANT_INFORMATION
    )
    answer = '{"relevant": false, "answer": "The code is ZULU-7 [F1].", "complete": "yes"}'
    assert isinstance(FOCUSED_SYNTHESIS_FORM.read(answer, True), Unreadable)
    empty = '{"relevant": false, "answer": "", "complete": "no"}'
    assert FOCUSED_SYNTHESIS_FORM.read(empty, True) == f"{NO_RELEVANT_INFORMATION}\nCOMPLETE: no"


def test_relay_readings_read_their_confidence() -> None:
    assert RELAY.parse("A is B.\nCONFIDENCE: low") == Reading(True, "A is B.", 0.3)
    assert RELAY.parse("NO_RELEVANT_INFORMATION\nCONFIDENCE: high") == Reading(False, NO_RELEVANT_INFORMATION, 0.9)
    # No line: a model that ignores the request counts as confident; content stays content.
    assert RELAY.parse("Sample size: 1,204.\nConfidence level: 95%") == Reading(
        True, "Sample size: 1,204.\nConfidence level: 95%"
    )
    assert isinstance(RELAY.parse("A is B.\nCONFIDENCE: 80%"), Unreadable)
    assert isinstance(RELAY.parse("CONFIDENCE: high"), Unreadable)
    structured = '{"relevant": true, "findings": "A is B.", "quotes": [], "confidence": "medium"}'
    assert RELAY.read(structured, True) == Reading(True, "A is B.", 0.6)


def test_split_confidence_reports_our_marker_with_another_value() -> None:
    assert isinstance(split_confidence("A\nCONFIDENCE: very sure"), Unreadable)
    assert split_confidence("A\nConfidence: 95%") == ("A\nConfidence: 95%", None)


def test_synthesis_replies() -> None:
    assert SYNTHESIS_FORM.parse("The code is ZULU-7 [F1].") == "The code is ZULU-7 [F1]."
    assert SYNTHESIS_FORM.parse("NO_RELEVANT_INFORMATION") == NO_RELEVANT_INFORMATION
    assert isinstance(SYNTHESIS_FORM.parse("NO_RELEVANT_INFORMATION, except that A is B [F1]."), Unreadable)


def test_focused_synthesis_needs_its_complete_line() -> None:
    assert FOCUSED_SYNTHESIS_FORM.parse("A is B [F1].\n**Complete:** Yes") == "A is B [F1].\nCOMPLETE: yes"
    assert isinstance(FOCUSED_SYNTHESIS_FORM.parse("A is B [F1]."), Unreadable)
    assert isinstance(FOCUSED_SYNTHESIS_FORM.parse("A is B [F1].\nCOMPLETE: maybe"), Unreadable)
    structured = '{"relevant": true, "answer": "A is B [F1].", "complete": "partly"}'
    assert FOCUSED_SYNTHESIS_FORM.read(structured, True) == "A is B [F1].\nCOMPLETE: partly"
    assert split_complete(FOCUSED_SYNTHESIS_FORM.read(structured, True)) == ("A is B [F1].", "partly")
    nothing = '{"relevant": false, "answer": "", "complete": "no"}'
    assert FOCUSED_SYNTHESIS_FORM.read(nothing, True) == f"{NO_RELEVANT_INFORMATION}\nCOMPLETE: no"
    assert isinstance(FOCUSED_SYNTHESIS_FORM.read('{"relevant": true, "answer": "A", "complete": "maybe"}', True),
                      Unreadable)


def test_term_spans_find_the_paragraph_with_every_question_term() -> None:
    text = "Weather today.\n\nThe launch code is ZULU-7.\n\nThe launch was delayed."
    assert term_spans("What is the launch code?", text, 100) == [(100 + 16, 100 + 42)]
    assert term_spans("What is the vault combination?", text) == []
    # One ordinary word is too little to mean anything; one code is enough.
    assert term_spans("What about the launch?", text) == []
    assert term_spans("What is ZULU-7?", text) == [(16, 42)]
