"""OpenAI error responses -> gateway errors (status passed through)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from schemas.errors import GatewayError, UpstreamError, UpstreamRateLimited
from services.providers.openai.types import OAError

_decode_error = msgspec.json.Decoder(OAError).decode


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    try:
        detail = _decode_error(body).error
        message, code = detail.message, str(detail.code) if detail.code is not None else None
    except msgspec.DecodeError:
        message, code = body[:500].decode(errors="replace"), None
    message = f"Upstream returned {status}: {message}".rstrip(": ")
    if status == 429:
        return UpstreamRateLimited(message, code=code, retry_after_s=_retry_after(headers))
    # 4xx and 5xx both pass through with the upstream's own status.
    return UpstreamError(message, code=code or "upstream_error", status=status)
