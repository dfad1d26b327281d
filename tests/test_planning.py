"""The plan: leaves counted once per run, and what the parts carry with and without a checkpointer."""

from collections.abc import Sequence

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from rlm_graph import create_rlm_graph
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles

QUESTION = "List every NEEDLE code."


class CharacterTally(TiktokenCounter):
    """cl100k_base, with a tally of the document characters it was asked to count."""

    def __init__(self) -> None:
        super().__init__(exact=True)
        self.characters = 0
        self._prompts = TiktokenCounter(exact=True)

    def count(self, text: str) -> int:
        self.characters += len(text)
        return super().count(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self.characters += sum(map(len, texts))
        return super().count_many(texts)

    def count_messages(self, messages: Sequence[BaseMessage]) -> int:
        # Prompts are framing around text counted already; they are not the document.
        return self._prompts.count_messages(messages)


async def test_a_deep_document_is_tokenized_about_once(frankenstein: str, kalevala: str) -> None:
    text, facts, _ = plant_needles(frankenstein + "\n\n" + kalevala, 40)
    tally = CharacterTally()
    model = PerfectReader()
    graph = create_rlm_graph(model, token_counter=tally, cache=False)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert out["usage"]["max_depth"] == 2
    assert all(fact in out["answer"] for fact in facts)
    assert model.overflows == 0
    # Nested levels reuse the leaves planned at the top instead of counting their text again.
    assert tally.characters <= 1.3 * len(text)


async def test_a_document_a_few_parts_long_is_not_counted_whole_before_split(frankenstein: str) -> None:
    # check counted a text that might fit one call in full (units of a whole part), and
    # split then counted it again in its own units: about 1.7 passes for this document.
    # A prefix of about one part shows it cannot fit.
    text, facts, _ = plant_needles(frankenstein[:420_000], 8)
    tally = CharacterTally()
    graph = create_rlm_graph(PerfectReader(window=32_768), context_window=32_768, token_counter=tally, cache=False)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert all(fact in out["answer"] for fact in facts)
    assert out["usage"]["llm_calls"] > 1  # split: the text is several parts long
    assert tally.characters <= 1.3 * len(text)


async def _chunk_inputs(graph, text: str, config: dict) -> list[dict]:
    inputs = []
    async for _, mode, chunk in graph.astream(
        {"document": text, "question": QUESTION}, config, stream_mode=["tasks", "values"], subgraphs=True
    ):
        if mode == "tasks" and chunk.get("name") == "process_chunk" and "input" in chunk:
            inputs.append(chunk["input"])
    return inputs


async def test_parts_carry_offsets_only_without_a_checkpointer(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader(), cache=False)
    inputs = await _chunk_inputs(graph, frankenstein, {})
    assert inputs
    assert not any("text" in task for task in inputs)
    nested = [task for task in inputs if not task["fits"]]
    assert nested
    assert all(task["leaves"][0][0] == task["start"] and task["leaves"][-1][1] == task["end"] for task in nested)


async def test_parts_carry_their_text_when_checkpointed(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader(), checkpointer=InMemorySaver(), cache=False)
    inputs = await _chunk_inputs(graph, frankenstein, {"configurable": {"thread_id": "durable"}})
    assert inputs
    # A worker that resumes this run elsewhere has only the checkpoints to read from.
    assert all(task["text"] == frankenstein[task["start"] : task["end"]] for task in inputs)
