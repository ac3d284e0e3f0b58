"""The mock in OpenAI's Responses shape (``POST /v1/responses``), streamed or not.

As OpenAI's API reference has it (github.com/openai/openai-openapi): a
``response`` object whose ``output`` holds a ``reasoning`` item (its summary
when the request asks ``reasoning.summary``), then the ``message`` with one
``output_text`` part, or a ``function_call`` item under ``[mock:tool]``
(the first function tool declared, with arguments that match its parameters'
schema). Streamed: the semantic events, each with its ``sequence_number``,
ended by ``response.completed`` (no ``[DONE]``). ``max_output_tokens``
shorter than the answer (reasoning counts against it) cuts it: status
``incomplete``, ``incomplete_details.reason`` ``max_output_tokens``, and
``response.incomplete`` ends the stream.

The mock keeps no responses: a request naming ``previous_response_id`` gets
the 400 OpenAI gives for an id it does not know (a gateway must never send one).
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import msgspec

from loadtest.mock_upstream.answer import Answer, ToolCall
from loadtest.mock_upstream.schema_instance import instance
from loadtest.mock_upstream.sse import Frame, data_frame

# OpenAI's own floor for max_output_tokens.
MIN_OUTPUT_TOKENS = 16
# Characters the real API pads delta events with (``obfuscation``) unless
# ``stream_options.include_obfuscation`` is false.
_PAD = "q7Xv2LmR9kTz4WbN"

_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def error(status: int, message: str | None = None, param: str | None = None, code: str | None = None) -> dict:
    kind, default_code = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {
        "error": {
            "message": message or f"mock error {status}",
            "type": kind,
            "param": param,
            "code": code or default_code,
        }
    }


def refuse(req: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 OpenAI answers before any model runs, or None."""
    previous = req.get("previous_response_id")
    if previous is not None:
        message = f"Previous response with id '{previous}' not found."
        return error(400, message, "previous_response_id", "previous_response_not_found")
    limit = req.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit < MIN_OUTPUT_TOKENS:
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. "
            f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
        )
        return error(400, message, "max_output_tokens", "integer_below_min_value")
    return None


def _parts_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for part in content or ():
        if "text" in part:
            texts.append(str(part["text"]))
        elif "refusal" in part:
            texts.append(str(part["refusal"]))
    return " ".join(texts)


def _item_text(item: dict[str, Any]) -> str:
    """The text of one input item: a message's, or a tool result's."""
    kind = item.get("type", "message")
    if kind == "message":
        return _parts_text(item["content"])
    if kind in ("function_call_output", "custom_tool_call_output"):
        return _parts_text(item.get("output"))
    return ""  # a call the model made before, a reasoning item, a reference


def _items(req: dict[str, Any]) -> list[dict[str, Any]]:
    given = req["input"]
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    if not isinstance(given, list):
        raise TypeError("input is a string or a list of items")
    return given


def read(req: dict[str, Any]) -> tuple[str, str, int, list[tuple[str, dict]]]:
    """As the other shapes read theirs: the prompt (instructions, then every
    item's text), the last item's text, how many messages, and the function
    tools declared (name, parameters' schema)."""
    texts = [_item_text(item) for item in _items(req)]
    instructions = req.get("instructions")
    system = [instructions] if isinstance(instructions, str) and instructions else []
    tools = [
        (t["name"], t["parameters"] if isinstance(t.get("parameters"), dict) else {})
        for t in req.get("tools") or ()
        if t.get("type") == "function" and "name" in t
    ]
    return "\n".join(system + texts), texts[-1] if texts else "", len(system) + len(texts), tools


def structured(req: dict[str, Any]) -> tuple[dict | None, bool]:
    """The JSON Schema ``text.format`` asks the answer to match, and whether
    the conversation already holds an answer (a request to repair one)."""
    text = req.get("text") if isinstance(req.get("text"), dict) else {}
    fmt = text.get("format") if isinstance(text.get("format"), dict) else {}
    schema = fmt.get("schema") if fmt.get("type") == "json_schema" else None
    items = req.get("input") if isinstance(req.get("input"), list) else []
    answered = any(
        isinstance(i, dict) and (i.get("role") == "assistant" or i.get("type") == "function_call") for i in items
    )
    return (schema if isinstance(schema, dict) else None), answered


def with_arguments(a: Answer, tools: list[tuple[str, dict]], last: str) -> Answer:
    """The tool call with arguments valid for the tool's parameters' schema
    (with ``echo``, its first string argument carries the last message)."""
    if a.tool is None:
        return a
    schema = next(s for name, s in tools if name == a.tool.name)
    args = instance(schema) if schema else {}
    if not isinstance(args, dict):
        args = {}
    props = schema.get("properties") or {}
    first = (schema.get("required") or list(props))[:1]
    if a.behaviour.echo and first and (props.get(first[0]) or {}).get("type", "string") == "string":
        args[first[0]] = last
    tool = ToolCall(id=a.tool.id, name=a.tool.name, arguments=args)
    visible = 0 if a.behaviour.zero_usage else 1 + len(tool.arguments_json) // 4
    return msgspec.structs.replace(a, tool=tool, completion_tokens=visible + a.reasoning_tokens)


