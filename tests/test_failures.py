"""Transient errors are retried, overflows are not, and one bad part does not sink the run."""

import asyncio
import time

import httpx
import openai
import pytest
from langchain_core.exceptions import ContextOverflowError, ModelAPIError, ModelRateLimitError
from langgraph.types import RetryPolicy

from rlm_graph import AllPartsFailedError, DepthLimitError, create_rlm_graph, is_transient_error
from tests.fakes import PerfectReader, VerboseReader, first_attempts_fail, insert_at_paragraph, plant_needles
from tests.helpers import collect, covered

QUESTION = "List every NEEDLE code."
FAST_RETRY = RetryPolicy(initial_interval=0.01, max_interval=0.02, max_attempts=3, retry_on=is_transient_error)
POISON = "POISONED-SPAN"


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (openai.RateLimitError("slow down", response=_response(429), body=None), True),
        (openai.InternalServerError("oops", response=_response(500), body=None), True),
        (openai.APIStatusError("unavailable", response=_response(503), body=None), True),
        (openai.APITimeoutError(request=httpx.Request("POST", "http://127.0.0.1")), True),
        (openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1")), True),
        (httpx.ReadTimeout("read timed out"), True),
        (TimeoutError(), True),
        (ModelRateLimitError("429"), True),
        (
            openai.BadRequestError(
                "This model's maximum context length is 8192 tokens", response=_response(400), body=None
            ),
            False,
        ),
        (openai.BadRequestError("context_length_exceeded", response=_response(400), body=None), False),
        (openai.BadRequestError("bad request", response=_response(400), body=None), False),
        (openai.AuthenticationError("no key", response=_response(401), body=None), False),
        (ContextOverflowError("too long"), False),
        (ValueError("bug"), False),
    ],
)
def test_retry_rule(error: BaseException, transient: bool) -> None:
    assert is_transient_error(error) is transient


async def test_every_first_attempt_failing_still_completes(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 30)
    model = PerfectReader(fail=first_attempts_fail(lambda: ModelRateLimitError("429 Too Many Requests")))
    graph = create_rlm_graph(model, retry_policy=FAST_RETRY)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert out["errors"] == []
    assert all(fact in out["answer"] for fact in facts)
    assert len(model.prompts) == 2 * out["usage"]["llm_calls"]


async def test_overflow_is_not_retried_and_siblings_survive(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein, 30)
    text, position = insert_at_paragraph(text, POISON, 50_000)

    def overflow(prompt: str, _: int) -> BaseException | None:
        return (
            ContextOverflowError("context_length_exceeded")
            if POISON in prompt and "<finding id=" not in prompt
            else None
        )

    model = PerfectReader(fail=overflow)
    graph = create_rlm_graph(model, retry_policy=FAST_RETRY)
    out, events = await collect(graph, {"document": text, "question": QUESTION})
    poisoned_calls = [p for p in model.prompts if POISON in p]
    assert len(poisoned_calls) == 1
    assert len(out["errors"]) == 1
    error = out["errors"][0]
    assert error["start"] <= position < error["end"]
    assert "ContextOverflowError" in error["error"]
    failed = [e for e in events if e.get("status") == "failed"]
    assert [e["span"] for e in failed] == [[error["start"], error["end"]]]
    shifted = [o if o < position else o + len(POISON) + 1 for o in offsets]
    survivors = [f for f, o in zip(facts, shifted, strict=True) if not error["start"] <= o < error["end"]]
    assert survivors
    assert all(fact in out["answer"] for fact in survivors)
    assert out["usage"]["failed_parts"] == 1
    assert not any(covered(o, out["citations"]) for o in shifted if error["start"] <= o < error["end"])


async def test_persistent_server_error_is_retried_then_reported(frankenstein: str) -> None:
    text = frankenstein[:60_000] + POISON + frankenstein[60_000:]

    def always_503(prompt: str, _: int) -> BaseException | None:
        return ModelAPIError("503 Service Unavailable") if POISON in prompt and "<finding id=" not in prompt else None

    model = PerfectReader(fail=always_503)
    graph = create_rlm_graph(model, retry_policy=FAST_RETRY)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert len([p for p in model.prompts if POISON in p]) == 3
    assert len(out["errors"]) == 1
    assert "ModelAPIError: 503" in out["errors"][0]["error"]


async def test_all_parts_failing_raises_with_reason(frankenstein: str) -> None:
    model = PerfectReader(fail=lambda prompt, _: ValueError("model is broken"))
    graph = create_rlm_graph(model, retry_policy=FAST_RETRY)
    with pytest.raises(AllPartsFailedError, match=r"all \d+ parts .* failed.*model is broken"):
        await graph.ainvoke({"document": frankenstein, "question": QUESTION})


