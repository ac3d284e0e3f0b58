"""OpenAI's Responses API (``POST /v1/responses``) on the wire: the request,
the ``Response`` object (its stream events are ``schemas.response_events``), as OpenAI's published API
reference (github.com/openai/openai-openapi) describes them.

Items, tools and tool choices are tagged unions on ``type``. What Sluice does
not translate (a built-in tool such as ``web_search``, an item such as
``mcp_call``, a tool choice such as ``{"type": "file_search"}``) still
decodes: ``decode_request`` wraps it whole in ``KeptItem``, ``BuiltinTool``
or ``BuiltinChoice``, so OpenAI adding a type is never a 400 here, and
``wire`` turns the wrappers back into what the client sent.

Read a request with ``decode_request``, not a plain Decoder: OpenAI lets a
message item leave out its ``type`` (and an item reference too), which a
tagged union cannot read as it is.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.chat import Integral, integral

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


# -- content parts ----------------------------------------------------------
class _Part(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class InputText(_Part, tag="input_text"):
    text: str


class InputImage(_Part, tag="input_image"):
    # An https URL or a data URL; or the id of a file uploaded to OpenAI.
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(_Part, tag="input_file"):
    file_id: str | None = None
    filename: str | None = None
    # Base64, or a data URL.
    file_data: str | None = None
    file_url: str | None = None


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    """An answer's text. ``annotations`` and ``logprobs`` are required by
    OpenAI's schema (so always written, empty or not); Sluice makes neither
    and replays the client's as given."""

    text: str
    annotations: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] = []


class Refusal(_Part, tag="refusal"):
    refusal: str


class SummaryText(_Part, tag="summary_text"):
    text: str


class ReasoningText(_Part, tag="reasoning_text"):
    text: str


InputContent = InputText | InputImage | InputFile
# A message item's parts: input parts, and an answer's parts replayed in history.
MessageContent = InputText | InputImage | InputFile | OutputText | Refusal
OutputContent = OutputText | Refusal


# -- items ------------------------------------------------------------------
class _Item(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class MessageItem(_Item, tag="message"):
    """A message: the caller's (``EasyInputMessage``, ``InputMessage``) or
    the model's (``OutputMessage``: ``id``, ``status``, output parts)."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[MessageContent]
    id: str | None = None
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Item, tag="function_call"):
    call_id: str
    name: str
    # JSON text, as the model wrote it (it may not parse).
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None
    namespace: str | None = None


class FunctionCallOutputItem(_Item, tag="function_call_output"):
    # OpenAI's schema lets this be left out or null; no call can be answered
    # without it, so ``to_chat_body`` refuses that, naming the item.
    output: str | list[InputContent]
    call_id: str | None = None
    id: str | None = None
    status: ItemStatus | None = None


class ReasoningItem(_Item, tag="reasoning"):
    id: str
    # Required by OpenAI's schema, so written even when empty.
    summary: list[SummaryText]
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


class ItemReference(_Item, tag="item_reference"):
    """An earlier item by its id (only the store that made it can resolve it)."""

    id: str


class KeptItem(_Item, tag="kept_item"):
    """An item of a type Sluice does not translate (a built-in tool's call
    or output, an MCP item, a compaction, one OpenAI added later), kept as
    the client sent it: an OpenAI deployment gets it back unchanged."""

    item: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.item.get("type"))


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem | ItemReference | KeptItem
OutputItem = MessageItem | FunctionCallItem | ReasoningItem


# -- tools and tool choice --------------------------------------------------
class _Tool(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class FunctionTool(_Tool, tag="function", omit_defaults=False):
    """Every field is written, null or not: a ``Response`` echoes its tools,
    and OpenAI's schema requires ``parameters`` and ``strict`` there."""

    name: str
    # A JSON schema: free-form.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a function tool needs a 'name'")


class BuiltinTool(_Tool, tag="builtin_tool"):
    """A tool that runs on OpenAI's side (``web_search``, ``file_search``,
    ``code_interpreter``, ``computer_use_preview``, ``mcp``, ``custom``,
    ``local_shell``, ``image_generation``, ...), kept as the client sent it."""

    tool: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.tool.get("type"))


Tool = FunctionTool | BuiltinTool


