"""Answers users can trust: imperfect readers, and what the answer text then says.

The perfect reader hides honesty bugs: it never replies empty, never fails, never
writes "this part does not mention X", never quotes "[2]" or "Confidence: 95%".
These scripted readers do, and every test asserts the answer text a user sees.
"""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from rlm_graph import (
    DocumentChatState,
    EmptyReplyError,
    RLMContext,
    create_document_node,
    create_rlm_graph,
    estimate_cost,
    is_transient_error,
)
from rlm_graph.prompts import (
    NO_ANSWER_MESSAGE,
    NO_RELEVANT_INFORMATION,
    cited_numbers,
    is_no_relevant,
    strip_citation_markers,
)
from tests.fakes import PerfectReader, ScriptedReader, filler, part_text, plant_needles

CORRECTION = "Your reply above could not be read"
FAST_RETRY = RetryPolicy(initial_interval=0.01, max_interval=0.02, max_attempts=3, retry_on=is_transient_error)
LAUNCH = "The launch code is ZULU-7."
LAUNCH_QUESTION = "What is the launch code?"


def launch_document() -> str:
    return filler(80, 1) + "\n\n" + LAUNCH + "\n\n" + filler(80, 2)


def launch_synthesis(prompt: str) -> str:
    return "The launch code is ZULU-7 [F1]." if "ZULU-7" in prompt else NO_RELEVANT_INFORMATION


def chat_reply(model: ScriptedReader, graph, document: str, question: str) -> str:
    builder = StateGraph(DocumentChatState)
    builder.add_node("doc", create_document_node(model, graph))
    builder.add_edge(START, "doc")
    builder.add_edge("doc", END)
    state = builder.compile().invoke({"messages": [HumanMessage(question)], "document": document})
    return state["messages"][-1].content


# 1. Empty replies -------------------------------------------------------------------------------


def test_empty_reply_is_not_nothing_relevant() -> None:
    assert not is_no_relevant("")
    assert not is_no_relevant("  \n ")
    assert is_no_relevant("NO_RELEVANT_INFORMATION")
    assert is_no_relevant("**NO_RELEVANT_INFORMATION**.")
    assert is_transient_error(EmptyReplyError("the model returned an empty reply"))


@pytest.mark.parametrize("use_async", [True, False])
async def test_empty_reply_is_retried_and_never_cached_as_nothing(use_async: bool) -> None:
    empties = {"left": 1}

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if "launch code" in part_text(prompt):
                if empties["left"]:
                    empties["left"] -= 1
                    return ""  # one empty 200: a content filter, a cut-off, a proxy
                return LAUNCH
            return NO_RELEVANT_INFORMATION
        return launch_synthesis(prompt) if kind == "synth" else "?"

    model = ScriptedReader(reply=reply)
    graph = create_rlm_graph(model, max_output_tokens=256, retry_policy=FAST_RETRY)  # default cache
    payload = {"document": launch_document(), "question": LAUNCH_QUESTION}
    for _ in range(2):
        out = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
        assert out["answer"] == "The launch code is ZULU-7."
        assert out["errors"] == []
    # The empty reply was retried once; the good reading was cached, the empty one never was.
    assert len([p for p in model.calls("read") if "launch code" in part_text(p)]) == 2


async def test_a_part_that_stays_empty_is_named_as_unread() -> None:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            return "" if "launch code" in part_text(prompt) else NO_RELEVANT_INFORMATION
        return launch_synthesis(prompt) if kind == "synth" else "?"

    model = ScriptedReader(reply=reply)
    graph = create_rlm_graph(model, max_output_tokens=256, retry_policy=FAST_RETRY)
    document = launch_document()
    out = await graph.ainvoke({"document": document, "question": LAUNCH_QUESTION})
    assert len([p for p in model.calls("read") if "launch code" in part_text(p)]) == 3  # every attempt
    (error,) = out["errors"]
    assert "EmptyReplyError" in error["error"]
    assert error["start"] <= document.index(LAUNCH) < error["end"]
    assert out["answer"] != NO_ANSWER_MESSAGE
    assert out["answer"].startswith("Nothing relevant to the question was found in the parts that were read.")
    assert f"characters {error['start']}-{error['end']}" in out["answer"]


