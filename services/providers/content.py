"""Small translations every non-OpenAI family needs: image parts, tool calls,
system prompts, out of the unified (OpenAI) shapes."""

from __future__ import annotations

import mimetypes
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


def part_text(part: dict[str, Any]) -> str | None:
    """The text of a text part, or of a refusal part (an assistant turn's
    refusal, replayed in history, is what the model said); None for others."""
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind == "refusal":
        return str(part.get("refusal", ""))
    return None


def inline_file(part: dict[str, Any]) -> tuple[str, str]:
    """(mime type, base64 data) of a ``file`` part that carries its data."""
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise InvalidRequest("A file part must carry 'file_data' here: uploaded file ids are OpenAI's own.")
    inline = data_url(data)
    if inline:
        return inline
    return mimetypes.guess_type(str(file.get("filename") or ""))[0] or "application/pdf", data


def inline_audio(part: dict[str, Any]) -> tuple[str, str]:
    """(mime type, base64 data) of an ``input_audio`` part."""
    audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
    fmt = str(audio.get("format") or "wav")
    return ("audio/mpeg" if fmt == "mp3" else f"audio/{fmt}"), str(audio.get("data") or "")


def image_url_of(part: dict[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("An image_url content part needs a 'url'.")
    return url


def arguments_object(arguments: str | dict | None) -> dict[str, Any]:
    """A tool call's JSON-encoded arguments as the object Anthropic and Gemini
    want. OpenAI types them as a string and a model can emit broken JSON;
    replayed in history, such a call keeps its text under "arguments"."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    if not isinstance(arguments, str):  # loose JSON from a caller: a number, a list
        return {"value": arguments}
    try:
        value = _decode_json(arguments)
    except msgspec.DecodeError:
        return {"arguments": arguments}
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