class _Choice(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class ToolChoiceFunction(_Choice, tag="function"):
    name: str


class ToolChoiceAllowed(_Choice, tag="allowed_tools"):
    mode: Literal["auto", "required"]
    # Tool definitions by type and name ({"type": "function", "name": ...}):
    # free-form in OpenAI's schema.
    tools: list[dict[str, Any]]


class BuiltinChoice(_Choice, tag="builtin_choice"):
    """A choice of a built-in tool (``{"type": "file_search"}``, ``mcp``, ``custom``, ...), as sent."""

    choice: dict[str, Any]


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction | ToolChoiceAllowed | BuiltinChoice


# -- text format and reasoning ----------------------------------------------
class _Format(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class FormatText(_Format, tag="text"):
    pass


class FormatJsonSchema(_Format, tag="json_schema"):
    name: str
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class FormatJsonObject(_Format, tag="json_object"):
    pass


TextFormat = FormatText | FormatJsonSchema | FormatJsonObject


class TextConfig(msgspec.Struct, omit_defaults=True):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(msgspec.Struct):
    """Written whole in a ``Response`` (OpenAI sends both keys, null or not)."""

    effort: str | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class PromptTemplate(msgspec.Struct, omit_defaults=True):
    id: str
    version: str | None = None
    # Values of the template's variables: strings or input parts, free-form.
    variables: dict[str, Any] | None = None


class ConversationRef(msgspec.Struct):
    id: str


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_obfuscation: bool | None = None


# -- the request --------------------------------------------------------------
class ResponsesRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A create-response body. Unknown fields are ignored here; an OpenAI
    deployment gets them through the client's own body (pass-through)."""

    model: str
    input: str | list[Item] | None = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Integral | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: Integral | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: Integral | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    prompt: PromptTemplate | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None

    def __post_init__(self) -> None:
        for name in ("max_output_tokens", "max_tool_calls", "top_logprobs"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, integral(name, value, clamp=True))


# -- the response -------------------------------------------------------------
class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(msgspec.Struct):
    # One of OpenAI's ResponseErrorCode values (server_error, rate_limit_exceeded, invalid_prompt, ...).
    code: str
    message: str


class IncompleteDetails(msgspec.Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The response object. Fields without a default are always written:
    OpenAI's schema requires them (most may be null) and OpenAI sends the
    others of them too; ``usage`` and ``user`` are written only when known
    (the schema allows neither null)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: ResponseStatus
    background: bool | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | list[Item] | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None
    prompt_cache_key: str | None
    reasoning: Reasoning | None
    safety_identifier: str | None
    service_tier: str | None
    store: bool
    temperature: float | None
    text: TextConfig
    tool_choice: ToolChoice
    tools: list[Tool]
    top_logprobs: int | None
    top_p: float | None
    truncation: Literal["auto", "disabled"] | None
    metadata: dict[str, str]
    completed_at: int | None = None
    usage: ResponseUsage | None = None
    user: str | None = None


# -- reading and writing ------------------------------------------------------
_ITEM_TYPES = frozenset(t.__struct_config__.tag for t in Item.__args__) - {"kept_item"}  # type: ignore[attr-defined]
_TYPED_CHOICES = frozenset({"function", "allowed_tools"})
# Wrapper tag -> the field that holds what the client sent.
_WRAPPERS = {"kept_item": "item", "builtin_tool": "tool", "builtin_choice": "choice"}
_decode_any = msgspec.json.Decoder().decode


def _item(doc: Any) -> Any:
    if not isinstance(doc, dict):
        return doc
    kind = doc.get("type")
    if kind is None:
        # OpenAI's EasyInputMessage and item reference may leave ``type`` out.
        if "role" in doc:
            return {**doc, "type": "message"}
        if "id" in doc:
            return {**doc, "type": "item_reference"}
        return doc
    return doc if kind in _ITEM_TYPES else {"type": "kept_item", "item": doc}


def _tool(doc: Any) -> Any:
    if isinstance(doc, dict) and doc.get("type") != "function":
        return {"type": "builtin_tool", "tool": doc}
    return doc


def _choice(doc: Any) -> Any:
    if isinstance(doc, dict) and doc.get("type") not in _TYPED_CHOICES:
        return {"type": "builtin_choice", "choice": doc}
    return doc


def wrapped_items(docs: Any) -> Any:
    """A JSON array of items as ``Item`` Structs read it (see ``decode_request``)."""
    return [_item(d) for d in docs] if isinstance(docs, list) else docs


def decode_request(raw: bytes | str) -> ResponsesRequest:
    """A create-response body. Raises msgspec's DecodeError or ValidationError
    (the latter naming the field, ``$.input[2].output``)."""
    doc = _decode_any(raw)
    if isinstance(doc, dict):
        doc["input"] = wrapped_items(doc.get("input"))
        if isinstance(doc.get("tools"), list):
            doc["tools"] = [_tool(t) for t in doc["tools"]]
        doc["tool_choice"] = _choice(doc.get("tool_choice"))
    return msgspec.convert(doc, ResponsesRequest)


def decode_response(raw: bytes | str) -> Response:
    """A response object in OpenAI's shape (as ``encode_wire`` writes it)."""
    doc = _decode_any(raw)
    if isinstance(doc, dict):
        if isinstance(doc.get("tools"), list):
            doc["tools"] = [_tool(t) for t in doc["tools"]]
        doc["tool_choice"] = _choice(doc.get("tool_choice"))
        if isinstance(doc.get("instructions"), list):
            doc["instructions"] = wrapped_items(doc["instructions"])
    return msgspec.convert(doc, Response)


def decode_items(raw: bytes | str) -> list[Item]:
    """A JSON array of items in OpenAI's shape (what ``encode_wire`` writes)."""
    return msgspec.convert(wrapped_items(_decode_any(raw)), list[Item])


def _unwrap(node: Any) -> Any:
    if isinstance(node, dict):
        inner = _WRAPPERS.get(node.get("type"))  # type: ignore[arg-type]
        if inner is not None and len(node) == 2 and inner in node:
            return node[inner]
        return {k: _unwrap(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unwrap(v) for v in node]
    return node


def wire(value: Any) -> Any:
    """``value`` (a Struct, or a list of them) as JSON-ready builtins in
    OpenAI's shape: every kept item, built-in tool and built-in tool choice
    as the client sent it."""
    return _unwrap(msgspec.to_builtins(value))


_encode = msgspec.json.Encoder().encode


def encode_wire(value: Any) -> bytes:
    """``value`` as OpenAI's JSON (see ``wire``)."""
    return _encode(wire(value))
