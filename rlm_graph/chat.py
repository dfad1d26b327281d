"""Put the analysis graph into a chat graph whose state is ``MessagesState``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AnyMessage,
    convert_to_messages,
)
from langchain_core.runnables import Runnable
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import MessagesState, add_messages
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.chat_messages import UNSUPPORTED_ATTACHMENT_MESSAGE
from rlm_graph.chat_turn import DocumentTurn
from rlm_graph.graph import create_rlm_graph
from rlm_graph.nodes.entry import entry_runnable
from rlm_graph.state import Usage

__all__ = [
    "ATTACHMENT_PLACEHOLDER",
    "CONDENSE_PROMPT",
    "MISSING_DOCUMENT_MESSAGE",
    "QUESTION_TOO_LONG_MESSAGE",
    "REWRITE_UNPARSED_NOTE",
    "DocumentChatState",
    "create_document_node",
]

CONDENSE_PROMPT = """<conversation>
{history}
</conversation>

<follow_up>
{question}
</follow_up>

Task: rewrite the follow-up as one standalone question that can be understood without \
the conversation: replace pronouns and references such as "she", "it" or "that chapter" \
with what they refer to. Do not answer it. Reply with the question only."""

MISSING_DOCUMENT_MESSAGE = (
    "I don't have a document to read yet. Paste it or attach it (PDF, Word, HTML, Markdown or text), "
    "then ask your question."
)
QUESTION_TOO_LONG_MESSAGE = (
    "Your question is too long for me to work on together with the document (about {tokens} tokens). "
    "Please shorten it, for example by quoting less of the text, and ask again."
)
"""Reply when the question (or its standalone rewrite) leaves no room in the model's window.

May use ``{tokens}``: the question's length in tokens."""
REWRITE_UNPARSED_NOTE = (
    "I could not turn your follow-up into a standalone question, so I answered it as you wrote it; "
    "if the answer misses what you meant, ask again naming what you refer to."
)
"""Ends the answer when the follow-up rewrite could not be read, even after one corrective retry
(the analysis then answered the user's own words); an empty string drops it."""
ATTACHMENT_PLACEHOLDER = "[attached document: {chars:,} characters, sha256 {sha256_prefix}]"
"""What an attachment's text is replaced with in the stored conversation.

May use ``{chars}``, ``{sha256}`` and ``{sha256_prefix}`` (its first 12 hex digits)."""


def _latest(current: str, writes: Sequence[str]) -> str:
    """Reducer of the document channel: the last write wins (any batching gives the same result)."""
    return writes[-1] if writes else current


def _add_message_batches(current: list[AnyMessage], writes: Sequence[Any]) -> list[AnyMessage]:
    """``add_messages`` over a batch of writes, one write after the other (so any batching agrees).

    A ``DeltaChannel`` replays saved writes on every read, so a message written
    without an id (a string or ``(role, text)`` tuple) gets one derived from its
    position and content: the same on every read, as ``RemoveMessage`` needs.
    """
    for write in writes:
        incoming = convert_to_messages(write if isinstance(write, list) else [write])
        for offset, message in enumerate(incoming):
            if not message.id:
                seed = f"{len(current) + offset}\x00{message.type}\x00{message.content!r}"
                message.id = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
        current = add_messages(current, incoming)
    return current


class DocumentChatState(MessagesState):
    """``MessagesState`` plus the keys the document node reads and writes."""

    messages: Annotated[list[AnyMessage], DeltaChannel(_add_message_batches, list)]
    """The conversation, as with ``add_messages``. A ``DeltaChannel`` (LangGraph beta):
    checkpoints store each turn's new messages, not the whole list again."""

    document: NotRequired[Annotated[str, DeltaChannel(_latest, str)]]
    """The document under discussion; kept across turns of a thread.

    A ``DeltaChannel`` (LangGraph beta): checkpoints store the write that set it,
    not a copy per checkpoint, so follow-up turns add no copy of the document.
    Empty until a document arrives."""
    rlm_usage: NotRequired[Usage]
    """Usage of the analysis runs of this thread, summed."""


