"""``mode="auto"``: which questions are read in full and which may be focused.

A focused read stops after a share of the parts, so a question whose answer is spread
over the document (a list, a count, a superlative, a comparison, a plural "which ...")
loses most of its answer silently when it is read focused. These lists are the
contract of :func:`rlm_graph.auto_mode.decide_mode`: when in doubt, read in full.
"""

from __future__ import annotations

import re

import pytest

from rlm_graph import create_rlm_graph
from rlm_graph.auto_mode import decide_mode
from tests.fakes import PerfectReader
from tests.helpers import collect

MUST_READ_IN_FULL = [
    # The questions of the issue.
    "Which chapters mention the regiment?",
    "Who are the Bennet sisters?",
    "Which user has the most records labelled X?",
    "What places does Elizabeth visit?",
    # Superlatives.
    "Who is the oldest character in the book?",
    "What is the largest sum mentioned in the accounts?",
    "Which letter was written first?",
    "When did Victor last see Clerval?",
    "Who has the best claim to the estate?",
    "Which month had the highest sales?",
    "Which employee earns the least?",
    "What is the most common complaint?",
    "What was the greatest loss of the company?",
    "Who was the youngest guest at the ball?",
    "When was the earliest entry in the log?",
    # Comparatives.
    "Which customer spent more than 500 dollars?",
    "Did the ship leave Lisbon before the storm?",
    "Is Darcy richer than Bingley?",
    "Are there fewer men than women at the ball?",
    "Who is older, Jane or Elizabeth?",
    "Did Jane arrive after Bingley left Netherfield?",
    # Plural "which/what ..." and "who are".
    "Which characters die?",
    "What cities does Victor travel through?",
    "Who were Elizabeth's suitors?",
    "Which records are labelled urgent?",
    "What other books does the author mention?",
    "In which letters does Walton describe the ice?",
    "What kinds of animals live on the island?",
    "Which of the sisters marries first?",
    "What are the terms of the lease?",
    "Where were the stolen letters found?",
    # Lists, totals, counts, every, all.
    "How many letters does Walton write?",
    "How much was spent in total?",
    "How much money changed hands altogether?",
    "List the ships in the harbour.",
    "Name all the servants.",
    "Does every chapter begin with a date?",
    "What are the main themes?",
    "Summarize the plot.",
    "In what order do the guests arrive?",
    "What do the letters have in common?",
    "Who else attended the ball?",
    "What is the number of users in the export?",
    "Extract the dates from the report.",
    "Where is the regiment mentioned?",
    "How does Elizabeth's opinion of Darcy change?",
    "What is the novel about?",
    "Which sister has no suitor?",
    "What is the average order value?",
    "Which chapters?",
    "Tell me the names.",
]

MAY_BE_FOCUSED = [
    # The examples of the issue.
    "What is X's phone number?",
    "When did the ship leave Lisbon?",
    "Who wrote the letter to Elizabeth?",
    # Questions the existing tests ask in auto mode.
    "What is the captain's phone number?",
    "Who is Walton's sister?",
    "Where was Justine tried?",
    "What is NEEDLE-0042?",
    "What word does NEEDLE-1234 stand for?",
    # More single facts.
    "What is Mr. Collins's address?",
    "Where did Victor study?",
    "What is the name of Darcy's estate?",
    "Who killed William?",
    "When was the contract signed?",
    "How old is Elizabeth?",
    "How much did the house cost?",
    "What time does the train depart?",
    "Which ship carried Walton north?",
    "What colour was the carriage?",
    "Who married Charlotte Lucas?",
    "Where does Mr. Bingley live?",
    "What is the account number of Acme Corp?",
    "What is user 4411's email address?",
    "Who signed the treaty?",
    "What is the password for the staging server?",
    "In which city was the conference held?",
    "What year was the company founded?",
    "Who is the author of the report?",
    "What did Lydia's letter say?",
    "Where was the body found?",
    "Who sent the telegram?",
    "Which hotel did Jane stay at?",
    "What was the verdict in Justine's trial?",
    "When is the meeting with the board?",
    "What is the title of chapter 12?",
    "Who is Victor's father?",
    "What is the ship's name?",
    "How did William die?",
    "Why did Darcy pay Wickham?",
]

OTHER_LANGUAGES = [
    "Kuka kirjoitti kirjeen Elisabetille?",  # Finnish
    "Quel est le numéro de téléphone de Pierre ?",  # French
    "Was ist die Telefonnummer von Hans?",  # German
    "Wat is het telefoonnummer van Jan?",  # Dutch
    "¿Quién escribió la carta a Isabel?",  # Spanish
    "Chi ha scritto la lettera a Elisabetta?",  # Italian
    "엘리자베스에게 편지를 쓴 사람은 누구입니까?",  # Korean
    "誰がエリザベスに手紙を書きましたか？",  # Japanese
]


def test_lists_are_large_enough_to_mean_something() -> None:
    assert len(MUST_READ_IN_FULL) >= 30
    assert len(MAY_BE_FOCUSED) >= 30
    assert not set(MUST_READ_IN_FULL) & set(MAY_BE_FOCUSED)


@pytest.mark.parametrize("question", MUST_READ_IN_FULL)
def test_aggregation_questions_are_read_in_full(question: str) -> None:
    mode, reason = decide_mode(question)
    assert mode == "full", f"{question!r} would be read focused ({reason})"
    assert reason


@pytest.mark.parametrize("question", MAY_BE_FOCUSED)
def test_targeted_questions_may_be_focused(question: str) -> None:
    mode, reason = decide_mode(question)
    assert mode == "focused", f"{question!r} would be read in full ({reason})"


@pytest.mark.parametrize("question", OTHER_LANGUAGES)
def test_other_languages_are_read_in_full(question: str) -> None:
    assert decide_mode(question) == ("full", "the question is not in English, which the heuristic cannot judge")


def test_reason_names_what_decided() -> None:
    assert decide_mode("List every NEEDLE code.") == ("full", "the question asks about the whole document ('list')")
    assert decide_mode("Who is the oldest character in the book?")[1] == (
        "the question asks for a superlative ('oldest')"
    )
    assert decide_mode("Which chapters stand out?")[1] == "the question asks about several things ('chapters')"


async def test_plural_question_in_auto_mode_reads_every_part(frankenstein: str) -> None:
    """The r10 shape at graph level: the answer holds every chapter, the reason is reported."""
    paragraphs = frankenstein.split("\n\n")
    chapters = list(range(10, len(paragraphs), max(1, len(paragraphs) // 15)))[:15]
    for number in chapters:
        paragraphs[number] = f"NEEDLE-{number:04d} is REGIMENT. " + paragraphs[number]
    text = "\n\n".join(paragraphs)
    model = PerfectReader()
    out, events = await collect(
        create_rlm_graph(model, mode="auto"), {"document": text, "question": "Which paragraphs mention the regiment?"}
    )
    modes = [e for e in events if e["type"] == "progress" and "Reading mode" in e["message"]]
    assert modes, events
    assert "Reading mode: full" in modes[0]["message"], modes
    assert "(the question asks about" in modes[0]["message"], modes  # the reason is reported
    assert out["usage"]["parts_read"] == out["usage"]["parts_total"] > 1
    found = set(re.findall(r"NEEDLE-(\d{4}) is REGIMENT", out["answer"]))
    assert found == {f"{n:04d}" for n in chapters}
