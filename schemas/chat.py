"""The unified chat format: OpenAI's chat-completions shape, as the gateway
carries it between stages. Provider adapters translate to and from it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# "reported": the upstream said so; "counted": our tokenizer is the model's
# own (OpenAI families); "estimated": counted with a stand-in tokenizer.
UsageSource = Literal["reported", "counted", "estimated"]
# What a non-token price counts (``Usage.unit``): images made, milliseconds
# of audio heard, characters spoken, rerank search units.
Unit = Literal["", "image", "audio_ms", "character", "search_unit"]


# JSON Schema's "integer" admits 1.0, and OpenAI's document types these fields
# so: a client (or a language without integers) that writes 1.0 is right.
# Declared int | float on the wire and made int here, so a stage always sees an int.
Integral = int | float
_INT64 = 2**63


def integral(name: str, value: Integral | None, *, clamp: bool = False) -> int | None:
    """``value`` as an int if it is a whole number, else a ValueError (msgspec
    turns it into a ValidationError naming the field). Outside 64 bits it is
    refused, or with ``clamp`` (limits and seeds: OpenAI's schema bounds them
    not at all) brought to the nearest 64-bit value."""
    if value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"'{name}' must be an integer, got {value}")
        value = int(value)
    if not -_INT64 <= value < _INT64:
        if not clamp:
            raise ValueError(f"'{name}' is out of range: {value}")
        value = max(-_INT64, min(value, _INT64 - 1))
    return value


class _Part(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class TextPart(_Part, tag="text"):
    text: str


class ImageUrl(msgspec.Struct, omit_defaults=True):
    # An https URL or a data URL (data:image/png;base64,...).
    url: str
    detail: str | None = None


class ImagePart(_Part, tag="image_url"):
    image_url: ImageUrl


class InputAudio(msgspec.Struct, omit_defaults=True):
    data: str  # base64
    format: str = "wav"


class AudioPart(_Part, tag="input_audio"):
    input_audio: InputAudio


class FileRef(msgspec.Struct, omit_defaults=True):
    # Inline (base64 or a data URL), or an id of a file uploaded to OpenAI.
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Part, tag="file"):
    file: FileRef


class RefusalPart(_Part, tag="refusal"):
    """An assistant turn's refusal, replayed in history."""

    refusal: str


# OpenAI's chat content parts; a part of another type is the caller's 400.
ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class FunctionCall(msgspec.Struct, omit_defaults=True):
    name: str = ""
    # JSON text, as the model wrote it (it may not parse).
    arguments: str = ""


class ToolCall(msgspec.Struct, tag_field="type", tag="function", omit_defaults=True):
    """A complete function call of an assistant message."""

    id: str = ""
    function: FunctionCall = msgspec.field(default_factory=FunctionCall)


class CustomCall(msgspec.Struct, omit_defaults=True):
    name: str = ""
    input: str = ""


class CustomToolCall(msgspec.Struct, tag_field="type", tag="custom", omit_defaults=True):
    """A call of an OpenAI custom (free-text) tool; only OpenAI's family takes these."""

    id: str = ""
    custom: CustomCall = msgspec.field(default_factory=CustomCall)


class FunctionDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True):
    """A piece of a streamed tool call: the first names it (id, function
    name), the rest carry more of its arguments; ``index`` says which call."""

    # Required on the wire (OpenAI's SDKs join deltas by it), so no default
    # that omit_defaults would leave out.
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta | None = None


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall | CustomToolCall] | None = None
    # A string on a tool message. OpenAI's schema lets other messages carry
    # extra fields of any type; this one means nothing there and is dropped.
    tool_call_id: str | int | float | bool | list[Any] | dict[str, Any] | None = None
    # An answer's reasoning summary, as the backend gave it (OpenAI's
    # Responses API); what an assistant message in history says it thought.
    reasoning: str | None = None

    def __post_init__(self) -> None:
        if self.role != "tool":
            self.tool_call_id = None
        elif self.tool_call_id is not None and not isinstance(self.tool_call_id, str):
            raise ValueError("'tool_call_id' of a tool message must be a string")


def content_text(content: str | list[ContentPart] | None) -> str:
    """The text of a message's content: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content or () if isinstance(p, TextPart))


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False


# -- tool definitions and tool choice (OpenAI's ChatCompletionTool,
# CustomToolChatCompletions and ChatCompletionToolChoiceOption) -------------
class FunctionDef(msgspec.Struct, omit_defaults=True):
    """A function the model may call. Fields in OpenAI's order: encoded, a
    definition is the JSON the client wrote (without its nulls)."""

    name: str
    description: str | None = None
    # A JSON schema: free-form (and so the one place of a tool where an
    # integer past 64 bits can sit: ``bus.widen_huge_ints``).
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomDef(msgspec.Struct, omit_defaults=True):
    """An OpenAI custom tool: the model writes its input as free text, or in
    the grammar ``format`` gives; only OpenAI's family has them."""

    name: str
    description: str | None = None
    # {"type": "text"} or {"type": "grammar", "grammar": {...}}: free-form.
    format: dict[str, Any] | None = None


