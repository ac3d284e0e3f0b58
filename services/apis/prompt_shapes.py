"""What a prompt API answers over HTTP: one JSON document, or server-sent
events (``delta`` events with the text as it comes, then one ``answer``
event, or an ``error`` event), and errors in OpenAI's shape."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import Cost, Usage
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Failure
from services.apis import openai_shapes

_json = msgspec.json.Encoder()


def usage(u: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def cost(c: Cost) -> dict[str, Any]:
    """Exact integers (pico-USD, 1e-12 USD) and, for reading, the total in USD."""
    return {
        "usd": c.total / 1e12,
        "pico_usd": c.total,
        "input_pico_usd": c.input,
        "cached_input_pico_usd": c.cached_input,
        "output_pico_usd": c.output,
    }


def answer_dict(a: ApiAnswer) -> dict[str, Any]:
    p = a.prompt
    return {
        "output": a.output,
        "request_id": a.request_id,
        "prompt": {"name": p.name, "version": p.version, "label": p.label},
        "usage": usage(a.usage),
        "cost": cost(a.cost),
    }


def answer(a: ApiAnswer) -> bytes:
    return _json.encode(answer_dict(a))


def error(f: Failure) -> bytes:
    body = openai_shapes.error_body(f.type, f.code, f.message)
    if f.raw_output:
        body["error"]["raw_output"] = f.raw_output
    return _json.encode(body)


def sse_delta(text: str) -> bytes:
    return b"event: delta\ndata: " + _json.encode({"text": text}) + b"\n\n"


def sse_answer(a: ApiAnswer) -> bytes:
    return b"event: answer\ndata: " + answer(a) + b"\n\n"


def sse_error(f: Failure) -> bytes:
    return b"event: error\ndata: " + error(f) + b"\n\n"
