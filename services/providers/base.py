"""The adapter protocol every provider family implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from schemas.chat import ChatBody, Delta, Message, Usage
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


class StreamEvent(msgspec.Struct):
    """One parsed upstream stream event: a delta, a usage report, or both."""

    delta: Delta | None = None
    usage: Usage | None = None
    model: str = ""


class ChatAdapter(Protocol):
    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest: ...

    def parse_response(self, data: bytes) -> ChatResult: ...

    def parse_stream_data(self, data: str) -> StreamEvent | None:
        """One SSE ``data:`` payload; None means the stream's end marker."""
        ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...
