"""OpenAI's Responses API (``POST /v1/responses``), whatever provider serves
the model, so Codex CLI, the Agents SDK and ``client.responses`` work
against Sluice unchanged. An OpenAI or Azure deployment gets the client's
own body (pass-through); every other family the unified request. The shapes
(request -> unified, unified -> response and events) are in
``responses_shapes``.

A response is kept unless the request says ``store: false``, with every
input item it answered, so a later request continues it by
``previous_response_id`` on any backend (``Conversation``).
"""

from __future__ import annotations

import msgspec

from schemas.errors import InvalidRequest
from schemas.ids import CROCKFORD
from schemas.replies import Chunk, Failure, Final
from schemas.reservation import RateState
from schemas.responses import Item, Response, ResponsesRequest, decode_request, encode_wire
from schemas.stored_response import StoredResponse
from services.apis import openai_shapes, rate_headers
from services.apis import responses_shapes as shapes
from services.apis.base import ClientApi, Headers, Parsed, Renderer, RequestView, bearer, decode_json
from services.apis.responses_stream import ResponsesStream

# The gateway's response ids: "resp_" and the request's id (26 characters of Crockford base32).
ID_PREFIX = "resp_"
# At most this many names in a request's ``dropped``.
MAX_DROPPED = 32
_CROCKFORD = frozenset(CROCKFORD)


def response_id(request_id: str) -> str:
    return ID_PREFIX + request_id


def request_id_of(response_id: str) -> str | None:
    """The request id inside one of the gateway's response ids; None for
    anything else (a caller-supplied id never reaches a KV key unchecked)."""
    rest = response_id[len(ID_PREFIX) :] if response_id.startswith(ID_PREFIX) else ""
    return rest if len(rest) == 26 and _CROCKFORD.issuperset(rest) else None


def parse(raw: bytes) -> Parsed:
    request = decode_json(decode_request, raw)
    if request.conversation is not None:
        raise InvalidRequest(
            "'conversation' is not supported by this gateway; continue a response with 'previous_response_id'.",
            code="unsupported_parameter",
        )
    previous = request.previous_response_id or ""
    if previous and request_id_of(previous) is None:
        raise _not_found(previous)
    # The unified body is made by ``resume``, once the conversation it continues is known.
    return Parsed(model=request.model, stream=bool(request.stream), raw=raw, responses=request, previous_id=previous)


_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def native_body(raw: bytes, conversation: list[Item]) -> bytes:
    """The client's body for an OpenAI deployment, with the whole
    conversation as its input: the upstream never saw the gateway's ids."""
    doc = _fields(raw)
    doc["input"] = msgspec.Raw(encode_wire(conversation))
    doc.pop("previous_response_id", None)
    return msgspec.json.encode(doc)


def _not_found(previous: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{previous[:100]}' not found.",
        status=404,
        code="previous_response_not_found",
    )


class ResponsesConversation:
    def resume(self, parsed: Parsed, earlier: StoredResponse | None) -> Parsed:
        request = parsed.responses
        assert request is not None
        if parsed.previous_id and earlier is None:
            raise _not_found(parsed.previous_id)
        history: list[Item] = [*earlier.input, *earlier.response.output] if earlier is not None else []
        conversation = [*history, *shapes.items_of(request.input)]
        body = shapes.to_chat_body(request, conversation)
        raw = native_body(parsed.raw, conversation) if history else parsed.raw
        # What only an OpenAI deployment gets (another family's row names it).
        dropped = [f"tools:{kind}" for kind in shapes.builtin_tools(request)]
        dropped += shapes.openai_only_items(request, conversation)
        return msgspec.structs.replace(
            parsed, body=body, raw=raw, conversation=conversation, dropped=dropped[:MAX_DROPPED]
        )

    def keep(self, parsed: Parsed, renderer: Renderer, tenant_id: str, key_id: str) -> StoredResponse | None:
        request = parsed.responses
        answered = getattr(renderer, "answered", None)
        if request is None or request.store is False or not isinstance(answered, Response):
            return None
        return StoredResponse(tenant_id=tenant_id, key_id=key_id, response=answered, input=parsed.conversation)


def error_body(f: Failure) -> bytes:
    return openai_shapes.error(f)


class ResponsesRenderer:
    def __init__(self, view: RequestView) -> None:
        request = view.parsed.responses
        assert request is not None
        self.view, self.request = view, request
        self.id = response_id(view.id)
        self.events = ResponsesStream(self.id, view.created, view.model, request)
        # The response as the client got it, once rendered (what is stored).
        self.answered: Response | None = None

    def error(self, f: Failure) -> bytes:
        return error_body(f)

    def final(self, f: Final) -> bytes:
        assert f.message is not None
        v = self.view
        self.answered = shapes.response(self.id, v.created, v.model, self.request, f.message, f.finish_reason, f.usage)
        return shapes.encode_response(self.answered, self.request)

    def chunk(self, c: Chunk) -> bytes:
        return self.events.delta(c.delta)

    def end(self, f: Final) -> bytes:
        data = self.events.end(f.finish_reason, f.usage)
        self.answered = self.events.response
        return data

    def stream_error(self, f: Failure) -> bytes:
        return self.events.error(f.type, f.code, f.message)

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


API = ClientApi(
    "responses",
    "/v1/responses",
    parse,
    ResponsesRenderer,
    error_body,
    bearer,
    ResponsesRequest,
    Response,
    "OpenAI Responses, to any model of the gateway",
    conversation=ResponsesConversation(),
)