class _Outcome(msgspec.Struct):
    """What the answer comes to once ``max_output_tokens`` has had its say."""

    words: list[str]
    tool: ToolCall | None
    summary: str | None
    reasoning_item: bool
    reasoning_tokens: int
    output_tokens: int
    incomplete: bool


def _summary_asked(req: dict[str, Any]) -> bool:
    reasoning = req.get("reasoning")
    if not isinstance(reasoning, dict):
        return False
    return reasoning.get("summary") is not None or reasoning.get("generate_summary") is not None


def _outcome(a: Answer, req: dict[str, Any]) -> _Outcome:
    summary = None
    if _summary_asked(req):
        what = f"call {a.tool.name}" if a.tool is not None else f"answer in {len(a.words)} pieces"
        summary = f"**Planning the answer**\n\nThe mock upstream will {what}."
    visible_needed = len(a.words) if a.tool is None else 1 + len(a.tool.arguments_json) // 4
    reasoning = a.reasoning_tokens
    words, tool, incomplete = a.words, a.tool, False
    limit = req.get("max_output_tokens")
    if isinstance(limit, int) and reasoning + visible_needed > limit:
        incomplete = True
        reasoning = min(reasoning, limit)
        room = limit - reasoning
        words = a.words[:room]
        tool = None  # a call whose arguments do not fit is not made
    if a.behaviour.zero_usage:
        visible = 0
    elif tool is not None:
        visible = 1 + len(tool.arguments_json) // 4
    else:
        visible = len(words)
    return _Outcome(
        words=words,
        tool=tool,
        summary=summary,
        reasoning_item=isinstance(req.get("reasoning"), dict) or a.reasoning_tokens > 0,
        reasoning_tokens=reasoning,
        output_tokens=visible + reasoning,
        incomplete=incomplete,
    )


def _usage(a: Answer, o: _Outcome) -> dict[str, Any]:
    return {
        "input_tokens": a.prompt_tokens,
        "input_tokens_details": {"cached_tokens": a.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": o.output_tokens,
        "output_tokens_details": {"reasoning_tokens": o.reasoning_tokens},
        "total_tokens": a.prompt_tokens + o.output_tokens,
    }


def counted(a: Answer, req: dict[str, Any]) -> tuple[int, int]:
    """The input and output tokens the answer's usage says (``max_output_tokens`` had its say)."""
    usage = _usage(a, _outcome(a, req))
    return usage["input_tokens"], usage["output_tokens"]


def _tool_echo(tool: Any) -> Any:
    """A declared tool as the response lists it: function tools with every field."""
    if not isinstance(tool, dict) or tool.get("type") != "function":
        return tool
    strict = tool.get("strict")
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": True if strict is None else strict,
    }


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


class _Ids(msgspec.Struct):
    response: str
    reasoning: str
    message: str
    call: str
    created_at: int


