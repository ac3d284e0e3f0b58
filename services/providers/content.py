"""Small translations every non-OpenAI family needs: image parts, tool calls,
system prompts, out of the unified (OpenAI) shapes."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import Message
from schemas.errors import InvalidRequest
from services.tokens import content_text

_decode_json = msgspec.json.Decoder(Any).decode
_encode_json = msgspec.json.Encoder().encode


def data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ("image/png", "AAAA"); None for other URLs."""
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    if encoding != "base64":
        raise InvalidRequest("Image data URLs must be base64-encoded.")
    return mime or "application/octet-stream", data


def image_url_of(part: dict[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("An image_url content part needs a 'url'.")
    return url


def arguments_object(arguments: str | dict | None) -> dict[str, Any]:
    """A tool call's JSON-encoded arguments as an object."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = _decode_json(arguments)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Tool call arguments are not valid JSON: {exc}.") from exc
    return value if isinstance(value, dict) else {"value": value}


def arguments_json(value: Any) -> str:
    return _encode_json(value if value is not None else {}).decode()


def tool_call(call_id: str, name: str, arguments: str, index: int | None = None) -> dict[str, Any]:
    """A tool call in OpenAI's shape (``index`` only in stream deltas)."""
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if index is not None:
        call["index"] = index
    return call


def split_system(messages: list[Message]) -> tuple[str | None, list[Message]]:
    """System and developer messages joined into one prompt, and the rest."""
    system = [content_text(m.content) for m in messages if m.role in ("system", "developer")]
    rest = [m for m in messages if m.role not in ("system", "developer")]
    return ("\n\n".join(system) if system else None), rest


def function_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The ``function`` objects of OpenAI tool definitions."""
    out = []
    for tool in tools or ():
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or "name" not in fn:
            raise InvalidRequest("Only function tools with a 'name' can be translated for this provider.")
        out.append(fn)
    return out


def forced_tool(tool_choice: str | dict[str, Any] | None) -> str | None:
    """The function name a ``tool_choice`` object forces, if any."""
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        if isinstance(fn, dict):
            return fn.get("name")
    return None
