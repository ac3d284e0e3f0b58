"""OpenAI's Responses shapes for the ``/v1/responses`` front door: a
create-response request -> the unified request, and unified replies -> the
``Response`` object and its stream events, whatever provider served them.

A conversation continued with ``previous_response_id`` is the stored items
followed by the request's own: ``to_chat_body`` takes them as one list.
What the unified request cannot carry (built-in tools, items of OpenAI's own
tools, image and file references by URL-less id) is named by
``builtin_tools`` and ``openai_only_items``, so that the provider stage can
refuse it for a deployment that is not OpenAI's; an OpenAI deployment gets
the client's own body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import (
    AllowedTools,
    ChatBody,
    ContentPart,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    Message,
    NamedTool,
    RefusalPart,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolChoiceOption,
    ToolDef,
    Usage,
    content_text,
)
from schemas.errors import ErrorType, InvalidRequest
from schemas.responses import (
    BuiltinChoice,
    BuiltinTool,
    FormatJsonObject,
    FormatJsonSchema,
    FormatText,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    IncompleteDetails,
    InputFile,
    InputImage,
    InputText,
    InputTokensDetails,
    Item,
    ItemReference,
    ItemStatus,
    KeptItem,
    MessageItem,
    OutputItem,
    OutputText,
    OutputTokensDetails,
    Reasoning,
    ReasoningItem,
    Refusal,
    Response,
    ResponseError,
    ResponsesRequest,
    ResponseStatus,
    ResponseUsage,
    SummaryText,
    TextConfig,
    ToolChoiceAllowed,
    ToolChoiceFunction,
    encode_wire,
)

_json = msgspec.json.Encoder()

# -- request -> unified ---------------------------------------------------------


def items_of(input: str | list[Item] | None) -> list[Item]:
    """A request's ``input`` as items: a string is one user message."""
    if input is None:
        return []
    if isinstance(input, str):
        return [MessageItem(role="user", content=input)]
    return list(input)


def builtin_tools(request: ResponsesRequest) -> list[str]:
    """The types of the request's tools that run on OpenAI's side (``web_search``, ``mcp``, ...)."""
    return [t.kind for t in request.tools or () if isinstance(t, BuiltinTool)]


def openai_only_items(request: ResponsesRequest, input_items: list[Item]) -> list[str]:
    """What of the conversation (``input_items``, as ``to_chat_body`` takes
    them) the unified request leaves out because only OpenAI reads it, each
    named as ``input[2] (web_search_call)``: items of OpenAI's own tools, item
    references, images and files given only by an id or a URL."""
    offset = len(input_items) - len(items_of(request.input))
    found = []
    for i, item in enumerate(input_items):
        where = _name(i, offset)
        if isinstance(item, KeptItem | ItemReference):
            found.append(f"{where} ({item.kind if isinstance(item, KeptItem) else 'item_reference'})")
        elif isinstance(item, MessageItem) and isinstance(item.content, list):
            for j, part in enumerate(item.content):
                if isinstance(part, InputImage) and not part.image_url:
                    found.append(f"{where}.content[{j}] (input_image by file_id)")
                elif isinstance(part, InputFile) and not (part.file_data or part.file_id):
                    found.append(f"{where}.content[{j}] (input_file by file_url)")
    return found


def _part(part: Any, where: str) -> ContentPart | None:
    """One content part in chat's shape; None for one only OpenAI reads."""
    match part:
        case InputText(text=text) | OutputText(text=text):
            return TextPart(text=text)
        case Refusal(refusal=refusal):
            return RefusalPart(refusal=refusal)
        case InputImage(image_url=url, file_id=file_id, detail=detail):
            if url:
                return ImagePart(image_url=ImageUrl(url=url, detail=detail))
            if file_id:
                return None
            raise InvalidRequest(f"Invalid '{where}': an input_image needs an 'image_url' or a 'file_id'.")
        case InputFile(file_data=data, file_id=file_id, filename=filename, file_url=url):
            if data or file_id:
                return FilePart(file=FileRef(file_data=data, file_id=file_id, filename=filename))
            if url:
                return None
            raise InvalidRequest(f"Invalid '{where}': an input_file needs 'file_data', a 'file_id' or a 'file_url'.")
    raise InvalidRequest(f"Invalid '{where}': content of type {type(part).__name__} is not supported here.")


def _content(content: str | list[Any], where: str) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    parts = [p for j, part in enumerate(content) if (p := _part(part, f"{where}[{j}]")) is not None]
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    return parts


def _name(i: int, offset: int) -> str:
    """How an error names item ``i`` of the joined list: by its place in the request's ``input``."""
    return f"input[{i - offset}]" if i >= offset else f"previous_response_id (item {i})"


