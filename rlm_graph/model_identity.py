"""What names a chat model in reply-cache keys: its class and every setting that changes replies.

Credentials appear only as salted digests, so keys can be stored and shared safely.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = ["model_identity"]

# Fields that never change what a model replies: observability, retries, timeouts,
# transport and streaming switches, and descriptive data (``metadata`` holds package
# versions, so an upgrade of langchain-core would otherwise empty the cache).
_IGNORED_FIELDS = frozenset(
    {
        "cache",
        "callback_manager",
        "callbacks",
        "custom_get_token_ids",
        "disable_streaming",
        "max_retries",
        "metadata",
        "profile",
        "rate_limiter",
        "request_timeout",
        "stream",
        "stream_chunk_timeout",
        "stream_usage",
        "streaming",
        "tags",
        "timeout",
        "verbose",
    }
)
# Keys of mappings (headers, model_kwargs, extra_body) whose values are credentials.
_SECRET_NAME = re.compile(r"key|token|secret|auth|password|passwd|cookie|credential|signature", re.IGNORECASE)


def _secret_digest(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return "secret:" + hashlib.sha256(b"rlm-graph credential\x00" + raw).hexdigest()[:16]


def _plain(value: Any, name: str = "") -> Any:
    """A JSON-ready view of a setting: credentials hashed, clients reduced to their endpoint."""
    if isinstance(value, SecretStr):
        return _secret_digest(value.get_secret_value())
    if isinstance(value, SecretBytes):
        return _secret_digest(value.get_secret_value())
    if isinstance(value, str | bytes) and name and _SECRET_NAME.search(name):
        return _secret_digest(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(key): _plain(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, BaseModel):
        return {"type": type(value).__qualname__, **_fields(value)}
    # A client object: its endpoint is what matters (the SDK may have read it from the
    # environment, e.g. OPENAI_BASE_URL, when the model's own field is empty).
    endpoint = getattr(value, "base_url", None)
    if endpoint is not None:
        return {"type": type(value).__qualname__, "base_url": str(endpoint)}
    # Any other object (a token provider, a hook): its type, never its repr, which may
    # hold a secret or a memory address that differs in every process.
    return {"type": f"{type(value).__module__}.{type(value).__qualname__}"}


def _fields(model: BaseModel) -> dict[str, Any]:
    return {
        name: _plain(getattr(model, name, None), name)
        for name in sorted(type(model).model_fields)
        if name not in _IGNORED_FIELDS
    }


def model_identity(model: BaseChatModel) -> str:
    """Stable text naming a chat model and every setting that changes its replies.

    It is built from the model's class and all of its pydantic fields: endpoint
    (``openai_api_base`` or the client's ``base_url``), Azure deployment and API
    version, organization, ``default_headers``, ``default_query``, ``model_kwargs``,
    ``extra_body``, temperature, max tokens, stop, and so on, for any LangChain
    chat model, not only OpenAI's. Fields that cannot change a reply (callbacks,
    retries, timeouts, streaming, tags, metadata) are left out.

    Credentials (``SecretStr`` fields such as the API key, and header or keyword
    entries named like ``Authorization``, ``api-key`` or ``*token*``) appear only as
    a salted SHA-256 digest. They are kept in that form rather than dropped because
    a gateway may route by key (LiteLLM virtual keys, per-key model aliases), and
    two tenants with different keys should not read each other's cached replies;
    the price is that rotating a key starts an empty cache.

    Args:
        model: The chat model.

    Returns:
        A JSON text; it holds no credential in clear.
    """
    identity: dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    identity["fields"] = _fields(model)
    identifying = getattr(model, "_identifying_params", None)
    if isinstance(identifying, Mapping):
        identity["identifying"] = {
            str(k): _plain(v, str(k)) for k, v in identifying.items() if k not in _IGNORED_FIELDS
        }
    return json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