# 2. Failed and skipped parts --------------------------------------------------------------------


def failing_launch_reader() -> ScriptedReader:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if "launch code" in part_text(prompt):
                msg = "Error code: 400 - content_filter: the response was filtered"
                raise ValueError(msg)
            return NO_RELEVANT_INFORMATION
        return launch_synthesis(prompt) if kind == "synth" else "?"

    return ScriptedReader(reply=reply)


def test_failed_part_is_not_reported_as_absent_and_the_chat_shows_it() -> None:
    model = failing_launch_reader()
    graph = create_rlm_graph(model, max_output_tokens=256, cache=False)
    document = launch_document()
    out = graph.invoke({"document": document, "question": LAUNCH_QUESTION})
    (error,) = out["errors"]
    assert out["answer"] != NO_ANSWER_MESSAGE
    assert "does not appear to contain" not in out["answer"]
    assert out["answer"].startswith("Nothing relevant to the question was found in the parts that were read.")
    assert "1 part of the document could not be read" in out["answer"]
    assert f"characters {error['start']}-{error['end']}" in out["answer"]
    # The chat node's AIMessage is what a chat UI shows: it carries the note too.
    shown = chat_reply(model, graph, document, LAUNCH_QUESTION)
    assert shown == out["answer"]


def test_answer_from_the_other_parts_carries_the_note() -> None:
    document = filler(80, 1) + "\n\nThe backup code is YANKEE-3.\n\n" + launch_document()

    def reply(prompt: str, kind: str) -> str:
        text = part_text(prompt)
        if kind == "read":
            if "launch code" in text:
                msg = "Error code: 400 - content_filter"
                raise ValueError(msg)
            return "The backup code is YANKEE-3." if "backup code" in text else NO_RELEVANT_INFORMATION
        return "The backup code is YANKEE-3 [F1]." if kind == "synth" and "YANKEE" in prompt else "?"

    out = create_rlm_graph(ScriptedReader(reply=reply), max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": "What are the codes?"}
    )
    answer, _, note = out["answer"].partition("\n\n")
    assert answer == "The backup code is YANKEE-3."
    assert note.startswith("1 part of the document could not be read (characters ")
    assert "so the answer does not cover it." in note


def test_notes_are_localizable_per_graph_and_per_run() -> None:
    model = failing_launch_reader()
    german = {
        "answer.not_found_in_read": "In den gelesenen Teilen steht nichts dazu.",
        "answer.failed": "{count} Teil(e) konnten nicht gelesen werden (Zeichen {spans}, {share} des Textes).",
    }
    graph = create_rlm_graph(model, max_output_tokens=256, cache=False, progress_messages=german)
    out = graph.invoke({"document": launch_document(), "question": LAUNCH_QUESTION})
    (error,) = out["errors"]
    share = re.search(r"\d+%", out["answer"]).group(0)
    assert out["answer"] == (
        f"In den gelesenen Teilen steht nichts dazu. 1 Teil(e) konnten nicht gelesen werden "
        f"(Zeichen {error['start']}-{error['end']}, {share} des Textes)."
    )
    # Per run, and an empty template drops its note.
    per_run = graph.invoke(
        {"document": launch_document(), "question": LAUNCH_QUESTION},
        context=RLMContext(progress_messages={"answer.failed": ""}),
    )
    assert per_run["answer"] == "In den gelesenen Teilen steht nichts dazu."


async def test_budget_skipped_parts_are_named_in_the_answer(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein, 30)
    graph = create_rlm_graph(PerfectReader())
    budget = estimate_cost(graph, text, "List every NEEDLE code.")["llm_calls"] // 2
    out = await graph.ainvoke(
        {"document": text, "question": "List every NEEDLE code."},
        context=RLMContext(max_llm_calls=budget, on_budget="partial"),
    )
    skipped = [e for e in out["errors"] if e.get("kind") == "skipped"]
    assert skipped
    assert out["usage"]["parts_skipped"] == len(skipped)
    assert "were not read, to stay within the budget (characters " in out["answer"]
    assert f"{min(e['start'] for e in skipped)}-" in out["answer"]