def _chat_tool(tool: FunctionTool) -> ToolDef:
    function = FunctionDef(name=tool.name, description=tool.description, parameters=tool.parameters, strict=tool.strict)
    return ToolDef(type="function", function=function)


def _chat_tool_choice(choice: Any) -> ToolChoiceOption | None:
    match choice:
        case str():
            return choice  # "none", "auto" or "required", the same words in both APIs
        case ToolChoiceFunction(name=name):
            return ToolChoice(type="function", function=NamedTool(name=name))
        case ToolChoiceAllowed(mode=mode, tools=tools):
            named = [
                {"type": "function", "function": {"name": t.get("name")}} for t in tools if t.get("type") == "function"
            ]
            return ToolChoice(type="allowed_tools", allowed_tools=AllowedTools(mode=mode, tools=named))
    return None  # None, or a built-in tool's (named by builtin_tools)


def _response_format(text: TextConfig | None) -> dict[str, Any] | None:
    match text.format if text else None:
        case FormatJsonSchema(name=name, schema=schema, description=description, strict=strict):
            spec: dict[str, Any] = {"name": name, "schema": schema}
            if description is not None:
                spec["description"] = description
            if strict is not None:
                spec["strict"] = strict
            return {"type": "json_schema", "json_schema": spec}
        case FormatJsonObject():
            return {"type": "json_object"}
    return None


def to_chat_body(request: ResponsesRequest, input_items: list[Item]) -> ChatBody:
    """The unified request. ``input_items``: the conversation's items, the
    stored ones (``previous_response_id``) first, then ``items_of(request.input)``.

    Message items become messages (``developer`` a system message);
    consecutive function calls one assistant message with ``tool_calls``
    (joined to the assistant's text just before them); a function call's
    output a tool message; reasoning items, and what ``openai_only_items``
    names, are left out."""
    offset = len(input_items) - len(items_of(request.input))
    if not input_items and not request.instructions:
        raise InvalidRequest("Missing required parameter: 'input'.")
    # A call's output must answer a call before it, unless an earlier item is
    # out of sight (a reference, a stored conversation or prompt of OpenAI's).
    check_calls = request.conversation is None and request.prompt is None
    check_calls = check_calls and not any(isinstance(item, ItemReference) for item in input_items)
    messages: list[Message] = []
    if request.instructions:
        messages.append(Message(role="system", content=request.instructions))
    calls: set[str] = set()
    # The assistant message that function calls right after it join.
    assistant: Message | None = None
    for i, item in enumerate(input_items):
        where = _name(i, offset)
        match item:
            case MessageItem(role=role, content=content):
                message = Message(
                    role="system" if role == "developer" else role, content=_content(content, f"{where}.content")
                )
                messages.append(message)
                assistant = message if role == "assistant" else None
            case FunctionCallItem(call_id=call_id, name=name, arguments=arguments):
                if not call_id:
                    raise InvalidRequest(f"Missing required parameter: '{where}.call_id'.")
                calls.add(call_id)
                call = ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))
                if assistant is None:
                    assistant = Message(role="assistant")
                    messages.append(assistant)
                assistant.tool_calls = [*(assistant.tool_calls or ()), call]
            case FunctionCallOutputItem(call_id=call_id, output=output):
                if not call_id:
                    raise InvalidRequest(f"Missing required parameter: '{where}.call_id'.")
                if check_calls and call_id not in calls:
                    raise InvalidRequest(f"No tool call found for function call output with call_id {call_id}.")
                messages.append(Message(role="tool", tool_call_id=call_id, content=_content(output, f"{where}.output")))
                assistant = None
            case ReasoningItem():
                pass
            case _:  # an item reference, a kept item: see openai_only_items
                assistant = None
    tools = [_chat_tool(t) for t in request.tools or () if isinstance(t, FunctionTool)]
    return ChatBody(
        model=request.model,
        messages=messages,
        stream=bool(request.stream),
        temperature=request.temperature,
        top_p=request.top_p,
        max_completion_tokens=request.max_output_tokens,
        user=request.user,
        response_format=_response_format(request.text),
        tools=tools or None,
        tool_choice=_chat_tool_choice(request.tool_choice) if tools else None,
        parallel_tool_calls=request.parallel_tool_calls if tools else None,
        reasoning_effort=request.reasoning.effort if request.reasoning else None,
    )


# -- unified -> the response ------------------------------------------------------


def usage(u: Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=u.prompt_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=u.cached_tokens, cache_write_tokens=u.cache_write_tokens),
        output_tokens=u.completion_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=u.reasoning_tokens),
        total_tokens=u.total_tokens,
    )


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def incomplete_reason(finish_reason: str | None) -> str | None:
    """Why an answer that ended with ``finish_reason`` is incomplete, or None when it is not."""
    return _INCOMPLETE.get(finish_reason or "")


