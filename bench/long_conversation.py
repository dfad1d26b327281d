"""Long conversations: recall of early facts and tokens per turn, history hook vs. trimming vs. summarizing.

    .venv/bin/python bench/long_conversation.py

One scripted 400-turn thread (about 140K tokens, tests/threads.py) with six facts stated
early (turns 3 to 200), an 8K-window chat model (the perfect reader: it reports exactly the
facts visible in its prompt), and three ways to fit the thread into the window:

- ``trim_messages``: the most recent messages that fit (LangChain's usual answer).
- Summarizing older turns (langmem-style running summary, 600 tokens). The summarizer is
  SCRIPTED, in two variants: "fact-keeping" keeps every planted fact it sees (an upper bound
  for a summarizer on these facts); "gist" keeps the first 12 words of each message and drops
  the oldest gist once the summary is over 600 tokens (what a budgeted summary does to details).
  Either way the summary is updated on every turn whose oldest messages leave the window.
- ``create_history_hook``: recent turns verbatim (4,000 tokens), older turns read by the
  analysis graph only when BM25 says the question is about them; a 600-token cited digest.

Probes at turn 400: one question per early fact ("What was NEEDLE-0007?"), and 20 ordinary
turns (the thread's own last 20 user messages, which ask nothing about older turns).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, trim_messages

from rlm_graph import create_history_hook, create_rlm_graph
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import NEEDLE, PerfectReader
from tests.threads import EARLY_FACTS, fact, scripted_thread

WINDOW = 8192
REPLY = 1024
SUMMARY_TOKENS = 600
RECENT_TOKENS = 4000
COUNTER = TiktokenCounter(exact=True)


def tokens(messages: list[BaseMessage]) -> int:
    return COUNTER.count_messages(messages)


def trimmed(messages: list[BaseMessage], limit: int) -> list[BaseMessage]:
    return trim_messages(messages, max_tokens=limit, token_counter=tokens, strategy="last", start_on="human")


def gist_summary(older: list[BaseMessage]) -> str:
    lines: list[str] = []
    for message in older:
        lines.append(" ".join(message.text.split()[:12]))
        while COUNTER.count("\n".join(lines)) > SUMMARY_TOKENS:
            lines.pop(0)
    return "\n".join(lines)


def fact_summary(older: list[BaseMessage]) -> str:
    facts = sorted({f for m in older for f in NEEDLE.findall(m.text)})
    return "Facts stated so far: " + "; ".join(facts)


def summarizing(thread: list[BaseMessage], question: HumanMessage, summarize) -> tuple[list[BaseMessage], int]:
    """Model input with a running summary; returns it and the summarizer's tokens on this turn."""
    recent = trimmed([*thread, question], WINDOW - REPLY - SUMMARY_TOKENS - 64)
    older = thread[: len(thread) + 1 - len(recent)]
    summary = SystemMessage(f"Summary of the earlier conversation:\n{summarize(older)}")
    # The running summary is updated with the messages that just left the window: previous summary + one turn.
    update_tokens = SUMMARY_TOKENS + tokens(thread[len(older) - 2 : len(older)]) if older else 0
    return [summary, *recent], update_tokens


def main() -> None:
    thread = scripted_thread(400)
    print(f"thread: {len(thread)} messages, {sum(COUNTER.count_many([m.text for m in thread])):,} tokens")
    chat = PerfectReader(window=WINDOW, reserved_output=REPLY)
    reader = PerfectReader(window=WINDOW, reserved_output=REPLY)
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"), recent_tokens=RECENT_TOKENS,
                               max_output_tokens=REPLY, digest_tokens=SUMMARY_TOKENS)
    probes = [HumanMessage(f"What was NEEDLE-{turn:04d}?") for turn in EARLY_FACTS]
    ordinary = [(thread[: index], thread[index]) for index in range(len(thread) - 40, len(thread), 2)]
    rows = []
    strategies = {
        "trim_messages": lambda history, q: ([*trimmed([*history, q], WINDOW - REPLY - 64)], 0, 0),
        "summary, fact-keeping (scripted)": lambda history, q: (*summarizing(history, q, fact_summary), 1),
        "summary, gist (scripted)": lambda history, q: (*summarizing(history, q, gist_summary), 1),
    }
    for name, strategy in strategies.items():
        recalled, chat_tokens, extra, calls = 0, [], [], []
        for turn, question in zip(EARLY_FACTS, probes, strict=True):
            sent, extra_tokens, extra_calls = strategy(thread, question)
            reply = chat.invoke(sent).text
            recalled += fact(turn) in reply
            chat_tokens.append(tokens(sent))
            extra.append(extra_tokens)
            calls.append(extra_calls)
        plain = [strategy(history, q) for history, q in ordinary]
        rows.append((name, recalled, sum(chat_tokens) / len(chat_tokens), sum(extra) / len(extra),
                     sum(calls) / len(calls), sum(p[2] for p in plain), sum(p[1] for p in plain) / len(plain)))
    recalled, chat_tokens, extra, calls = 0, [], [], []
    for turn, question in zip(EARLY_FACTS, probes, strict=True):
        before = len(reader.prompts)
        sent = hook.invoke({"messages": [*thread, question]})["llm_input_messages"]
        reply = chat.invoke(sent).text
        recalled += fact(turn) in reply and f"turn-{turn:03d}-user" in sent[-1].text
        chat_tokens.append(tokens(sent))
        extra.append(sum(COUNTER.count(p) for p in reader.prompts[before:]))
        calls.append(len(reader.prompts) - before)
    before = len(reader.prompts)
    looked = 0
    plain_tokens = 0
    for history, question in ordinary:
        start = len(reader.prompts)
        hook.invoke({"messages": [*history, question]})
        looked += len(reader.prompts) > start
        plain_tokens += sum(COUNTER.count(p) for p in reader.prompts[start:])
    rows.append(("create_history_hook (cited)", recalled, sum(chat_tokens) / len(chat_tokens),
                 sum(extra) / len(extra), sum(calls) / len(calls), looked, plain_tokens / len(ordinary)))
    assert chat.overflows == 0
    assert reader.overflows == 0
    print()
    print("| strategy | early facts recalled (of 6) | chat-model input tokens | extra tokens on a recall turn "
          "| extra model calls on a recall turn | ordinary turns with extra calls (of 20) "
          "| extra tokens per ordinary turn |")
    print("|---|---|---|---|---|---|---|")
    for name, got, chat_in, extra_in, extra_calls, plain_calls, plain_extra in rows:
        print(f"| {name} | {got} | {chat_in:,.0f} | {extra_in:,.0f} | {extra_calls:.1f} | {plain_calls} "
              f"| {plain_extra:,.0f} |")


if __name__ == "__main__":
    main()
