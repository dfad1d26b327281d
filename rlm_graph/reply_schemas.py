"""JSON schemas of structured replies, one per kind of call (issue 27 §2).

Each is written for OpenAI's strict ``json_schema`` mode, which the others accept too:
every property is required and no other is allowed. :class:`rlm_graph.replies.ReplyForm`
carries one of these; :func:`rlm_graph.replies.ask` sends it as the call's
``response_format`` when the run's replies are structured.

- :data:`READING_SCHEMA`: a part's reading (``relevant``, ``findings``, ``quotes``);
  :data:`RELAY_READING_SCHEMA` adds ``confidence`` (relay runs).
- :data:`FOCUSED_SYNTHESIS_SCHEMA`: a focused round's synthesis, with ``complete``.
- :data:`COUNT_SCHEMA`, :data:`TALLY_SCHEMA`, :data:`LIST_SCHEMA`: navigate's ``ask_all``.
- :data:`REWRITE_SCHEMA`: a chat follow-up rewritten as a standalone question.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COUNT_SCHEMA",
    "FOCUSED_SYNTHESIS_SCHEMA",
    "LIST_SCHEMA",
    "READING_SCHEMA",
    "RELAY_READING_SCHEMA",
    "REWRITE_SCHEMA",
    "TALLY_SCHEMA",
    "object_schema",
]


def object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    """A strict object schema: every property required, none other allowed.

    Args:
        properties: Property schemas by name.

    Returns:
        The schema.
    """
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_STRINGS = {"type": "array", "items": {"type": "string"}}

# The reading schemas carry no descriptions: the prompt's instructions say what each field is,
# and every read sends its schema (about 75 tokens as it is; descriptions doubled that).
READING_SCHEMA = object_schema(
    {"relevant": {"type": "boolean"}, "findings": {"type": "string"}, "quotes": _STRINGS}
)
"""A part's reading: whether the part bears on the question, the facts, the supporting sentences."""

RELAY_READING_SCHEMA = object_schema(
    {**READING_SCHEMA["properties"], "confidence": {"type": "string", "enum": ["high", "medium", "low"]}}
)
"""A part's reading in a relay run: the small model also says how sure it is."""

FOCUSED_SYNTHESIS_SCHEMA = object_schema(
    {
        "relevant": {"type": "boolean"},
        "answer": {"type": "string"},
        "complete": {"type": "string", "enum": ["yes", "partly", "no"]},
    }
)
"""A focused round's synthesis, with its verdict on whether reading may stop."""

COUNT_SCHEMA = object_schema({"count": {"type": "integer", "description": "The count, a whole number."}})
"""``ask_all`` count: one whole number per span."""

TALLY_SCHEMA = object_schema(
    {
        "counts": {
            "type": "array",
            "items": object_schema({"key": {"type": "string"}, "count": {"type": "integer"}}),
        }
    }
)
"""``ask_all`` tally: a count per key."""

LIST_SCHEMA = object_schema({"items": _STRINGS})
"""``ask_all`` list: the items found."""

REWRITE_SCHEMA = object_schema({"question": {"type": "string", "description": "The standalone question."}})
"""A chat follow-up rewritten as one standalone question."""
