"""Unified deltas -> OpenAI's Responses stream events (``ResponsesStream``),
the streamed half of ``responses_shapes``."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import (
    Delta,
    FunctionDelta,
    Usage,
)
from schemas.response_events import (
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from schemas.responses import (
    FunctionCallItem,
    ItemStatus,
    MessageItem,
    OutputItem,
    OutputText,
    ReasoningItem,
    Response,
    ResponseError,
    ResponsesRequest,
    ResponseStatus,
    SummaryText,
    encode_wire,
)
from services.apis.responses_shapes import (
    error_code,
    id_suffix,
    incomplete_reason,
    item_id,
    keeps_builtins,
    response,
)

_json = msgspec.json.Encoder()


class ResponsesStream:
    """Unified deltas -> OpenAI's event sequence. Output is framed in items
    (a reasoning summary, a message, one function call each), so the stream
    opens and closes items as the deltas switch between reasoning, text and
    tool calls. Every event is numbered (``sequence_number``, from 0)."""

    def __init__(self, id: str, created_at: int, model: str, request: ResponsesRequest) -> None:
        self.id = id
        self.created_at = created_at
        self.model = model
        self.request = request
        self.seq = 0
        self.started = False
        self.items: list[OutputItem] = []
        self.open: OutputItem | None = None  # the item being streamed (the last of ``items``)
        self.text: list[str] = []  # the open message's text, or reasoning summary's, so far
        self.calls: dict[int, FunctionCallItem] = {}  # by the unified tool call index
        self.arguments: dict[str, list[str]] = {}  # a call's arguments so far, by item id
        self.builtins = keeps_builtins(request)
        # The response as the last event carried it (completed, incomplete or failed).
        self.response: Response | None = None

    def _event(self, event: ResponseStreamEvent) -> bytes:
        event.sequence_number = self.seq
        self.seq += 1
        kind: str = type(event).__struct_config__.tag  # type: ignore[assignment]
        data = encode_wire(event) if self.builtins and hasattr(event, "response") else _json.encode(event)
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _response(self, status: ResponseStatus, finish: str | None = None, u: Usage | None = None) -> Response:
        return response(
            self.id, self.created_at, self.model, self.request, None, finish, u, status, output=self.output()
        )

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return [
            self._event(ResponseCreatedEvent(response=self._response("in_progress"))),
            self._event(ResponseInProgressEvent(response=self._response("in_progress"))),
        ]

    def _open(self, item: OutputItem) -> list[bytes]:
        out = self._close()
        self.open = item
        self.items.append(item)
        self.text = []
        return [*out, self._event(ResponseOutputItemAddedEvent(output_index=len(self.items) - 1, item=item))]

    def _close(self, status: ItemStatus = "completed") -> list[bytes]:
        item, index, text = self.open, len(self.items) - 1, "".join(self.text)
        if item is None:
            return []
        self.open = None
        ids = {"item_id": item.id or "", "output_index": index}
        match item:
            case MessageItem():
                part = OutputText(text=text)
                item.content, item.status = [part], status
                out = [
                    self._event(ResponseTextDoneEvent(**ids, content_index=0, text=text)),
                    self._event(ResponseContentPartDoneEvent(**ids, content_index=0, part=part)),
                ]
            case ReasoningItem():
                summary = SummaryText(text=text)
                item.summary = [summary]
                out = [
                    self._event(ResponseReasoningSummaryTextDoneEvent(**ids, summary_index=0, text=text)),
                    self._event(ResponseReasoningSummaryPartDoneEvent(**ids, summary_index=0, part=summary)),
                ]
            case FunctionCallItem():
                item.arguments, item.status = "".join(self.arguments[ids["item_id"]]), status
                done = ResponseFunctionCallArgumentsDoneEvent(**ids, name=item.name, arguments=item.arguments)
                out = [self._event(done)]
        return [*out, self._event(ResponseOutputItemDoneEvent(output_index=index, item=item))]

    def _ids(self) -> dict[str, Any]:
        """The open item's ``item_id`` and ``output_index``, as its events name it."""
        return {"item_id": self.open.id if self.open else "", "output_index": len(self.items) - 1}

    def delta(self, d: Delta) -> bytes:
        out = self._start()
        if d.reasoning:
            if not isinstance(self.open, ReasoningItem):
                out += self._open(ReasoningItem(id=item_id(self.id, "rs", len(self.items)), summary=[]))
                part = SummaryText(text="")
                out.append(
                    self._event(ResponseReasoningSummaryPartAddedEvent(**self._ids(), summary_index=0, part=part))
                )
            self.text.append(d.reasoning)
            out.append(
                self._event(ResponseReasoningSummaryTextDeltaEvent(**self._ids(), summary_index=0, delta=d.reasoning))
            )
        if d.content:
            if not isinstance(self.open, MessageItem):
                index = len(self.items)
                message = MessageItem(
                    id=item_id(self.id, "msg", index), role="assistant", content=[], status="in_progress"
                )
                out += self._open(message)
                out.append(
                    self._event(ResponseContentPartAddedEvent(**self._ids(), content_index=0, part=OutputText(text="")))
                )
            self.text.append(d.content)
            out.append(self._event(ResponseTextDeltaEvent(**self._ids(), content_index=0, delta=d.content)))
        for call in d.tool_calls or ():
            fn = call.function or FunctionDelta()
            item = self.calls.get(call.index)
            if item is None:
                index = len(self.items)
                item = FunctionCallItem(
                    id=item_id(self.id, "fc", index),
                    call_id=call.id or f"call_{id_suffix(self.id)}_{index}",
                    name=fn.name or "",
                    arguments="",
                    status="in_progress",
                )
                out += self._open(item)
                self.calls[call.index] = item
                self.arguments[item.id or ""] = []
            if fn.arguments:
                self.arguments[item.id or ""].append(fn.arguments)
                # Arguments of a call already closed (calls interleaved) reach the final response only.
                if item is self.open:
                    out.append(self._event(ResponseFunctionCallArgumentsDeltaEvent(**self._ids(), delta=fn.arguments)))
        return b"".join(out)

    def end(self, finish_reason: str | None, u: Usage) -> bytes:
        """Every pending ``*.done`` event, then ``response.completed`` (or
        ``response.incomplete``) with the whole response."""
        incomplete = incomplete_reason(finish_reason) is not None
        out = [*self._start(), *self._close("incomplete" if incomplete else "completed")]
        if incomplete:
            self.response = self._response("incomplete", finish_reason, u)
            out.append(self._event(ResponseIncompleteEvent(response=self.response)))
        else:
            self.response = self._response("completed", finish_reason, u)
            out.append(self._event(ResponseCompletedEvent(response=self.response)))
        return b"".join(out)

    def error(self, our_type: str, code: str, message: str) -> bytes:
        """``response.failed``, after ``response.created`` and ``in_progress`` if not sent yet."""
        out = self._start()
        self.response = failed = self._response("failed")
        failed.error = ResponseError(code=error_code(our_type, code), message=message)
        out.append(self._event(ResponseFailedEvent(response=failed)))
        return b"".join(out)

    def output(self) -> list[OutputItem]:
        """The output items so far (all of them, complete, once ``end`` was called)."""
        for item in self.items:
            if isinstance(item, FunctionCallItem):
                item.arguments = "".join(self.arguments[item.id or ""])
        if isinstance(self.open, MessageItem):
            self.open.content = [OutputText(text="".join(self.text))]
        elif isinstance(self.open, ReasoningItem):
            self.open.summary = [SummaryText(text="".join(self.text))]
        return list(self.items)
