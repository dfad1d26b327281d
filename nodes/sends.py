"""Graph plumbing of the reading fan-out: where a part's text is held, its payload and its ``Send``.

``split`` sends the first round of parts and ``synthesize`` the next focused rounds;
both build their sends here, so a part's payload has one shape. The document's text
goes from the input to a reading call through three modules: ``split`` holds it
(:func:`hold_text`), this module carries offsets or text, and ``process_chunk``
reads it back (:func:`read_text`) into the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage
from langgraph.types import Command, Send
from rlm_graph.state import ChunkTask, RLMState
from rlm_graph.state.schema import PlannedPart

from rlm_graph.calls import ModelCall
from rlm_graph.errors import RLMError
from rlm_graph.focus import NextRound
from rlm_graph.level import Level
from rlm_graph.prompts import build_messages, neutralize_tags
from rlm_graph.replies import with_schema
from rlm_graph.reply_forms import reading_form
from rlm_graph.settings import Settings
from rlm_graph.splitter import Span
from rlm_graph.window import SEAM_SLACK

__all__ = [
    "held_text",
    "hold_text",
    "leaf_read_call",
    "next_round_command",
    "part_payload",
    "part_sends",
    "part_text",
    "read_call",
    "read_text",
]


def part_payload(
    question: str,
    run: Level,
    part: PlannedPart,
    leaves: list[Span],
    index: int,
    total: int,
    scope: tuple[int, int],
    text: str | None,
) -> ChunkTask:
    """The payload of one part: offsets, its leaves when nested, and its text when checkpointed."""
    task: ChunkTask = {
        "question": question,
        "start": part["start"],
        "end": part["end"],
        "tokens": part["tokens"],
        "fits": part["fits"],
        "index": index,
        "total": total,
        "depth": run.depth,
        "scope": [scope[0], scope[1]],
        "run_key": run.run_key,
    }
    if len(leaves) > 1:
        task["leaves"] = [[leaf.start, leaf.end, leaf.tokens] for leaf in leaves]
    if text is not None:
        task["text"] = text
    return task


def hold_text(run: Level, document: str) -> str:
    """Keep the level's text (neutralized, as the model will see it) as the run's one shared copy.

    Parts then carry offsets into it, not text (unless the run is checkpointed).

    Args:
        run: The top level of the run.
        document: The document as given.

    Returns:
        The neutralized document (same length, so offsets hold).
    """
    run.resources.text = neutralize_tags(document)
    return run.resources.text


def held_text(run: Level, document: str) -> str:
    """The level's text as its parts are read: the run's shared copy, else this level's own."""
    return run.resources.text if run.resources.text is not None else neutralize_tags(document)


def _shared_slice(run: Level, start: int, end: int) -> str:
    shared = run.resources.text
    if shared is None:
        msg = f"the text of characters {start}-{end} is no longer held by run {run.run_key}"
        raise RLMError(msg)
    return shared[start:end]


def part_text(run: Level, document: str, start: int, end: int) -> str:
    """Text of ``[start, end)`` in root offsets, from the run's shared copy.

    A worker that resumed the run never held the root document; it slices this
    level's own (checkpointed) document instead.
    """
    if run.resources.text is None and document:
        return neutralize_tags(document[start - run.offset : end - run.offset])
    return _shared_slice(run, start, end)


def read_text(run: Level, task: ChunkTask) -> str:
    """A part's text at its reading call: carried by a checkpointed run's payload, else sliced from the shared copy.

    Raises:
        RLMError: If the run's text is gone (its resources were released).
    """
    text = task.get("text")
    return neutralize_tags(text) if text is not None else _shared_slice(run, task["start"], task["end"])


def read_call(
    settings: Settings, run: Level, task: ChunkTask, name: str | None = None, *, structured: bool = False
) -> ModelCall:
    """The reading call of a part that fits one call; its prompt is built once the call holds a slot.

    Args:
        settings: The graph's settings.
        run: The reading level.
        task: The part.
        name: Run name for tracers; ``None``: ``read part INDEX/TOTAL``.
        structured: Word the reply instructions for a structured (JSON) reply.

    Returns:
        The call, sized from split's count of the part plus the prompt around it (the
        framing counted is the larger of the two formats', so both fit the plan).
    """

    def messages() -> list[BaseMessage]:
        return build_messages(
            settings.system_prompt,
            settings.read_template(structured),
            question=task["question"],
            text=read_text(run, task),
            start=task["start"],
            end=task["end"],
            **settings.read_instructions(structured),
        )

    # The text's count is known from split; SEAM_SLACK covers the seam.
    return ModelCall(
        messages,
        settings.read_overhead(task["question"]) + task["tokens"] + SEAM_SLACK,
        name=name or f"read part {task['index'] + 1}/{task['total']}",
        span=(task["start"], task["end"]),
    )


def leaf_read_call(
    settings: Settings, run: Level, question: str, leaf: Span, name: str, *, structured: bool = False
) -> ModelCall:
    """The reading call of one leaf outside a ``process_chunk`` payload (read ahead, or by the navigator).

    It is the call ``process_chunk`` makes for that leaf: same prompt, same size.

    Args:
        settings: The graph's settings.
        run: The reading level.
        question: The question.
        leaf: The leaf, in root offsets; its text is sliced from the run's shared copy.
        name: Run name for tracers.
        structured: Ask for a structured reading (the reading's JSON schema), as ``process_chunk``
            does in a structured run; read ahead uses it so that its call is the one taken.

    Returns:
        The call.
    """
    part: PlannedPart = {"start": leaf.start, "end": leaf.end, "tokens": leaf.tokens, "fits": True}
    task = part_payload(question, run, part, [leaf], 0, 1, (leaf.start, leaf.end), None)
    if structured:
        form = reading_form(settings.large_model is not None)
        return with_schema(run, read_call(settings, run, task, name, structured=True), form)
    return read_call(settings, run, task, name)


def part_sends(
    run: Level,
    question: str,
    document: str,
    parts: Sequence[tuple[PlannedPart, list[Span]]],
    *,
    first_index: int,
    total: int,
    scope: tuple[int, int],
) -> list[Send]:
    """One ``Send`` to ``process_chunk`` per part.

    A checkpointed run may resume in another process, so its parts carry their
    text; otherwise they carry offsets into the run's one shared copy.

    Args:
        run: The sending level.
        question: The question.
        document: The level's document as in state (empty once the parts were sent).
        parts: Each part with its leaves.
        first_index: Number of the first part (parts read earlier keep theirs).
        total: Parts in the level so far, these included.
        scope: Span of the level's text in the root document.

    Returns:
        The sends.
    """
    durable = run.durable
    return [
        Send(
            "process_chunk",
            part_payload(
                question,
                run,
                part,
                leaves,
                index,
                total,
                scope,
                part_text(run, document, part["start"], part["end"]) if durable else None,
            ),
        )
        for index, (part, leaves) in enumerate(parts, start=first_index)
    ]


def next_round_command(run: Level, state: RLMState, chosen: NextRound) -> Command:
    """Send the parts a focused round chose (each fits one reading call).

    Args:
        run: The synthesizing level.
        state: Its state.
        chosen: The parts and the state update.

    Returns:
        The command that sends them.
    """
    scope = (run.offset, run.offset + state["chars"])
    parts = [(part, [Span(part["start"], part["end"], part["tokens"], 0)]) for part in chosen.parts]
    first, total = chosen.first_index, chosen.total
    sends = part_sends(run, state["question"], state["document"], parts, first_index=first, total=total, scope=scope)
    return Command(update=chosen.update, goto=sends)