def test_a_nested_level_failure_reaches_the_final_answer() -> None:
    document = filler(300, 3) + "\n\n" + LAUNCH + "\n\n" + filler(300, 4)
    model = failing_launch_reader()
    out = create_rlm_graph(model, max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": LAUNCH_QUESTION}
    )
    assert out["usage"]["max_depth"] >= 1  # the failing part was read by a nested level
    (error,) = out["errors"]
    assert error["start"] <= document.index(LAUNCH) < error["end"]
    assert f"characters {error['start']}-{error['end']}" in out["answer"]
    assert out["answer"] != NO_ANSWER_MESSAGE


def test_everything_read_and_nothing_found_is_still_the_no_answer_message() -> None:
    model = ScriptedReader(reply=lambda prompt, kind: NO_RELEVANT_INFORMATION)
    out = create_rlm_graph(model, max_output_tokens=256, cache=False).invoke(
        {"document": launch_document(), "question": "Who wrote it?"}
    )
    assert out["answer"] == NO_ANSWER_MESSAGE
    assert out["errors"] == []


# 3. Focused reading -----------------------------------------------------------------------------

COMBINATION = "4-8-15-16-23-42"


def vault_document(decoys: bool) -> str:
    paragraphs = filler(400, 11).split("\n\n")
    if decoys:
        for index in range(0, 400, 9):  # decoys that match the question's words
            paragraphs[index] += " The vault in the old bank had a combination lock that nobody could remember."
    paragraphs[350] += f" The safe opens with {COMBINATION}."
    return "\n\n".join(paragraphs)


def test_readers_prose_does_not_stop_focused_reading() -> None:
    """r09: every reader answers in prose; the synthesis says COMPLETE: no until it sees the answer.

    A prose "does not mention" is read as neither a finding nor "nothing" (issue 27 rule 1): the
    reader is asked again in the expected form, and these readers then give the marker.
    """

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if CORRECTION in prompt:
                return NO_RELEVANT_INFORMATION
            found = re.search(r"opens with ([\d-]+)", part_text(prompt))
            return f"The safe opens with {found.group(1)}." if found else "This part does not mention the combination."
        if kind == "synth":
            if COMBINATION in prompt:
                return f"The combination is {COMBINATION} [F1].\nCOMPLETE: yes"
            return "The findings do not give the vault's combination.\nCOMPLETE: no"
        return "?"

    out = create_rlm_graph(ScriptedReader(reply=reply), max_output_tokens=256, mode="focused", cache=False).invoke(
        {"document": vault_document(decoys=True), "question": "What is the vault combination?"}
    )
    # The answer's part shares no word with the question, so it ranks last: read on until it is found.
    assert out["answer"] == f"The combination is {COMBINATION}."
    assert out["usage"]["parts_read"] > 0.2 * out["usage"]["parts_total"]


def test_focused_complete_answer_says_the_rest_was_not_needed() -> None:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if CORRECTION in prompt:
                return NO_RELEVANT_INFORMATION  # asked again in the expected form (issue 27 rule 1)
            found = re.search(r"opens with ([\d-]+)", part_text(prompt))
            return f"The safe opens with {found.group(1)}." if found else "This part does not mention the safe."
        if kind == "synth":
            verdict = "yes" if COMBINATION in prompt else "no"
            return f"The combination is {COMBINATION} [F1].\nCOMPLETE: {verdict}"
        return "?"

    graph = create_rlm_graph(ScriptedReader(reply=reply), max_output_tokens=256, mode="focused", cache=False)
    out = graph.invoke({"document": vault_document(decoys=False), "question": "What opens the safe?"})
    usage = out["usage"]
    assert usage["parts_read"] < usage["parts_total"]
    assert usage["stopped_early"] == 0
    assert usage["parts_unread"] == usage["parts_total"] - usage["parts_read"]
    assert out["answer"] == (
        f"The combination is {COMBINATION}.\n\nRead {usage['parts_read']} of {usage['parts_total']} parts, "
        f"the most relevant; the other {usage['parts_unread']} were not needed."
    )


