"""The mock in OpenAI's shape: chat completions (streamed or not) and embeddings."""

from __future__ import annotations

import time
from typing import Any

from loadtest.mock_upstream.answer import Answer, vector
from loadtest.mock_upstream.sse import Frame, data_frame


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def read(req: dict[str, Any]) -> tuple[str, str, int, list[tuple[str, dict]]]:
    messages = req["messages"]
    texts = [text_of(m.get("content")) for m in messages]
    tools = [
        (t["function"]["name"], t["function"].get("parameters") or {})
        for t in req.get("tools") or ()
        if "function" in t
    ]
    return "\n".join(texts), texts[-1] if texts else "", len(messages), tools


def _usage(a: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": a.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": a.reasoning_tokens},
    }


def _common(model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-mock-{time.time_ns()}", "created": int(time.time()), "model": model}


def complete(a: Answer, model: str) -> dict[str, Any]:
    choices = []
    for k in range(a.choices):
        message: dict[str, Any] = {"role": "assistant", "content": "".join(a.words_of(k)) if a.tool is None else None}
        if a.tool is not None:
            call = {"name": a.tool.name, "arguments": a.tool.arguments_json}
            message["tool_calls"] = [{"id": a.tool.id, "type": "function", "function": call}]
        choices.append({"index": k, "message": message, "finish_reason": "stop" if a.tool is None else "tool_calls"})
    body = {**_common(model), "object": "chat.completion", "choices": choices}
    if not a.behaviour.no_usage:
        body["usage"] = _usage(a)
    return body


def stream(a: Answer, model: str, want_usage: bool) -> list[Frame]:
    common = {**_common(model), "object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None, word: bool = True, index: int = 0) -> Frame:
        return data_frame({**common, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}, word)

    frames = [chunk({"role": "assistant", "content": ""}, word=False)]
    frames += [chunk({"content": w}) for w in a.words]
    for k in range(1, a.choices):  # n > 1: each further choice after the first, as OpenAI may order them
        frames.append(chunk({"role": "assistant", "content": ""}, word=False, index=k))
        frames += [chunk({"content": w}, index=k) for w in a.words_of(k)]
        frames.append(chunk({}, "stop", word=False, index=k))
    if a.tool is not None:
        args = a.tool.arguments_json
        head = {"index": 0, "id": a.tool.id, "type": "function", "function": {"name": a.tool.name, "arguments": ""}}
        frames.append(chunk({"tool_calls": [head]}))
        frames += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 8]}}]})
            for i in range(0, len(args), 8)
        ]
    frames.append(chunk({}, "stop" if a.tool is None else "tool_calls", word=False))
    if want_usage and not a.behaviour.no_usage:
        frames.append(data_frame({**common, "choices": [], "usage": _usage(a)}, False))
    frames.append(Frame(b"data: [DONE]\n\n", False))
    return frames


def error(status: int) -> dict[str, Any]:
    return {"error": {"message": f"mock error {status}", "type": "mock_error", "code": f"mock_{status}"}}


# OpenAI's own limits: at most 2048 inputs, and no model above 3072 dimensions.
MAX_INPUTS = 2048
MAX_DIMENSIONS = 3072


def embeddings(req: dict[str, Any]) -> dict[str, Any]:
    """Raises ValueError for what OpenAI refuses with a 400."""
    inputs = req["input"]
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dims = int(req.get("dimensions") or 8)
    if not 1 <= dims <= MAX_DIMENSIONS or len(inputs) > MAX_INPUTS:
        raise ValueError(f"dimensions must be 1..{MAX_DIMENSIONS} and inputs at most {MAX_INPUTS}")
    data = [{"object": "embedding", "index": i, "embedding": vector(str(x), dims)} for i, x in enumerate(inputs)]
    tokens = sum(len(x.split()) if isinstance(x, str) else len(x) for x in inputs)
    return {
        "object": "list",
        "data": data,
        "model": req.get("model", "mock"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
