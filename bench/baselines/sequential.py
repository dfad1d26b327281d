"""Baseline (a): the sequential recursive design of the original RLM write-up, minimally.

The context is cut into fixed-size character chunks, a sub-call reads each chunk
one after another, and the partial answers are concatenated into one final call.
A call that overflows the window is counted and skipped, where a plain script
would crash.
"""

from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

CHUNK_PROMPT = "Question: {question}\n\nHere is a chunk of a long context:\n{chunk}\n\nAnswer from this chunk."
FINAL_PROMPT = "Question: {question}\n\nAnswers from each chunk of the context:\n{answers}\n\nGive the final answer."


def run(model: BaseChatModel, document: str, question: str, chunk_chars: int) -> dict:
    """Answer with sequential sub-calls; returns the answer and how many calls overflowed."""
    overflows = 0
    answers = []
    for start in range(0, len(document), chunk_chars):
        prompt = CHUNK_PROMPT.format(question=question, chunk=document[start : start + chunk_chars])
        try:
            answers.append(model.invoke([HumanMessage(prompt)]).text)
        except ContextOverflowError:
            overflows += 1
    try:
        answer = model.invoke([HumanMessage(FINAL_PROMPT.format(question=question, answers="\n".join(answers)))]).text
    except ContextOverflowError:
        overflows += 1
        answer = ""
    return {"answer": answer, "overflows": overflows}
