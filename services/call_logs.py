"""Call logs: a call's request and answer bodies, for tenants that opt in.

The bodies are the ones the upstream saw, so a field the redaction stage
replaced is logged replaced: the raw value never reaches a log. Each body is
cut at the tenant's cap, on a character boundary, and a cut one ends with a
marker saying how much was left out, so a reader never mistakes it for whole.
"""

from __future__ import annotations

import base64

import msgspec

from schemas.chat import Message, Usage
from schemas.envelope import Envelope
from schemas.events import CallLogEvent
from schemas.ids import new_id

_json = msgspec.json.Encoder()
# Keeps a cut body's marker recognisable: `sluice logs` and the dashboard show it as is.
CUT_MARKER = "…[cut by sluice: {kept} of {total} bytes kept]"
# The largest cap a tenant may set: a call log travels in an event batch.
MAX_CAP_BYTES = 262_144


def cut(text: str, max_bytes: int) -> tuple[str, int]:
    """``text`` kept to at most ``max_bytes`` of UTF-8 (plus the marker when
    cut), and its whole size in bytes."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text, len(raw)
    kept = raw[:max_bytes].decode(errors="ignore")  # never half a character
    return kept + CUT_MARKER.format(kept=len(kept.encode()), total=len(raw)), len(raw)


def body_text(data: bytes) -> str:
    """A REST body as a log keeps it: its text, or base64 when it is not UTF-8."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def request_json(env: Envelope) -> str:
    if env.rest is not None:
        call = env.rest
        rest = {"method": call.method, "path": call.path, "headers": call.headers, "body": body_text(call.body)}
        return _json.encode(rest).decode()
    body = env.body if env.body is not None else env.embeddings
    return _json.encode(body).decode() if body is not None else "null"


def answer_json(
    *,
    message: Message | None = None,
    embeddings: list[list[float]] | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    error: dict[str, str] | None = None,
) -> str:
    answer: dict[str, object] = {}
    if error is not None:
        answer["error"] = error
    if message is not None:
        answer["message"] = message
    if embeddings is not None:
        answer["embeddings"] = embeddings
    if finish_reason is not None:
        answer["finish_reason"] = finish_reason
    if usage is not None:
        answer["usage"] = usage
    return _json.encode(answer).decode()


def entry(env: Envelope, status: int, answer: str, at_ns: int) -> CallLogEvent:
    """The call log of ``env``; only for a tenant that opted in
    (``env.call_log_max_bytes`` > 0, set by the policy stage alone)."""
    cap = env.call_log_max_bytes
    request, request_bytes = cut(request_json(env), cap)
    response, response_bytes = cut(answer, cap)
    return CallLogEvent(
        event_id=new_id(),
        request_id=env.id,
        at_ns=at_ns,
        tenant_id=env.tenant_id,
        key_id=env.key_id,
        model=env.model,
        status=status,
        request_body=request,
        response_body=response,
        request_bytes=request_bytes,
        response_bytes=response_bytes,
    )
