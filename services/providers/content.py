"""Small translations every non-OpenAI family needs: image parts, tool calls,
system prompts, out of the unified (OpenAI) shapes."""

from __future__ import annotations

import mimetypes
from typing import Any

import msgspec

from schemas.chat import (
    AudioPart,
    ChatBody,
    ContentPart,
    FilePart,
    FunctionCall,
    FunctionDef,
    FunctionDelta,
    Message,
    RefusalPart,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceOption,
    ToolDef,
    content_text,
)
from schemas.errors import InvalidRequest

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


def part_text(part: ContentPart) -> str | None:
    """The text of a text part, or of a refusal part (an assistant turn's
    refusal, replayed in history, is what the model said); None for others."""
    if isinstance(part, TextPart):
        return part.text
    if isinstance(part, RefusalPart):
        return part.refusal
    return None


def inline_file(part: FilePart) -> tuple[str, str]:
    """(mime type, base64 data) of a ``file`` part that carries its data."""
    data = part.file.file_data
    if not data:
        raise InvalidRequest("A file part must carry 'file_data' here: uploaded file ids are OpenAI's own.")
    inline = data_url(data)
    if inline:
        return inline
    return mimetypes.guess_type(part.file.filename or "")[0] or "application/pdf", data


def inline_audio(part: AudioPart) -> tuple[str, str]:
    """(mime type, base64 data) of an ``input_audio`` part."""
    fmt = part.input_audio.format or "wav"
    return ("audio/mpeg" if fmt == "mp3" else f"audio/{fmt}"), part.input_audio.data


def arguments_object(arguments: str) -> dict[str, Any]:
    """A tool call's JSON-encoded arguments as the object Anthropic and Gemini
    want. A model can emit broken JSON; replayed in history, such a call
    keeps its text under "arguments"."""
    if not arguments:
        return {}
    try:
        value = _decode_json(arguments)
    except msgspec.DecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def arguments_json(value: Any) -> str:
    return _encode_json(value if value is not None else {}).decode()


def function_calls(m: Message, family: str) -> list[ToolCall]:
    """A message's tool calls, all of them function calls: custom tools are OpenAI's own."""
    calls = []
    for call in m.tool_calls or ():
        if not isinstance(call, ToolCall):
            raise InvalidRequest(f"Custom tool calls cannot be sent to {family} model.")
        calls.append(call)
    return calls


def tool_call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


def tool_call_start(index: int, call_id: str, name: str, arguments: str = "") -> ToolCallDelta:
    """The first delta of a streamed tool call: it names the call."""
    return ToolCallDelta(
        index=index, id=call_id, type="function", function=FunctionDelta(name=name, arguments=arguments)
    )


def tool_call_more(index: int, arguments: str) -> ToolCallDelta:
    """A later delta of a streamed tool call: more of its arguments."""
    return ToolCallDelta(index=index, function=FunctionDelta(arguments=arguments))


def one_choice(body: ChatBody, family: str) -> None:
    """A family that answers once per call cannot give ``n`` > 1 choices;
    saying so beats answering fewer than asked."""
    if body.n is not None and body.n > 1:
        raise InvalidRequest(f"{family} models give one answer per request: n must be 1.", code="n_not_supported")


def split_system(messages: list[Message]) -> tuple[str | None, list[Message]]:
    """System and developer messages joined into one prompt, and the rest."""
    system = [content_text(m.content) for m in messages if m.role in ("system", "developer")]
    rest = [m for m in messages if m.role not in ("system", "developer")]
    return ("\n\n".join(system) if system else None), rest


def function_tools(tools: list[ToolDef] | None) -> list[FunctionDef]:
    """The functions of OpenAI tool definitions; a tool of another type
    (custom, or one OpenAI added) is OpenAI's own: the caller's 400."""
    out = []
    for i, tool in enumerate(tools or ()):
        if tool.type != "function" or tool.function is None:
            what = f"of type '{tool.type}'" if tool.type != "function" else "a function tool without its 'function'"
            raise InvalidRequest(f"Only function tools can be translated for this provider: tools[{i}] is {what}.")
        out.append(tool.function)
    return out


def forced_tool(tool_choice: ToolChoiceOption | None) -> str | None:
    """The function name a ``tool_choice`` object forces, if any."""
    if isinstance(tool_choice, ToolChoice) and tool_choice.function is not None:
        return tool_choice.function.name
    return None