async def test_depth_limit_refuses_before_spending(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, max_depth=0)
    with pytest.raises(DepthLimitError, match="max_depth is 0"):
        await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    assert model.prompts == []


def test_sync_run_degrades_the_same_way(frankenstein: str) -> None:
    text = frankenstein[:60_000] + POISON + frankenstein[60_000:]

    def overflow(prompt: str, _: int) -> BaseException | None:
        return (
            ContextOverflowError("context_length_exceeded")
            if POISON in prompt and "<finding id=" not in prompt
            else None
        )

    graph = create_rlm_graph(PerfectReader(fail=overflow), retry_policy=FAST_RETRY)
    out = graph.invoke({"document": text, "question": QUESTION})
    assert len(out["errors"]) == 1


async def test_nested_synthesis_failure_is_not_retried_as_a_subtree(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein, 30)
    synth_calls: list[str] = []

    def nested_synthesis_rate_limited(prompt: str, _: int) -> BaseException | None:
        # One nested synthesis (the one holding NEEDLE-0000) is rate-limited for good.
        if '<finding id="' in prompt and "another step will merge" in prompt and "NEEDLE-0000" in prompt:
            synth_calls.append(prompt)
            return ModelRateLimitError("429")
        return None

    # Long findings, so nested levels must synthesize rather than pass them up.
    model = VerboseReader(filler_words=600, fail=nested_synthesis_rate_limited)
    graph = create_rlm_graph(model, retry_policy=FAST_RETRY)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    reads = [p for p in model.prompts if "<document_part start=" in p]
    # Each part is read exactly once: the failed nested synthesis was retried on its own.
    assert len(reads) == len(set(reads))
    assert len(out["errors"]) == 1
    assert "NestedRunError" in out["errors"][0]["error"]
    assert "ModelRateLimitError" in out["errors"][0]["error"]
    assert len(synth_calls) == FAST_RETRY.max_attempts
    assert "NEEDLE-0029" in out["answer"]


class SlowOnPoison(PerfectReader):
    """Takes half a second on prompts that hold the poison marker."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        if any(POISON in m.text for m in messages) and not any('<finding id="' in m.text for m in messages):
            with self._lock:
                self._prompts.append("\n".join(m.text for m in messages))
            await asyncio.sleep(0.5)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


async def test_timeout_policy_bounds_each_call_then_reports(frankenstein: str) -> None:
    from langgraph.types import TimeoutPolicy

    text = frankenstein[:60_000] + POISON + frankenstein[60_000:120_000]
    model = SlowOnPoison()
    graph = create_rlm_graph(model, retry_policy=FAST_RETRY, timeout=TimeoutPolicy(run_timeout=0.2))
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    (error,) = out["errors"]
    assert "ModelCallTimeoutError" in error["error"]
    # Each attempt was cut off at the timeout (none reached the reader's answer), then retried.
    assert len([p for p in model.prompts if POISON in p]) == FAST_RETRY.max_attempts


class SyncSlowOnPoison(PerfectReader):
    """Takes half a second (sync) on reading prompts that hold the poison marker."""

    slow_starts: list[float]

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        if any(POISON in m.text for m in messages) and not any('<finding id="' in m.text for m in messages):
            self.slow_starts.append(time.monotonic())
            time.sleep(0.5)
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_timeout_bounds_each_call_in_sync_runs(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:60_000], 3)
    text += POISON + frankenstein[60_000:90_000]
    model = SyncSlowOnPoison(window=4096, reserved_output=512, slow_starts=[])
    graph = create_rlm_graph(model, max_output_tokens=512, cache=False, retry_policy=FAST_RETRY, timeout=0.2)
    out = graph.invoke({"document": text, "question": QUESTION})
    (error,) = out["errors"]
    assert "ModelCallTimeoutError" in error["error"]
    # Three attempts, each abandoned at the timeout (a call that had run its course would not be retried).
    assert len(model.slow_starts) == FAST_RETRY.max_attempts
    assert all(fact in out["answer"] for fact in facts)


async def test_timeout_never_cuts_off_a_nested_part(frankenstein: str) -> None:
    """Each call takes a fifth of the timeout; a nested part makes many calls, one after another."""
    text, facts, _ = plant_needles(frankenstein[:120_000], 6)
    model = PerfectReader(window=2048, reserved_output=256, delay=0.1)
    graph = create_rlm_graph(
        model, max_output_tokens=256, max_concurrency=1, cache=False, retry_policy=FAST_RETRY, timeout=0.5
    )
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert out["usage"]["max_depth"] >= 1
    assert out["errors"] == []
    assert all(fact in out["answer"] for fact in facts)
    # No call was repeated: nothing was killed and re-run.
    assert len(model.prompts) == len(set(model.prompts))


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        create_rlm_graph(PerfectReader(), timeout=0)
