"""Upstream HTTP errors -> the unified error types, the same rule for every family.

Each adapter reads its own error body (message and code) and hands them
here: the status decides the type and retryability, and a too-long prompt is
told apart by what the provider says, because every family sends it as a
plain 400.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.errors import (
    ContextLengthExceeded,
    GatewayError,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamTimeout,
)

# Phrases the providers use for "prompt longer than the context window".
_CONTEXT_HINTS = (
    "context_length",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "input token count",
    "exceeds the maximum number of tokens",
)


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_context_length(message: str, code: str | None) -> bool:
    text = f"{message} {code or ''}".lower()
    return any(hint in text for hint in _CONTEXT_HINTS)


def classify(
    status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
) -> GatewayError:
    text = f"Upstream returned {status}: {message}".rstrip(": ")
    if status == 429:
        return UpstreamRateLimited(text, code=code, retry_after_s=retry_after(headers or {}))
    if status in (503, 529):
        return UpstreamOverloaded(text, code=code, retry_after_s=retry_after(headers or {}))
    if status in (408, 504):
        return UpstreamTimeout(text)
    if status in (401, 403):
        return UpstreamAuthFailed(text)
    if status >= 500:
        return UpstreamError(text, code=code or "upstream_error", status=status)
    if is_context_length(message, code):
        return ContextLengthExceeded(text)
    return UpstreamInvalidRequest(text, code=code or None, status=status)