def _ids(a: Answer) -> _Ids:
    stamp = time.time_ns()
    tag = hashlib.sha1(f"{stamp}:{a.text}".encode()).hexdigest()[:24]
    call = "fc_mock" + (a.tool.id.removeprefix("call_mock_") if a.tool is not None else tag)
    return _Ids(f"resp_mock{tag}", f"rs_mock{tag}", f"msg_mock{tag}", call, int(stamp // 1_000_000_000))


def _response(req: dict[str, Any], ids: _Ids, status: str, output: list, usage: dict | None) -> dict[str, Any]:
    reasoning = req.get("reasoning") if isinstance(req.get("reasoning"), dict) else {}
    text = req.get("text") if isinstance(req.get("text"), dict) else {}
    body: dict[str, Any] = {
        "id": ids.response,
        "object": "response",
        "created_at": ids.created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": req.get("max_tool_calls"),
        "model": req.get("model", "mock"),
        "output": output,
        "parallel_tool_calls": _or(req.get("parallel_tool_calls"), True),
        "previous_response_id": None,
        "prompt_cache_key": req.get("prompt_cache_key"),
        "reasoning": {
            "effort": reasoning.get("effort"),
            "summary": _or(reasoning.get("summary"), reasoning.get("generate_summary")),
        },
        "safety_identifier": req.get("safety_identifier"),
        "service_tier": "default",
        "store": _or(req.get("store"), True),
        "temperature": _or(req.get("temperature"), 1.0),
        "text": {
            "format": _or(text.get("format"), {"type": "text"}),
            "verbosity": _or(text.get("verbosity"), "medium"),
        },
        "tool_choice": _or(req.get("tool_choice"), "auto"),
        "tools": [_tool_echo(t) for t in req.get("tools") or ()],
        "top_logprobs": _or(req.get("top_logprobs"), 0),
        "top_p": _or(req.get("top_p"), 1.0),
        "truncation": _or(req.get("truncation"), "disabled"),
        "metadata": _or(req.get("metadata"), {}),
    }
    if isinstance(req.get("user"), str):
        body["user"] = req["user"]
    if usage is not None:
        body["usage"] = usage
    return body


def _reasoning_item(req: dict[str, Any], ids: _Ids, summary: list[dict[str, str]]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": ids.reasoning, "type": "reasoning", "summary": summary}
    if "reasoning.encrypted_content" in (req.get("include") or ()):
        item["encrypted_content"] = base64.b64encode(f"mock reasoning of {ids.response}".encode()).decode()
    return item


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(ids: _Ids, content: list, status: str) -> dict[str, Any]:
    return {"id": ids.message, "type": "message", "status": status, "role": "assistant", "content": content}


def _call(ids: _Ids, tool: ToolCall, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": ids.call,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": tool.id,
        "name": tool.name,
    }


def _output(req: dict[str, Any], ids: _Ids, o: _Outcome) -> list[dict[str, Any]]:
    output = []
    if o.reasoning_item:
        summary = [{"type": "summary_text", "text": o.summary}] if o.summary is not None else []
        output.append(_reasoning_item(req, ids, summary))
    if o.tool is not None:
        output.append(_call(ids, o.tool, o.tool.arguments_json, "completed"))
    elif o.words or not o.incomplete:
        output.append(_message(ids, [_text_part("".join(o.words))], "incomplete" if o.incomplete else "completed"))
    return output


def complete(a: Answer, req: dict[str, Any]) -> dict[str, Any]:
    o = _outcome(a, req)
    ids = _ids(a)
    usage = None if a.behaviour.no_usage else _usage(a, o)
    return _response(req, ids, "incomplete" if o.incomplete else "completed", _output(req, ids, o), usage)


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream(a: Answer, req: dict[str, Any]) -> list[Frame]:
    o = _outcome(a, req)
    ids = _ids(a)
    options = req.get("stream_options") if isinstance(req.get("stream_options"), dict) else {}
    obfuscate = options.get("include_obfuscation") is not False
    frames: list[Frame] = []

    def event(kind: str, word: bool = False, **fields: Any) -> None:
        doc = {"type": kind, "sequence_number": len(frames), **fields}
        if word and obfuscate:
            doc["obfuscation"] = _PAD[: 16 - len(fields.get("delta", "")) % 16]
        frames.append(data_frame(doc, word, event=kind))

    event("response.created", response=_response(req, ids, "in_progress", [], None))
    event("response.in_progress", response=_response(req, ids, "in_progress", [], None))
    index = 0
    if o.reasoning_item:
        where = {"item_id": ids.reasoning, "output_index": index}
        event("response.output_item.added", output_index=index, item=_reasoning_item(req, ids, []))
        if o.summary is not None:
            part = {"type": "summary_text", "text": ""}
            event("response.reasoning_summary_part.added", **where, summary_index=0, part=part)
            for piece in _pieces(o.summary):
                event("response.reasoning_summary_text.delta", True, **where, summary_index=0, delta=piece)
            event("response.reasoning_summary_text.done", **where, summary_index=0, text=o.summary)
            part = {"type": "summary_text", "text": o.summary}
            event("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
        summary = [{"type": "summary_text", "text": o.summary}] if o.summary is not None else []
        event("response.output_item.done", output_index=index, item=_reasoning_item(req, ids, summary))
        index += 1
    if o.tool is not None:
        args = o.tool.arguments_json
        where = {"item_id": ids.call, "output_index": index}
        event("response.output_item.added", output_index=index, item=_call(ids, o.tool, "", "in_progress"))
        for piece in _pieces(args):
            event("response.function_call_arguments.delta", True, **where, delta=piece)
        event("response.function_call_arguments.done", **where, name=o.tool.name, arguments=args)
        event("response.output_item.done", output_index=index, item=_call(ids, o.tool, args, "completed"))
    elif o.words or not o.incomplete:
        text = "".join(o.words)
        status = "incomplete" if o.incomplete else "completed"
        where = {"item_id": ids.message, "output_index": index, "content_index": 0}
        event("response.output_item.added", output_index=index, item=_message(ids, [], "in_progress"))
        event("response.content_part.added", **where, part=_text_part(""))
        for w in o.words:
            event("response.output_text.delta", True, **where, delta=w, logprobs=[])
        event("response.output_text.done", **where, text=text, logprobs=[])
        event("response.content_part.done", **where, part=_text_part(text))
        event("response.output_item.done", output_index=index, item=_message(ids, [_text_part(text)], status))
    usage = None if a.behaviour.no_usage else _usage(a, o)
    final = _response(req, ids, "incomplete" if o.incomplete else "completed", _output(req, ids, o), usage)
    event("response.incomplete" if o.incomplete else "response.completed", response=final)
    return frames
