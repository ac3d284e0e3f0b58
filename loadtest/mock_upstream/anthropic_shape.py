"""The mock in Anthropic's Messages shape, streamed or not."""

from __future__ import annotations

import time
from typing import Any

from loadtest.mock_upstream.answer import Answer, count_prompt
from loadtest.mock_upstream.sse import Frame, data_frame

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _text(content: Any) -> str:
    """The text of a content field, tool results included."""
    if isinstance(content, str):
        return content
    texts = []
    for block in content or ():
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            texts.append(_text(block.get("content")))
    return " ".join(texts)


def read(req: dict[str, Any]) -> tuple[str, str, int, list[tuple[str, dict]]]:
    texts = [_text(m.get("content")) for m in req["messages"]]
    system = [_text(req["system"])] if req.get("system") else []
    # A deferred tool is not in the model's context until a tool search finds
    # it (Claude Code declares a placeholder first): the model cannot call it.
    seen = [t for t in req.get("tools") or () if "name" in t and not t.get("defer_loading")]
    tools = [(t["name"], t.get("input_schema") or {}) for t in seen]
    return "\n".join(system + texts), texts[-1] if texts else "", len(texts), tools


def count(prompt: str, messages: int) -> dict[str, Any]:
    """``POST /v1/messages/count_tokens``'s answer: the input tokens a message would report."""
    return {"input_tokens": count_prompt(prompt, messages)}


def _usage(a: Answer, output_tokens: int) -> dict[str, Any]:
    # Anthropic's input_tokens leaves out the tokens read from the cache.
    return {
        "input_tokens": a.prompt_tokens - a.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": a.cached_tokens,
        "output_tokens": output_tokens,
    }


def _message(a: Answer, model: str, content: list, stop: str | None, output_tokens: int) -> dict[str, Any]:
    return {
        "id": f"msg_mock{time.time_ns()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(a, output_tokens),
    }


def complete(a: Answer, model: str) -> dict[str, Any]:
    if a.tool is not None:
        content = [{"type": "tool_use", "id": a.tool.id, "name": a.tool.name, "input": a.tool.arguments}]
    else:
        content = [{"type": "text", "text": a.text}]
    return _message(a, model, content, "end_turn" if a.tool is None else "tool_use", a.completion_tokens)


def stream(a: Answer, model: str) -> list[Frame]:
    def event(kind: str, word: bool = False, **fields: Any) -> Frame:
        return data_frame({"type": kind, **fields}, word, event=kind)

    frames = [event("message_start", message=_message(a, model, [], None, 1)), event("ping")]
    if a.tool is None:
        frames.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
        frames += [
            event("content_block_delta", True, index=0, delta={"type": "text_delta", "text": w}) for w in a.words
        ]
    else:
        block = {"type": "tool_use", "id": a.tool.id, "name": a.tool.name, "input": {}}
        frames.append(event("content_block_start", index=0, content_block=block))
        args = a.tool.arguments_json
        frames += [
            event(
                "content_block_delta",
                True,
                index=0,
                delta={"type": "input_json_delta", "partial_json": args[i : i + 8]},
            )
            for i in range(0, len(args), 8)
        ]
    frames.append(event("content_block_stop", index=0))
    stop = "end_turn" if a.tool is None else "tool_use"
    frames.append(
        event(
            "message_delta",
            delta={"stop_reason": stop, "stop_sequence": None},
            usage={"output_tokens": a.completion_tokens},
        )
    )
    frames.append(event("message_stop"))
    return frames


def error(status: int) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"mock error {status}"}}
