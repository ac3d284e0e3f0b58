"""Error bodies of the OpenAI family -> gateway errors.

OpenAI sends ``{"error": {"message", "type", "code"}}``; the compatible
servers mostly copy it, but some (Mistral, vLLM, Ollama) put ``message`` or
``detail`` at the top level, so every shape is read leniently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.errors import GatewayError
from services.providers.errors import classify

_decode = msgspec.json.Decoder(Any).decode


def message_and_code(body: bytes) -> tuple[str, str | None]:
    try:
        doc = _decode(body)
    except msgspec.DecodeError:
        return body[:500].decode(errors="replace"), None
    if not isinstance(doc, dict):
        return str(doc)[:500], None
    detail = doc.get("error", doc)
    if isinstance(detail, str):  # {"error": "text"} (Ollama, some vLLM versions)
        return detail, None
    if not isinstance(detail, dict):
        return str(detail)[:500], None
    message = detail.get("message") or detail.get("detail") or ""
    code = detail.get("code") or detail.get("type")
    return str(message)[:2000], str(code) if code is not None else None


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    message, code = message_and_code(body)
    return classify(status, message, code=code, headers=headers)