def create_document_node(
    model: BaseChatModel,
    graph: CompiledStateGraph | None = None,
    *,
    document_key: str = "document",
    usage_key: str = "rlm_usage",
    history_tokens: int = 2000,
    condense_prompt: str = CONDENSE_PROMPT,
    missing_document_message: str = MISSING_DOCUMENT_MESSAGE,
    question_too_long_message: str = QUESTION_TOO_LONG_MESSAGE,
    attachment_placeholder: str = ATTACHMENT_PLACEHOLDER,
    durable_analysis: bool = False,
    name: str = "analyse_document",
    unsupported_attachment_message: str = UNSUPPORTED_ATTACHMENT_MESSAGE,
    document_messages: Mapping[str, str] | None = None,
    rewrite_unparsed_note: str = REWRITE_UNPARSED_NOTE,
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """Build a chat-graph node that answers the latest human message about a document.

    The document comes from an attachment of the latest human message (it is
    then saved under ``document_key`` for later turns) or from ``document_key``
    in state. PDF, DOCX and HTML attachments are extracted to text (PDF and DOCX
    need the ``documents`` extra), Markdown and plain text are read as they are;
    ``document_key`` then holds the extracted text, which citation offsets refer
    to. A file whose text cannot be extracted (a scanned PDF without a text
    layer, a password, damage) gets a reply saying so (``document_messages``).
    The stored human message keeps a short reference instead of the attachment
    (``attachment_placeholder`` as a text block, and
    ``additional_kwargs["rlm_attachments"]`` with each document's sha256 and
    length; ``additional_kwargs["rlm_document"]`` describes the joined text: its
    sha256, length, format, a PDF's page ranges and, for several attachments,
    each file's range), so a thread holds the document once, not in every
    checkpoint.

    A follow-up question is first rewritten as a standalone question from recent
    history: the most recent turns that fit both ``history_tokens`` and the
    model's window (counted with the analysis graph's token counter; attachments
    are left out, so the document never enters the chat model's window). The reply
    is read strictly (:mod:`rlm_graph.rewrite`): a preamble, a label, quotes or
    Markdown around the question are removed; a reply that is still not one question
    is asked for once more with a correction, and if the second reply cannot be read
    either, the user's own words are answered, a ``rewrite`` progress event says so,
    ``usage["unparsed_replies"]`` counts it, ``rlm_errors`` holds an entry of kind
    ``"unparsed"`` (characters 0-0: it concerns no part of the document) and the answer
    ends with ``rewrite_unparsed_note``. If the
    question alone, or its rewrite, leaves no room in the window, the node
    replies with ``question_too_long_message`` instead of failing.

    The answer is appended as an ``AIMessage`` holding the analysis answer as is
    (notes about unread parts included), whose ``additional_kwargs["citations"]``
    and ``response_metadata["citations"]`` hold the cited spans (offsets into
    ``document_key``; for a PDF also ``page`` and ``last_page``, numbered within
    that PDF; with several attachments also ``file``, the attachment's file name;
    on follow-up turns too); usage is summed
    under ``usage_key``. With ``stream_mode="messages"`` the answer streams token by
    token as ``AIMessageChunk`` s with that message's id, which join to its text
    (notes and citations in the last chunk; :mod:`rlm_graph.answer_stream`). If the call writing the
    answer fails midway and is retried, the stored answer is the retry's, and an ``answer.restarted``
    custom event (:class:`rlm_graph.state.AnswerRestartedEvent`) tells the UI to drop the chunks it
    showed before the new ones arrive. Without a document the node replies with
    ``missing_document_message``.

    The parent state must have ``messages``, ``document_key`` and ``usage_key``;
    :class:`DocumentChatState` has them.

    Args:
        model: Chat model used to rewrite follow-up questions.
        graph: The analysis graph; defaults to ``create_rlm_graph(model)``.
        document_key: State key holding the document.
        usage_key: State key where usage is summed.
        history_tokens: Most tokens of history used to rewrite a follow-up (the
            window may allow fewer).
        condense_prompt: Template with ``{history}`` and ``{question}``.
        missing_document_message: Reply when there is no document.
        question_too_long_message: Reply when the question does not fit the
            window; may use ``{tokens}``.
        attachment_placeholder: Text that replaces an attachment in the stored
            message; may use ``{chars}``, ``{sha256}`` and ``{sha256_prefix}``.
        durable_analysis: Let the analysis inherit the chat's checkpointer, so
            an interrupted analysis resumes part by part. Off by default: the
            analysis then writes no checkpoints (nor per-part payloads) into the
            chat thread, and a failed turn is re-run as a whole.
        name: Name of the node runnable.
        unsupported_attachment_message: Reply when no attachment is a document
            (an image, a spreadsheet...); may use ``{kinds}``.
        document_messages: Replies for files whose text cannot be extracted, by
            reason, merged over ``rlm_graph.documents.DEFAULT_DOCUMENT_MESSAGES``.
        rewrite_unparsed_note: Ends the answer when the follow-up rewrite could not be
            read and the user's own words were answered (``""``: no note).

    Returns:
        A runnable for ``StateGraph.add_node`` (sync and async). Its functions
        name the analysis graph, so ``get_graph(xray=True)`` of the chat graph
        (Studio's graph view) shows the analysis graph's nodes inside it.
    """
    node = DocumentTurn(
        model,
        graph if graph is not None else create_rlm_graph(model),
        document_key=document_key,
        usage_key=usage_key,
        history_tokens=history_tokens,
        condense_prompt=condense_prompt,
        missing_document_message=missing_document_message,
        question_too_long_message=question_too_long_message,
        attachment_placeholder=attachment_placeholder,
        durable_analysis=durable_analysis,
        unsupported_attachment_message=unsupported_attachment_message,
        document_messages=document_messages,
        rewrite_unparsed_note=rewrite_unparsed_note,
    )
    analysis = node.graph

    # The analysis graph is named in these closures on purpose: LangGraph finds a graph that a
    # node's function uses (its nonlocals), so ``get_graph(xray=True)`` (Studio's graph view) shows
    # the analysis graph's nodes inside this one, and ``get_state(subgraphs=True)`` knows it.
    def analyse(state: dict[str, Any]) -> dict[str, Any]:
        return node.invoke(state, analysis)

    async def aanalyse(state: dict[str, Any]) -> dict[str, Any]:
        return await node.ainvoke(state, analysis)

    return entry_runnable(name, analyse, aanalyse)
