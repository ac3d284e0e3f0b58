"""Helpers for adapter tests: run a recorded upstream answer through the real
call engine (over httpx.MockTransport) and put the streamed deltas together
the way a client would."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import msgspec

from schemas.chat import ChatBody, Delta, Message, ToolChoiceOption, ToolDef
from schemas.envelope import Deployment
from services.providers.call import CallOutcome, call_chat
from services.providers.http import UpstreamHTTP

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def sent_json(content: bytes) -> dict:
    return msgspec.json.decode(content)


async def call_with(
    dep: Deployment, body: ChatBody, answer: bytes, *, status: int = 200, stream: bool = False
) -> tuple[CallOutcome, list[Delta], httpx.Request]:
    """One call against a canned upstream answer; returns the outcome, the
    deltas handed over (when streamed) and the request the upstream saw."""
    seen: list[httpx.Request] = []
    deltas: list[Delta] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=answer)

    async def on_delta(delta: Delta, model: str) -> None:
        deltas.append(delta)

    async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
        outcome = await call_chat(client, dep, body, on_delta=on_delta if stream else None)
    return outcome, deltas, seen[0]


def assemble(deltas: list[Delta]) -> tuple[str, list[dict], str | None]:
    """Streamed deltas -> (text, tool calls, finish reason), as an OpenAI client merges them."""
    text = "".join(d.content or "" for d in deltas)
    calls: dict[int, dict] = {}
    finish = None
    for d in deltas:
        finish = d.finish_reason or finish
        for tc in d.tool_calls or ():
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = tc.id or call["id"]
            if tc.function is not None:
                call["name"] += tc.function.name or ""
                call["arguments"] += tc.function.arguments or ""
    out = [{**c, "arguments": json.loads(c["arguments"])} for _, c in sorted(calls.items())]
    return text, out, finish


def message(**fields: object) -> Message:
    """A unified message from OpenAI-shaped JSON (content parts, tool calls),
    read the way the ingress reads a request body."""
    return msgspec.convert(fields, Message)


def tools(*defs: dict) -> list[ToolDef]:
    """Unified tool definitions from OpenAI-shaped JSON, read as the ingress reads them."""
    return msgspec.convert(list(defs), list[ToolDef])


def tool_choice(choice: object) -> ToolChoiceOption:
    return msgspec.convert(choice, ToolChoiceOption)  # type: ignore[arg-type]
