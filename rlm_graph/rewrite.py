"""The follow-up rewrite's reply, read strictly (issue 27, rule 1), and its call through the chat model.

The chat node asks its model to rewrite a follow-up as one standalone question. Models
wrap what they were asked for: a preamble ("Here is the standalone question:"), a label
("**Rewritten question:**"), quotes, a code fence, a Markdown heading or quote mark. Those
are removed by rule; what is left must be one line, or the reply is unreadable and
:func:`rlm_graph.replies.ask` asks once more with a correction. A reply unreadable twice is
*unparsed*: the chat node answers the user's own words and says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langgraph.constants import TAG_NOSTREAM

from rlm_graph.calls import CallResult, CallSteps, ModelCall, RunnableCall, StructuredRepliesRefused, was_cut
from rlm_graph.errors import is_context_overflow, is_transient_error, status_code
from rlm_graph.reasoning import visible_text
from rlm_graph.replies import Reply, ReplyForm, Unreadable, ask
from rlm_graph.reply_schemas import REWRITE_SCHEMA
from rlm_graph.settings import with_max_tokens
from rlm_graph.state import Usage
from rlm_graph.tokens import TokenCounter

__all__ = ["REWRITE_FORM", "REWRITE_RUN_NAME", "RewriteCalls", "ask_rewrite", "read_standalone"]

REWRITE_RUN_NAME = "rewrite follow-up"
"""Run name of the follow-up rewrite call (tagged ``nostream``: it is not the assistant's answer);
its corrective retry is ``"rewrite follow-up (corrected)"``."""

# A label before the question on its line: "Standalone question: ...", "**Rewritten question:** ...".
_LABEL = re.compile(
    r"^[*_]*(?:here is |here's )?(?:the |a |your )?(?:standalone |rewritten |reformulated |rephrased )?"
    r"(?:question|rewrite|rewritten|standalone)[*_]*\s*:[*_]*\s*",
    re.IGNORECASE,
)
_PREAMBLE_CHARS = 100
_QUESTION_TOKENS = 64  # reply room a corrective retry must leave: a standalone question is short
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_LINE_MARK = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)")
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("„", "“"), ("`", "`"))
_EMPHASIS = ("***", "**", "__", "*", "_")


def _unwrap(line: str) -> str:
    """Remove Markdown marks, emphasis and quotes around one line, repeatedly (``> **"..."**``)."""
    while True:
        before = line
        line = _LINE_MARK.sub("", line.strip()).strip()
        line = _LABEL.sub("", line).strip()
        # Only marks around the whole line: '"Pride" or "Prejudice"' keeps its quotes.
        for mark in _EMPHASIS:
            inner = line[len(mark) : -len(mark)]
            if len(line) > 2 * len(mark) and line.startswith(mark) and line.endswith(mark) and mark not in inner:
                line = inner.strip()
                break
        for opening, closing in _QUOTES:
            inner = line[1:-1]
            if len(line) > 2 and line.startswith(opening) and line.endswith(closing) and closing not in inner:
                line = inner.strip()
                break
        if line == before:
            return line


def _is_preamble(line: str) -> bool:
    """Whether a line only introduces what follows ("Here is the standalone question:", "**Rewritten:**")."""
    bare = line.strip().strip("*_#> ").strip()
    return bare.endswith(":") and "?" not in bare and len(bare) <= _PREAMBLE_CHARS


def read_standalone(reply: str) -> str | Unreadable:
    """Read a follow-up rewrite: the one question it holds, or why it holds no single question.

    Args:
        reply: The model's reply to the rewrite prompt.

    Returns:
        The standalone question, or :class:`rlm_graph.replies.Unreadable`.
    """
    text = reply.strip()
    if fenced := _FENCE.match(text):
        text = fenced.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Lines that only introduce the question ("Here is the standalone question:") are dropped.
    while len(lines) > 1 and _is_preamble(lines[0]):
        lines = lines[1:]
    if not lines:
        return Unreadable("the reply is empty")
    if len(lines) > 1:
        return Unreadable(f"the reply has {len(lines)} lines, not one question")
    question = _unwrap(lines[0])
    if not question or question.endswith(":"):
        return Unreadable("the reply introduces a question but does not give it")
    return question


def _read_json(data: dict[str, Any]) -> str | Unreadable:
    # The schema guarantees the key, not what the model put in it: read it under the same rules.
    return read_standalone(data["question"])


REWRITE_FORM: ReplyForm[str] = ReplyForm(
    "rewrite",
    read_standalone,
    "the standalone question alone, on one line, with no introduction, quotes or formatting",
    schema=REWRITE_SCHEMA,
    parse_json=_read_json,
)
"""How the rewrite's reply is read: ``{"question": str}`` where the model takes a JSON schema, else text."""


@dataclass
class RewriteCalls:
    """What :func:`rlm_graph.replies.ask` needs of a level, for the chat model's rewrite call.

    The rewrite is made outside any analysis run. Its corrective retry takes the room of
    the follow-up it adds from the reply's (as :func:`rlm_graph.replies.ask` plans it), so
    it is sent only while a question still fits beside it. A model that refuses a JSON
    schema under ``reply_format="auto"`` is asked for text from then on
    (``structured_refused`` is kept for the node's life: a server that refused a schema
    will not take one later).
    """

    model: BaseChatModel
    reply_format: str = "auto"
    """``"auto"``, ``"structured"`` or ``"text"``, as the analysis graph's ``reply_format``."""
    window: int | None = None
    """Most prompt tokens of the rewrite call (``None``: the model's window is unknown)."""
    max_output_tokens: int | None = None
    """The reply room planned beside ``window``."""
    structured_refused: bool = False
    context: None = None
    counter: TokenCounter = field(kw_only=True)
    """Counts the schema a structured rewrite adds to the prompt (the analysis graph's counter)."""

    @property
    def settings(self) -> RewriteCalls:
        return self

    @property
    def resources(self) -> RewriteCalls:
        return self

    def allow_unplanned(self, input_tokens: int) -> bool:
        """Whether a corrective retry of ``input_tokens`` prompt tokens leaves room for a question."""
        if self.window is None or self.max_output_tokens is None:
            return True
        return input_tokens + _QUESTION_TOKENS <= self.window + self.max_output_tokens

    def refused(self, call: ModelCall, error: Exception) -> Exception:
        """``error``, or :class:`StructuredRepliesRefused` if it refuses the call's schema under ``auto``."""
        if call.schema is None or self.reply_format != "auto" or is_context_overflow(error):
            return error
        if is_transient_error(error):
            return error
        if not isinstance(error, NotImplementedError) and status_code(error) not in (400, 422):
            return error
        self.structured_refused = True
        msg = f"the chat model refused structured replies, so its rewrites are read as text: {error}"
        return StructuredRepliesRefused(msg)

    def runnable(self, call: ModelCall) -> Runnable:
        """The chat model as this call is sent: tagged ``nostream`` (it is not the answer), maybe with a schema."""
        # A corrective retry's reply is capped: its follow-up took part of the reply's room.
        chat = self.model if call.max_tokens is None else with_max_tokens(self.model, call.max_tokens)
        model: Runnable = chat
        if call.schema is not None:
            schema = {"title": call.schema["name"], **dict(call.schema["schema"])}
            model = chat.with_structured_output(schema, method="json_schema", include_raw=True)
        return model.with_config(tags=[TAG_NOSTREAM], run_name=call.name, metadata={"rlm_kind": "rewrite"})


def _usage(reply: Any) -> Usage:
    metadata = getattr(reply, "usage_metadata", None) or {}
    return {
        "llm_calls": 1,
        "input_tokens": metadata.get("input_tokens", 0),
        "output_tokens": metadata.get("output_tokens", 0),
        "total_tokens": metadata.get("total_tokens", 0),
    }


def _through(calls: RewriteCalls, steps: Generator[list[ModelCall], Any, Any]) -> CallSteps:
    """Run ``steps`` (which yield batches of :class:`ModelCall`) with each call sent to the chat model.

    The chat node's driver has no analysis level to book model calls on, so each call
    goes out as a :class:`RunnableCall` of the chat model and its reply comes back as a
    :class:`CallResult`; a refused schema is thrown back in, where ``ask`` asks again as text.
    """
    try:
        request = next(steps)
        while True:
            results: list[CallResult] = []
            refusal: Exception | None = None
            for call in request:
                messages = call.messages() if callable(call.messages) else call.messages
                try:
                    reply = yield RunnableCall(calls.runnable(call), messages)
                except Exception as error:
                    if (refusal := calls.refused(call, error)) is error:
                        raise
                    break
                # with_structured_output(include_raw=True) gives {"raw", "parsed", ...}: the raw reply is read.
                message = reply["raw"] if isinstance(reply, dict) else reply
                results.append(CallResult(visible_text(message), _usage(message), cut=was_cut(message)))
            request = steps.throw(refusal) if refusal is not None else steps.send(results)
    except StopIteration as finished:
        return finished.value


def ask_rewrite(
    calls: RewriteCalls,
    messages: list[BaseMessage],
    prompt_tokens: int,
    *,
    count_tokens: Callable[[list], int],
) -> CallSteps:
    """Ask for the standalone question, read strictly, corrected once (as :data:`CallSteps`).

    Args:
        calls: The chat model and how its rewrite calls are made.
        messages: The rewrite prompt.
        prompt_tokens: Its size in tokens.
        count_tokens: Counts the tokens of messages, as the window was planned.

    Returns:
        The :class:`rlm_graph.replies.Reply`: the question, or unparsed.
    """
    call = ModelCall(messages, prompt_tokens, name=REWRITE_RUN_NAME, kind="rewrite")
    reply: Reply[str] = yield from _through(calls, ask(calls, call, REWRITE_FORM, count_tokens=count_tokens))
    return reply
