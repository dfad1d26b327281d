"""Fake readers that deviate from the reply format the way real models do (issue 27 §5).

Each is a :class:`tests.fakes.PerfectReader` (it sees exactly the NEEDLE facts in its prompt)
that writes some of its replies the way real models were seen to: prose instead of the
"nothing relevant" marker, the marker after a preamble, findings after a preamble, quotes
with a changed number or paraphrased, counts in words, replies cut by ``max_tokens``, tool
calls written as JSON text, and reasoning (``<think>...</think>``) left at the start of every
reply, as a reasoning model's server without a reasoning parser sends it. They answer in both
reply formats: with a ``response_format`` (``reply_format="structured"``) they write JSON that
follows the schema, deviating inside it as a real model does; otherwise the text format.

Use them like any fake chat model::

    model = ProseInsteadOfMarker()
    graph = create_rlm_graph(model, reply_format="text")

Every reader has ``obeys_corrections``: ``False`` (the default) repeats its deviation when
asked again (the worst case: the reply must end up reported as unreadable); ``True`` gives
the expected form once the corrective follow-up of :func:`rlm_graph.replies.ask` asks for it.
``DEVIATING_READERS`` lists the reading deviations, for parametrized tests.

For navigate's tests: :class:`ToolCallsAsText` writes the tool calls it would make as JSON in
the message ``content`` instead of ``tool_calls``; :func:`in_words` and
:class:`CountsInWords` write counts in words or sentences ("There are three.").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda

from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import NEEDLE, PerfectReader

__all__ = [
    "CORRECTION",
    "DECOY",
    "DEVIATING_READERS",
    "ChangedNumberQuotes",
    "CountsInWords",
    "CutByMaxTokens",
    "DeviatingReader",
    "FindingsAfterPreamble",
    "MarkerAfterPreamble",
    "ParaphrasedQuotes",
    "ProseInsteadOfMarker",
    "SaysIrrelevantBesideFacts",
    "ThinksAloud",
    "ThinksWithoutOpeningTag",
    "ToolCallsAsText",
    "in_words",
]

CORRECTION = "Your reply above could not be read"
"""How :func:`rlm_graph.replies.correction_message` starts: a prompt holding it is a corrective retry."""

_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]  # fmt: skip


def in_words(number: int) -> str:
    """A count as a person writes it ("three"; digits past twenty)."""
    return _NUMBER_WORDS[number] if 0 <= number < len(_NUMBER_WORDS) else str(number)


class DeviatingReader(PerfectReader):
    """A perfect reader whose replies a subclass rewrites; it answers text or JSON.

    Subclasses override :meth:`deviate_text` (a reading's text reply) and
    :meth:`deviate_json` (a reading's JSON reply); synthesis replies stay perfect, so a
    wrong answer can only come from how the pipeline read the readings.
    """

    obeys_corrections: bool = False
    max_tokens: int | None = None
    """Set by the graph from ``max_output_tokens`` (a real chat model's field of that name)."""

    def reserved(self) -> int:
        # As a server checks a request: the prompt plus the reply's max_tokens must fit the window.
        return self.max_tokens if self.max_tokens is not None else self.reserved_output

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": self.window, "structured_output": True}

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Bind the schema as ``response_format``, as ChatOpenAI's ``json_schema`` method does."""
        assert isinstance(schema, dict)
        name = schema.get("title", "reply")
        body = {key: value for key, value in schema.items() if key != "title"}
        bound = self.bind(response_format={"type": "json_schema", "json_schema": {"name": name, "schema": body}})

        def wrap(message: BaseMessage) -> Any:
            return {"raw": message, "parsed": None, "parsing_error": None} if include_raw else message

        return bound | RunnableLambda(wrap)

    # --- what a subclass changes -----------------------------------------------------------

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        """The text reply of a reading (``reply`` is the perfect one)."""
        return reply

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        """The JSON reply of a reading (``reply`` is the perfect one); a string is sent as it is."""
        return reply

    # --- plumbing ------------------------------------------------------------------------------

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._enter()
        try:
            return self._reply(messages, kw)
        finally:
            self._leave()

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return self._generate(messages, stop, run_manager, **kw)

    def _reply(self, messages: list[BaseMessage], kw: dict[str, Any]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        perfect = _counted(self._answer(messages).generations[0].message.text, prompt)
        corrected = CORRECTION in prompt
        reading = "<document_part start=" in prompt
        facts = sorted(set(NEEDLE.findall(_part(prompt)))) if reading else []
        schema = ((kw.get("response_format") or {}).get("json_schema") or {}).get("name")
        if schema is not None:
            built = self._json(schema, perfect, facts, prompt, corrected)
            text = built if isinstance(built, str) else json.dumps(built, ensure_ascii=False)
        elif reading and not (corrected and self.obeys_corrections):
            text = self.deviate_text(perfect, facts, _part(prompt))
        else:
            text = perfect
        return self._cut(text)

    def _json(self, schema: str, perfect: str, facts: list[str], prompt: str, corrected: bool) -> dict[str, Any] | str:
        if schema == "reading":
            reply = {"relevant": bool(facts), "findings": "; ".join(facts), "quotes": [f"{f}." for f in facts]}
            if "confidence" in prompt.lower():
                reply["confidence"] = "high"
            if corrected and self.obeys_corrections:
                return reply
            return self.deviate_json(reply, facts, _part(prompt))
        if schema == "focused_synthesis":
            body, _, verdict = perfect.rpartition("\nCOMPLETE: ")
            if not body:
                body, verdict = perfect, "partly"
            relevant = body.strip() != NO_RELEVANT_INFORMATION
            return {"relevant": relevant, "answer": body if relevant else "", "complete": verdict.strip()}
        return {}

    def _cut(self, text: str) -> ChatResult:
        """Stop at ``max_tokens`` as a server does, saying so in ``finish_reason``."""
        counter = TiktokenCounter(exact=True)
        finish = "stop"
        if self.max_tokens is not None and counter.count(text) > self.max_tokens:
            encoding = counter._encoding
            text = encoding.decode(encoding.encode_ordinary(text)[: self.max_tokens])
            finish = "length"
        message = AIMessage(text, response_metadata={"finish_reason": finish})
        return ChatResult(generations=[ChatGeneration(message=message)])


def _counted(reply: str, prompt: str) -> str:
    """A synthesis asked "how many" states the count of distinct codes, then each code's findings count."""
    question = re.search(r"<question>\s*(.*?)\s*</question>", prompt, re.DOTALL)
    if "<findings>" not in prompt or question is None or "how many" not in question.group(1).lower():
        return reply
    blocks = re.findall(r"<finding id=\"F\d+\">(.*?)</finding>", prompt, re.DOTALL)
    facts = sorted({fact for block in blocks for fact in NEEDLE.findall(block)})
    if not facts:
        return reply
    tally = "; ".join(f"{fact}: {sum(fact in block for block in blocks)}" for fact in facts)
    verdict = reply[reply.find("\nCOMPLETE:") :] if "\nCOMPLETE:" in reply else ""
    return f"There are {len(facts)} NEEDLE codes. {tally}{verdict}"


def _part(prompt: str) -> str:
    match = re.search(r"<document_part[^>]*>\n(.*?)\n</document_part>", prompt, re.DOTALL)
    return match.group(1) if match else ""


class ProseInsteadOfMarker(DeviatingReader):
    """Says in a sentence that the part holds nothing, instead of the marker."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        return reply if facts else "There is no information about that in this part."

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        if facts:
            return reply
        return {"relevant": True, "findings": "There is no information about that in this part.", "quotes": []}


class MarkerAfterPreamble(DeviatingReader):
    """Writes a preamble, then the marker."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        return reply if facts else f"I have read the part carefully.\n\n{NO_RELEVANT_INFORMATION}"

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        if facts:
            return reply
        findings = f"I have read the part carefully. {NO_RELEVANT_INFORMATION}"
        return {"relevant": True, "findings": findings, "quotes": []}


class FindingsAfterPreamble(DeviatingReader):
    """Writes a preamble before its findings (readable: the findings are there)."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        return f"Sure! Here is what I found in this part:\n\n{reply}" if facts else reply

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        if facts:
            return {**reply, "findings": "Sure! Here is what I found in this part: " + reply["findings"]}
        return reply


def _bump(fact: str) -> str:
    """The same fact with its number changed: NEEDLE-0004 becomes NEEDLE-0005."""
    return re.sub(r"\d{4}", lambda m: f"{(int(m.group(0)) + 1) % 10_000:04d}", fact, count=1)


class ChangedNumberQuotes(DeviatingReader):
    """Reports the facts right but quotes them with a changed number."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        if not facts:
            return reply
        return "; ".join(facts) + "".join(f'\nQUOTE: "{_bump(fact)}."' for fact in facts)

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        return {**reply, "quotes": [f"{_bump(fact)}." for fact in facts]}


class ParaphrasedQuotes(DeviatingReader):
    """Quotes in its own words instead of word for word."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        if not facts:
            return reply
        quotes = "".join(f'\nQUOTE: "The document states that {fact.replace(" is ", " equals ")}"' for fact in facts)
        return "; ".join(facts) + quotes

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        quotes = [f"The document states that {fact.replace(' is ', ' equals ')}" for fact in facts]
        return {**reply, "quotes": quotes}


class CountsInWords(DeviatingReader):
    """Writes how many facts it found in words, in a sentence, before them."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        if not facts:
            return reply
        return f"This part holds {in_words(len(facts))} of them: {reply}"

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        if not facts:
            return reply
        return {**reply, "findings": f"There are {in_words(len(facts))}: " + reply["findings"]}


class CutByMaxTokens(DeviatingReader):
    """Rambles before its findings, so a reply held to ``max_tokens`` loses them."""

    ramble_words: int = 3000

    def _ramble(self) -> str:
        return "Let me think about this part step by step. " + " ".join(["hmm"] * self.ramble_words)

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        return f"{self._ramble()}\n\n{reply}"

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        return {**reply, "findings": self._ramble() + " " + reply["findings"]}


class SaysIrrelevantBesideFacts(DeviatingReader):
    """Marks a part with facts as not relevant and reports the facts all the same (seen with small
    models in JSON mode: ``"relevant": false`` beside filled findings)."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        return f"{NO_RELEVANT_INFORMATION}\n{reply}" if facts else reply

    def deviate_json(self, reply: dict[str, Any], facts: list[str], part: str) -> dict[str, Any] | str:
        return {**reply, "relevant": False} if facts else reply


DECOY = "NEEDLE-9999 is DECOY"
"""A fact no test document holds: a thinking reader considers it, and drops it, in its reasoning."""


class ThinksAloud(DeviatingReader):
    """A reasoning model whose server leaves its thoughts in ``content``: every reply starts with
    ``<think>...</think>``, in which it weighs a fact the text does not hold, the marker and a citation.

    With ``opening_tag=False`` the reply starts inside the block and only ``</think>`` shows
    (the opening tag was in the chat template's prompt, as DeepSeek-R1's is).
    """

    opening_tag: bool = True

    def thoughts(self) -> str:
        body = (
            f"The user wants the codes. Could it be {DECOY}? No, that is not in the text. "
            f"If nothing fits I would say {NO_RELEVANT_INFORMATION}, citing [F1]."
        )
        return f"<think>\n{body}\n</think>\n\n" if self.opening_tag else f"{body}\n</think>\n\n"

    def _cut(self, text: str) -> ChatResult:
        return super()._cut(self.thoughts() + text)


class ThinksWithoutOpeningTag(ThinksAloud):
    """:class:`ThinksAloud` whose replies show only the closing ``</think>``."""

    opening_tag: bool = False


class ToolCallsAsText(DeviatingReader):
    """With tools bound, writes the tool calls it means as JSON in ``content`` (no ``tool_calls``).

    ``script(messages)`` gives the calls as ``[{"name": ..., "args": {...}}]``; by default the
    reader calls the first bound tool with no arguments. A local model did exactly this.
    """

    script: Any = None
    thinks: bool = False
    """Start each reply with a ``<think>`` block that drafts another call (a reasoning model's server
    without a reasoning parser)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, BaseMessage]:
        names = [getattr(tool, "name", None) or getattr(tool, "__name__", "tool") for tool in tools]
        return self.bind(tool_names=names, **kwargs)

    def _reply(self, messages: list[BaseMessage], kw: dict[str, Any]) -> ChatResult:
        names = kw.get("tool_names")
        if not names:
            return super()._reply(messages, kw)
        calls = self.script(messages) if self.script is not None else [{"name": names[0], "args": {}}]
        text = json.dumps(calls[0] if len(calls) == 1 else calls)
        if self.thinks:
            draft = json.dumps({"name": names[-1], "args": {}})
            text = f"<think>\nShould I call {draft}? No, better:\n</think>\n\n{text}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


DEVIATING_READERS: tuple[type[DeviatingReader], ...] = (
    ProseInsteadOfMarker,
    MarkerAfterPreamble,
    FindingsAfterPreamble,
    ChangedNumberQuotes,
    ParaphrasedQuotes,
    CountsInWords,
    CutByMaxTokens,
    SaysIrrelevantBesideFacts,
    ThinksAloud,
    ThinksWithoutOpeningTag,
)
"""The reading deviations, for tests parametrized over them."""