@pytest.mark.parametrize("use_async", [True, False])
async def test_a_failed_first_round_reads_on(use_async: bool) -> None:
    """r19: the two top-ranked parts fail; the answer sits in a part ranked lower."""
    paragraphs = filler(400, 11).split("\n\n")
    for index in (20, 45):
        paragraphs[index] += " The vault combination vault combination is classified. Vault combination."
    paragraphs[350] += f" The safe opens with {COMBINATION}."
    document = "\n\n".join(paragraphs)

    def reply(prompt: str, kind: str) -> str:
        text = part_text(prompt)
        if kind == "read":
            if "classified" in text:
                msg = "Error code: 400 - content_filter"
                raise ValueError(msg)
            found = re.search(r"opens with ([\d-]+)", text)
            return f"The safe opens with {found.group(1)}." if found else NO_RELEVANT_INFORMATION
        if kind == "synth":
            return f"The combination is {COMBINATION} [F1].\nCOMPLETE: yes" if COMBINATION in prompt else "?"
        return "?"

    graph = create_rlm_graph(
        ScriptedReader(reply=reply), max_output_tokens=256, mode="focused", max_concurrency=2, cache=False
    )
    payload = {"document": document, "question": "What is the vault combination?"}
    out = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    assert out["answer"].startswith(f"The combination is {COMBINATION}.")
    assert len(out["errors"]) == 2
    assert "2 parts of the document could not be read" in out["answer"]


def test_a_reply_without_the_complete_line_reads_on_to_the_cap_and_says_so() -> None:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            found = re.search(r"opens with ([\d-]+)", part_text(prompt))
            return f"The safe opens with {found.group(1)}." if found else NO_RELEVANT_INFORMATION
        if kind == "synth":
            return f"The combination is {COMBINATION} [F1]."  # no COMPLETE line at all
        return "?"

    model = ScriptedReader(reply=reply)
    graph = create_rlm_graph(model, max_output_tokens=256, mode="focused", max_concurrency=1, cache=False)
    out = graph.invoke({"document": vault_document(decoys=False), "question": "What opens the safe?"})
    usage = out["usage"]
    cap = max(1, int(0.2 * usage["parts_total"]))
    assert usage["parts_read"] == cap
    assert len(model.calls("read")) == cap
    assert usage["parts_unread"] == usage["parts_total"] - cap
    assert usage["stopped_early"] == 1
    assert out["answer"] == (
        f"The combination is {COMBINATION}.\n\nRead {cap} of {usage['parts_total']} parts, the most relevant; "
        f"the other {usage['parts_unread']} were not read, so the answer may be incomplete."
    )
    # Each synthesis was asked once more for its line (issue 27 rule 1), then reported: counted and
    # in errors, with no note of text not covered (the answer itself was read; it reads as "partly").
    unparsed = [error for error in out["errors"] if error.get("kind") == "unparsed"]
    assert usage["unparsed_replies"] == len(unparsed) == cap
    assert all("COMPLETE" in error["error"] for error in unparsed)
    assert len(model.calls("synth")) == 2 * cap


def test_focused_nothing_found_with_a_failure_names_the_failure() -> None:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read" and "launch code" in part_text(prompt):
            msg = "Error code: 400 - content_filter"
            raise ValueError(msg)
        return NO_RELEVANT_INFORMATION

    model = ScriptedReader(reply=reply)
    out = create_rlm_graph(model, max_output_tokens=256, mode="focused", cache=False).invoke(
        {"document": launch_document(), "question": "What is the launch code?"}
    )
    assert out["usage"]["parts_read"] == out["usage"]["parts_total"]  # read everything before saying so
    assert out["answer"].startswith("Nothing relevant to the question was found in the parts that were read.")
    assert "1 part of the document could not be read" in out["answer"]


