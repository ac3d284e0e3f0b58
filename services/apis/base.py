"""What every client API provides, whatever front door carries it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.envelope import Api
from schemas.errors import InvalidRequest
from schemas.replies import Chunk, Failure, Final
from schemas.reservation import RateState
from schemas.responses import Item, ResponsesRequest
from schemas.stored_response import StoredResponse
from schemas.tasks import BlobRef, TaskRequest

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]


class Parsed(msgspec.Struct):
    """A request body read into the unified request."""

    model: str
    stream: bool = False
    body: ChatBody | None = None
    embeddings: EmbeddingsBody | None = None
    # The client's own body, when it holds more than ``body`` (pass-through).
    raw: bytes = b""
    # What ``body`` leaves out of the client's (``Envelope.dropped``).
    dropped: list[str] = []
    # A Responses API request as the client wrote it (its answer echoes it),
    # the stored response it continues, and every input item it answers:
    # that conversation's, then its own (set by ``Conversation.resume``).
    responses: ResponsesRequest | None = None
    previous_id: str = ""
    conversation: list[Item] = []
    # An image, audio, moderation or rerank request (``Envelope.task``).
    task: TaskRequest | None = None


class Form(msgspec.Struct):
    """A multipart/form-data body as the ingress read it (``ingress.multipart``):
    its text fields by name (a name given more than once, e.g. ``image[]``,
    has several), and its files, already stored as they streamed in."""

    fields: dict[str, list[str]] = {}
    files: dict[str, list[BlobRef]] = {}


@dataclass(slots=True)
class RequestView:
    """What a renderer needs of the request it answers."""

    id: str
    created: int
    # The model as the client named it (an alias stays an alias).
    model: str
    parsed: Parsed


class Renderer(Protocol):
    """How one API renders replies: a JSON answer, an error, a stream."""

    def error(self, f: Failure) -> bytes: ...

    def final(self, f: Final) -> bytes: ...

    def chunk(self, c: Chunk) -> bytes: ...

    def end(self, f: Final) -> bytes: ...

    def stream_error(self, f: Failure) -> bytes: ...

    def rate_headers(self, rate: RateState | None) -> Headers: ...


class WholeAnswers:
    """The stream half of a ``Renderer`` whose API is never streamed (its
    ``parse`` never sets ``stream``): asked for a stream's parts, it is a bug."""

    def chunk(self, c: Chunk) -> bytes:
        raise NotImplementedError(f"{type(self).__name__}: these answers are never streamed")

    def end(self, f: Final) -> bytes:
        raise NotImplementedError(f"{type(self).__name__}: these answers are never streamed")

    def stream_error(self, f: Failure) -> bytes:
        raise NotImplementedError(f"{type(self).__name__}: these answers are never streamed")


class Conversation(Protocol):
    """An API whose answers are kept, and whose requests may continue one
    (the Responses API). The front doors do the I/O (``ingress.conversations``)."""

    def resume(self, parsed: Parsed, earlier: StoredResponse | None) -> Parsed:
        """The request with the conversation it continues (``earlier``, when
        ``parsed.previous_id`` named one) put before its own input."""
        ...

    def keep(self, parsed: Parsed, renderer: Renderer, tenant_id: str, key_id: str) -> StoredResponse | None:
        """What to store once the renderer rendered the answer (None: nothing,
        e.g. ``store: false``)."""
        ...


@dataclass(frozen=True, slots=True)
class ClientApi:
    """One row of the table every front door serves from."""

    name: Api
    path: str
    parse: Callable[[bytes], Parsed]
    renderer: Callable[[RequestView], Renderer]
    # An error in this API's shape, before any renderer exists (bad body, no key).
    error_body: Callable[[Failure], bytes]
    # The header(s) that carry the caller's key, as "Bearer <key>" for the bus.
    api_key: Callable[[Callable[[bytes], str | None]], str | None]
    # The Structs of its request and answer bodies, for the OpenAPI document.
    request_type: type = dict
    response_type: type = dict
    summary: str = ""
    # The Anthropic betas the caller asks for (``anthropic-beta``), checked:
    # an Anthropic deployment gets them (``Envelope.anthropic_beta``).
    anthropic_beta: Callable[[Callable[[bytes], str | None]], str] = lambda header: ""
    conversation: Conversation | None = None
    # Whether a request may ask for its answer as a stream (embeddings and
    # token counts are answered whole).
    streams: bool = True
    # The body is multipart/form-data (an upload: image edits, audio): the
    # door stores its files as they stream in and calls this instead of ``parse``.
    parse_form: Callable[[Form], Parsed] | None = None
    # The answer's content type, by the request: a transcript in text, srt
    # or vtt, speech's audio. JSON unless it says otherwise.
    media_type: Callable[[Parsed], bytes] = lambda parsed: b"application/json"


def bearer(header: Callable[[bytes], str | None]) -> str | None:
    return header(b"authorization")


def is_json(data: bytes) -> bool:
    """Whether a bus entry point's message is JSON rather than msgpack: a
    msgpack Struct is a map (0x80-0x8f, 0xde, 0xdf), never "{"."""
    return data.lstrip()[:1] == b"{"


def decode_json(decoder: Callable[[bytes], T], raw: bytes) -> T:
    """A request body, or an InvalidRequest that says what is wrong with it."""
    try:
        return decoder(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}.") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.", code="invalid_json") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid UTF-8: {exc}.", code="invalid_json") from exc
    except RecursionError as exc:
        raise InvalidRequest("The JSON body of your request is nested too deeply.", code="invalid_json") from exc