class ToolDef(msgspec.Struct, omit_defaults=True):
    """A tool definition. Not a tagged union: OpenAI adds tool types, and a
    tool of a type this does not name still decodes, as its ``type`` alone
    (``passthrough.worth_keeping`` then keeps the client's body, so an OpenAI
    deployment gets it whole; other families refuse it). ``type`` is
    required, as in OpenAI's schema, so it is always encoded."""

    type: str
    function: FunctionDef | None = None
    custom: CustomDef | None = None


class NamedTool(msgspec.Struct):
    name: str


class AllowedTools(msgspec.Struct):
    mode: Literal["auto", "required"]
    # Tool definitions by type and name ({"type": "function", "function":
    # {"name": ...}}): free-form in OpenAI's schema.
    tools: list[dict[str, Any]]


class ToolChoice(msgspec.Struct, omit_defaults=True):
    """A ``tool_choice`` object: a named function or custom tool, or the
    tools the model may pick from (``allowed_tools``). A plain struct with a
    ``type``, as ``ToolDef`` is, so a choice of a type added later decodes."""

    type: str
    function: NamedTool | None = None
    custom: NamedTool | None = None
    allowed_tools: AllowedTools | None = None


ToolChoiceOption = Literal["none", "auto", "required"] | ToolChoice


class ChatBody(msgspec.Struct, omit_defaults=True):
    """A chat-completions request body. Unknown JSON fields are ignored."""

    model: str
    messages: list[Message]
    # OpenAI's schema allows null here (read as false).
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: Integral | None = None
    max_tokens: Integral | None = None
    max_completion_tokens: Integral | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: Integral | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoiceOption | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Integral | None = None

    def __post_init__(self) -> None:
        for name in ("n", "max_tokens", "max_completion_tokens", "seed", "top_logprobs"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, integral(name, value, clamp=name != "n"))


class Usage(msgspec.Struct, omit_defaults=True):
    # Every input token, cached ones included (Anthropic reports them apart;
    # its adapter adds them up).
    prompt_tokens: int = 0
    # Every output token, reasoning ones included (Gemini reports them apart).
    completion_tokens: int = 0
    # Of prompt_tokens: read from the provider's prompt cache, at its price.
    cached_tokens: int = 0
    # Of prompt_tokens: written to the provider's prompt cache (Anthropic bills these higher).
    cache_write_tokens: int = 0
    # Of completion_tokens: spent thinking.
    reasoning_tokens: int = 0
    source: UsageSource = "reported"
    # What a request priced by something other than tokens used
    # (``schemas.tasks.Unit``): images made, ms of audio, characters spoken,
    # rerank search units. A request may have both (an image model that
    # reports tokens and is priced per image bills the images alone).
    units: int = 0
    unit: Unit = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Delta(msgspec.Struct, omit_defaults=True):
    """One streamed increment of the answer; ``index`` is the choice it
    belongs to when a request asked for several (``n``)."""

    index: int = 0
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: str | None = None
    # More of the answer's reasoning summary (see ``Message.reasoning``).
    reasoning: str | None = None


class Choice(msgspec.Struct, omit_defaults=True):
    """One of several answers to a request with ``n`` > 1."""

    index: int
    message: Message
    finish_reason: str | None = None


class Cost(msgspec.Struct, omit_defaults=True):
    """A request's cost in integer pico-USD, split by what was billed."""

    # Uncached input, cache writes included.
    input: int = 0
    cached_input: int = 0
    output: int = 0
    # A price per call (an MCP tool's), whatever it read or returned.
    call: int = 0
    # Priced per unit (``Usage.units``): images, audio, characters, search units.
    units: int = 0

    @property
    def total(self) -> int:
        return self.input + self.cached_input + self.output + self.call + self.units


class EmbeddingsBody(msgspec.Struct, omit_defaults=True):
    """An embeddings request body, OpenAI's shape."""

    model: str
    # A text, a list of texts, a token array, or a list of token arrays
    # (msgspec takes one list type per union, so the list's items are checked
    # for being all alike by the ingress).
    input: str | list[str | int | list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Integral | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        self.dimensions = integral("dimensions", self.dimensions)