# 5. Citation markers ----------------------------------------------------------------------------


def test_citation_markers_are_ours_only() -> None:
    assert strip_citation_markers("Equation [2] [F1][F3], see [F1, F2].", range(1, 4)) == "Equation [2], see."
    assert strip_citation_markers("A [F9].", range(1, 4)) == "A [F9]."  # not a finding offered: kept
    assert cited_numbers("Equation [2] [F1][F3], see [F1, F2].") == {1, 2, 3}


def test_bracketed_numbers_from_the_document_stay_in_the_answer() -> None:
    """r04: "[2]" is the document's equation number, not a citation."""
    document = (
        filler(40, 1)
        + "\n\nThe energy formula is given in equation [2] of the appendix.\n\n"
        + filler(40, 2)
        + "\n\nEquation [2] was derived by Dr. Smith in 1921.\n\n"
        + filler(40, 3)
    )

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            hits = re.findall(r"[^.\n]*[Ee]quation \[2\][^.\n]*\.", part_text(prompt))
            return " ".join(hits) if hits else NO_RELEVANT_INFORMATION
        if kind == "synth":
            return "The energy formula is equation [2] [F1], derived by Dr. Smith in 1921 [F2]."
        return "?"

    model = ScriptedReader(reply=reply)
    out = create_rlm_graph(model, max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": "Which equation gives the energy formula, and who derived it?"}
    )
    assert out["answer"] == "The energy formula is equation [2], derived by Dr. Smith in 1921."
    assert '<finding id="F1">' in model.calls("synth")[-1]
    assert [document[c["start"] : c["end"]].count("[2]") for c in out["citations"]] == [1, 1]


# 6. Confidence lines ----------------------------------------------------------------------------

SURVEY = "Survey methodology. Sample size: 1,204 adults.\nConfidence level: 95%"


def survey_reader(suffix: str) -> ScriptedReader:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if "Survey methodology" in part_text(prompt):
                return "The part states the survey's parameters:\nSample size: 1,204 adults.\nConfidence level: 95%" + (
                    suffix
                )
            return NO_RELEVANT_INFORMATION
        if kind == "synth":
            findings = prompt.split("<findings>")[1].split("</findings>")[0]
            return "Per the findings: " + " ".join(re.sub(r"<[^>]+>", " ", findings).split()) + " [F1]"
        return "?"

    return ScriptedReader(reply=reply)


def test_a_quoted_confidence_line_is_content_without_relay() -> None:
    document = filler(60, 1) + "\n\n" + SURVEY + "\n\n" + filler(60, 2)
    out = create_rlm_graph(survey_reader(""), max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": "What sample size and confidence level did the survey use?"}
    )
    assert "Confidence level: 95%" in out["answer"]
    assert "1,204 adults" in out["answer"]


@pytest.mark.parametrize("suffix", ["", "\nCONFIDENCE: high"])
def test_under_relay_only_our_last_line_is_the_marker(suffix: str) -> None:
    document = filler(60, 1) + "\n\n" + SURVEY + "\n\n" + filler(60, 2)
    small = survey_reader(suffix)
    large = ScriptedReader(reply=lambda prompt, kind: "LARGE")
    out = create_rlm_graph(small, large_model=survey_reader(""), max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": "What sample size and confidence level did the survey use?"}
    )
    assert "Confidence level: 95%" in out["answer"]
    assert "CONFIDENCE: high" not in out["answer"]
    assert out["usage"].get("escalated_parts", 0) == 0
    assert large.log == []


# 7. Truncated findings --------------------------------------------------------------------------