def id_suffix(response_id: str) -> str:
    return response_id.removeprefix("resp_")


def item_id(response_id: str, prefix: str, output_index: int) -> str:
    """An output item's id, the same however the answer was rendered: ``msg_<response>_<index>``."""
    return f"{prefix}_{id_suffix(response_id)}_{output_index}"


def output_items(response_id: str, message: Message, status: ItemStatus = "completed") -> list[OutputItem]:
    """A complete answer as output items: its reasoning summary, its text, its function calls."""
    items: list[OutputItem] = []
    if message.reasoning:
        items.append(ReasoningItem(id=item_id(response_id, "rs", 0), summary=[SummaryText(text=message.reasoning)]))
    text = content_text(message.content)
    if text:
        part = OutputText(text=text)
        items.append(
            MessageItem(id=item_id(response_id, "msg", len(items)), role="assistant", status=status, content=[part])
        )
    for call in message.tool_calls or ():
        if isinstance(call, ToolCall):  # custom tools' calls never come back here: they are OpenAI's own
            fn = call.function
            items.append(
                FunctionCallItem(
                    id=item_id(response_id, "fc", len(items)),
                    call_id=call.id,
                    name=fn.name,
                    arguments=fn.arguments,
                    status="completed",
                )
            )
    return items


def response(
    id: str,
    created_at: int,
    model: str,
    request: ResponsesRequest,
    message: Message | None,
    finish_reason: str | None,
    u: Usage | None,
    status: ResponseStatus | None = None,
    *,
    output: list[OutputItem] | None = None,
    error: ResponseError | None = None,
) -> Response:
    """The response object, echoing what the request asked for as OpenAI
    does. ``status`` None: "incomplete" when the answer was cut short
    (``max_output_tokens``, ``content_filter``), else "completed".
    ``output``: the items, when already made (a stream's)."""
    reason = incomplete_reason(finish_reason) if status in (None, "incomplete") else None
    if status is None:
        status = "incomplete" if reason else "completed"
    if output is None:
        output = output_items(id, message, "incomplete" if reason else "completed") if message else []
    r = request
    text = r.text or TextConfig()
    return Response(
        id=id,
        object="response",
        created_at=created_at,
        status=status,
        background=bool(r.background),
        error=error,
        incomplete_details=IncompleteDetails(reason=reason) if reason else None,  # type: ignore[arg-type]
        instructions=r.instructions,
        max_output_tokens=r.max_output_tokens,  # type: ignore[arg-type]
        max_tool_calls=r.max_tool_calls,  # type: ignore[arg-type]
        model=model,
        output=output,
        parallel_tool_calls=r.parallel_tool_calls is not False,
        previous_response_id=r.previous_response_id,
        prompt_cache_key=r.prompt_cache_key,
        reasoning=r.reasoning or Reasoning(),
        safety_identifier=r.safety_identifier,
        service_tier=r.service_tier if r.service_tier not in (None, "auto") else "default",
        store=r.store is not False,
        temperature=r.temperature if r.temperature is not None else 1.0,
        text=TextConfig(format=text.format or FormatText(), verbosity=text.verbosity or "medium"),
        tool_choice=r.tool_choice if r.tool_choice is not None else "auto",
        tools=list(r.tools or ()),
        top_logprobs=r.top_logprobs if r.top_logprobs is not None else 0,  # type: ignore[arg-type]
        top_p=r.top_p if r.top_p is not None else 1.0,
        truncation=r.truncation or "disabled",
        metadata=r.metadata or {},
        usage=usage(u) if u is not None else None,
        user=r.user,
    )


def keeps_builtins(request: ResponsesRequest) -> bool:
    """Whether the request's echo holds a built-in tool or tool choice, which
    only ``encode_wire`` writes as the client sent them."""
    return bool(builtin_tools(request)) or isinstance(request.tool_choice, BuiltinChoice)


def encode_response(r: Response, request: ResponsesRequest) -> bytes:
    """The response object as JSON, in OpenAI's shape."""
    return encode_wire(r) if keeps_builtins(request) else _json.encode(r)


# Our error types -> OpenAI's ResponseErrorCode (a failed response's ``error.code``).
_ERROR_CODES = {
    ErrorType.RATE_LIMIT: "rate_limit_exceeded",
    ErrorType.INSUFFICIENT_QUOTA: "rate_limit_exceeded",
    ErrorType.INVALID_REQUEST: "invalid_prompt",
}


def error_code(our_type: str, code: str) -> str:
    return _ERROR_CODES.get(our_type, "server_error")  # type: ignore[call-overload]
