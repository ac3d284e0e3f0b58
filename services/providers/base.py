"""The adapter protocols every provider family implements.

Adapters are pure translation: unified request -> upstream HTTP request,
upstream bytes -> unified result. They do no I/O, so each is tested against
fixtures in the provider's own format and benchmarked on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from schemas.chat import ChatBody, Choice, Delta, EmbeddingsBody, Message, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError


class UpstreamRequest(msgspec.Struct):
    url: str
    headers: dict[str, str]
    content: bytes


class ChatResult(msgspec.Struct):
    """A complete, non-streamed answer in the unified format."""

    message: Message
    finish_reason: str | None
    usage: Usage | None
    model: str
    # Choices 1, 2, ... of a request with ``n`` > 1.
    other_choices: list[Choice] = []


class StreamEvent(msgspec.Struct):
    """One parsed upstream stream event: a delta, a usage report, or both."""

    delta: Delta | None = None
    usage: Usage | None = None
    model: str = ""
    # Deltas of other choices in the same event (``n`` > 1).
    extra: list[Delta] = []


class StreamParser(Protocol):
    """Turns one stream's SSE ``data:`` payloads into unified events. One per
    stream: some families spread what a delta needs over several events."""

    def feed(self, data: str) -> StreamEvent | None:
        """One payload; None when the stream's end marker arrived."""
        ...


class EmbeddingsResult(msgspec.Struct):
    vectors: list[list[float]]
    usage: Usage | None
    model: str


class ChatAdapter(Protocol):
    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest: ...

    def parse_response(self, data: bytes) -> ChatResult: ...

    def stream_parser(self) -> StreamParser: ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...


class EmbeddingsAdapter(Protocol):
    def build_embeddings_request(
        self, deployment: Deployment, body: EmbeddingsBody, api_key: str | None
    ) -> UpstreamRequest: ...

    def parse_embeddings(self, data: bytes) -> EmbeddingsResult: ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...


def embedding_inputs(body: EmbeddingsBody) -> list[str] | list[list[int]]:
    """The input as a list: a string becomes one text, a token list one input."""
    value = body.input
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [value]  # type: ignore[list-item]
    return value  # type: ignore[return-value]
