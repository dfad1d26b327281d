"""Telling the progress stream about a retry that LangGraph's retry policy is about to make.

LangGraph retries a failed node by itself (``RetryPolicy``) and says so only in
its log. A person watching a run would see nothing, then the node's first message
again, attempt after attempt. So when a model-calling node fails with an error its
policy retries, the node writes one ``retrying`` event first: what is retried, in
how many seconds, why, and which attempt comes next ("Retrying part 3 of 8 in 1-2 s:
connection refused, attempt 2 of 5"). A retried node does not repeat its first
message (:attr:`rlm_graph.level.Level.first_attempt`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langgraph.types import RetryPolicy

from rlm_graph.errors import retry_reason
from rlm_graph.level import Level

__all__ = ["RetryAnnouncer", "matching_policy", "pending_retry"]

RetryAnnouncer = Callable[[Level, Any, dict[str, Any]], None]
"""Writes a node's ``retrying`` event: given the level, the node's input and the
template fields of :func:`pending_retry`."""


def matching_policy(policies: Sequence[RetryPolicy], error: BaseException) -> RetryPolicy | None:
    """The policy LangGraph applies to ``error``: the first whose ``retry_on`` accepts it.

    Args:
        policies: The node's retry policies, in order.
        error: The exception the node raised.

    Returns:
        The policy, or ``None`` when the error is not retried.
    """
    for policy in policies:
        retry_on = policy.retry_on
        if isinstance(retry_on, Sequence):
            matches = isinstance(error, tuple(retry_on))
        elif isinstance(retry_on, type):
            matches = isinstance(error, retry_on)
        else:
            matches = bool(retry_on(error))  # type: ignore[call-arg,arg-type]
        if matches:
            return policy
    return None


def _wait(policy: RetryPolicy, attempt: int) -> str:
    """The wait before attempt ``attempt + 1``, as LangGraph computes it (its jitter adds up to 1 s)."""
    interval = min(policy.max_interval, policy.initial_interval * policy.backoff_factor ** (attempt - 1))
    if policy.jitter:
        return f"{interval:g}-{interval + 1:g}"
    return f"{interval:g}"


def pending_retry(level: Level, error: BaseException) -> dict[str, Any] | None:
    """What to tell a person about the retry LangGraph will make of ``error``, if any.

    Args:
        level: The level the failed node runs at.
        error: The exception leaving the node.

    Returns:
        Template fields ``seconds`` (the wait, such as ``"1-2"`` with jitter),
        ``reason`` (:func:`rlm_graph.errors.retry_reason`), ``attempt`` (the one that
        comes next) and ``attempts`` (the policy's most); ``None`` when the error is
        not retried or this was the last attempt (the failure is reported then).
    """
    if not isinstance(error, Exception):
        return None
    policy = matching_policy(level.settings.retry_policies, error)
    attempt = level.attempt
    if policy is None or attempt >= policy.max_attempts:
        return None
    return {
        "seconds": _wait(policy, attempt),
        "reason": retry_reason(error),
        "attempt": attempt + 1,
        "attempts": policy.max_attempts,
    }