def test_a_finding_cut_to_fit_is_a_caveat_in_the_answer() -> None:
    tally = " ".join(f"item{n} counted {n} times;" for n in range(700))  # far more than one window

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            return "The tally: " + tally if "tally" in part_text(prompt) else NO_RELEVANT_INFORMATION
        if kind == "synth":
            return "The tally starts with item0 [F1]."
        return "?"

    document = filler(80, 1) + "\n\nThe tally follows.\n\n" + filler(80, 2)
    out = create_rlm_graph(ScriptedReader(reply=reply), max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": "What is the tally?"}
    )
    (error,) = out["errors"]
    assert error["kind"] == "truncated"
    assert out["usage"]["findings_truncated"] == 1
    assert out["answer"] == (
        "The tally starts with item0.\n\n1 finding was too long to combine and was shortened "
        f"(from characters {error['start']}-{error['end']}), so some details may be missing."
    )


def test_a_nested_truncation_reaches_the_final_answer() -> None:
    tally = " ".join(f"item{n} counted {n} times;" for n in range(700))
    paragraphs = filler(600, 5).split("\n\n")
    for index in (300, 301):
        paragraphs[index] += " TALLYMARK."
    document = "\n\n".join(paragraphs)

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            return "The tally: " + tally if "TALLYMARK" in part_text(prompt) else NO_RELEVANT_INFORMATION
        if kind == "synth":
            return "The tally starts with item0 [F1]." if "item0" in prompt else NO_RELEVANT_INFORMATION
        return "?"

    out = create_rlm_graph(ScriptedReader(reply=reply), max_output_tokens=256, cache=False).invoke(
        {"document": document, "question": "What is the tally?"}
    )
    assert out["usage"]["max_depth"] >= 1
    truncated = [e for e in out["errors"] if e.get("kind") == "truncated"]
    assert truncated
    assert out["answer"].startswith("The tally starts with item0.\n\n")
    assert "1 finding was too long to combine and was shortened" in out["answer"]


# The note's text ------------------------------------------------------------------------------


def test_coverage_note_merges_spans_and_lists_at_most_five() -> None:
    from rlm_graph.coverage import Coverage, settle_answer
    from rlm_graph.progress import DEFAULT_PROGRESS_MESSAGES

    errors = [
        {"start": 0, "end": 100, "error": "x"},
        {"start": 20, "end": 50, "error": "nested, inside the one above"},
        *({"start": 1000 * n, "end": 1000 * n + 10, "error": "y", "kind": "failed"} for n in range(1, 7)),
        {"start": 9000, "end": 9500, "error": "z", "kind": "truncated"},
    ]
    coverage = Coverage(chars=100_000, errors=errors)
    assert coverage.notes({}) == [
        "7 parts of the document could not be read (characters 0-100, 1000-1010, 2000-2010, 3000-3010, "
        "4000-4010 and 2 more, <1% of the text), so the answer does not cover them.",
        "1 finding was too long to combine and was shortened (from characters 9000-9500), "
        "so some details may be missing.",
    ]
    assert coverage.usage() == {"parts_skipped": 0, "findings_truncated": 1}
    text, answered = settle_answer("An answer.", coverage, DEFAULT_PROGRESS_MESSAGES, NO_ANSWER_MESSAGE)
    assert answered
    assert text.startswith("An answer.\n\n7 parts of the document could not be read")
    # A document read in full with nothing relevant: absence is established.
    full = Coverage(chars=100, errors=[{"start": 0, "end": 50, "error": "t", "kind": "truncated"}])
    assert settle_answer(NO_RELEVANT_INFORMATION, full, {}, NO_ANSWER_MESSAGE) == (NO_ANSWER_MESSAGE, False)


def test_coverage_note_for_focused_reading() -> None:
    from rlm_graph.coverage import Coverage

    stopped = Coverage(chars=1000, parts_read=4, parts_total=20)
    assert stopped.notes({}) == [
        "Read 4 of 20 parts, the most relevant; the other 16 were not read, so the answer may be incomplete."
    ]
    assert stopped.usage() == {"parts_skipped": 0, "findings_truncated": 0, "parts_unread": 16, "stopped_early": 1}
    complete = Coverage(chars=1000, parts_read=2, parts_total=20, complete=True)
    assert complete.notes({"answer.focused_complete": ""}) == []
    assert complete.usage()["stopped_early"] == 0
