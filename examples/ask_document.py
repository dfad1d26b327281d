"""Ask a question about a long document from Python, printing progress as it streams.

Runs offline with the bundled extractive model; set OPENAI_API_KEY or OPENAI_BASE_URL
(and RLM_MODEL, and RLM_CONTEXT_WINDOW for a model LangChain has no profile for) to
use a real model through ChatOpenAI:

    python examples/ask_document.py examples/pride_and_prejudice.txt "Who does Lydia elope with?"
"""

import asyncio
import sys

from rlm_graph import create_rlm_graph, model_from_env
from rlm_graph.citations import describe_citation, mark_answer
from rlm_graph.file_input import read_file


async def main(path: str, question: str) -> None:
    # The same reading as the CLI's, so the same file gets the same citation offsets.
    document = read_file(path).text
    model, note = model_from_env()
    print(note, file=sys.stderr)
    graph = create_rlm_graph(model)
    async for namespace, mode, chunk in graph.astream(
        {"document": document, "question": question},
        stream_mode=["custom", "values"],
        subgraphs=True,  # nested levels (depth >= 1) stream only with subgraphs=True
    ):
        if mode == "custom" and chunk["type"] == "progress":
            print(f"{'  ' * chunk['depth']}[{chunk['stage']}:{chunk['status']}] {chunk['message']}", file=sys.stderr)
        elif mode == "values" and namespace == () and "answer" in chunk:
            print(mark_answer(chunk["answer"], chunk["citations"]))
            for number, citation in enumerate(chunk["citations"], start=1):
                print(f"  [{number}] {describe_citation(citation)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
