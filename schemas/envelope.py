"""The request envelope and its routing slip (DESIGN.md §2)."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import BusMessage
from schemas.chat import ChatBody, EmbeddingsBody
from schemas.quota import Reservation

Origin = Literal["http", "nats"]


class Span(msgspec.Struct, array_like=True):
    """Wall-clock time a stage held the request, in ns since the epoch."""

    stage: str
    start_ns: int
    end_ns: int


class Deployment(msgspec.Struct, omit_defaults=True):
    """One upstream that can serve a model: where and how to call it."""

    name: str
    provider: str
    base_url: str
    upstream_model: str
    # Name of the environment variable that holds the upstream key; the key
    # itself never rides on the bus.
    api_key_env: str | None = None
    timeout_s: float = 60.0
    # Azure OpenAI's ``api-version`` query parameter.
    api_version: str = ""
    # Catalog entry used for pricing and token counting.
    catalog_model: str | None = None


class Envelope(BusMessage, tag="chat.request"):
    # The subject that receives the replies (an inbox of the caller's).
    reply: str
    # Exactly one of the two bodies: a chat request (``api`` "chat", or
    # "messages" when it came in Anthropic's shape) or an embeddings request.
    body: ChatBody | None = None
    embeddings: EmbeddingsBody | None = None
    # Left empty by a direct NATS caller, the policy stage stamps these.
    id: str = ""
    received_at_ns: int = 0
    deadline_ns: int = 0
    slip: list[str] = []
    api: str = "chat"
    origin: Origin = "nats"
    key_id: str = ""
    tenant_id: str = ""
    spans: list[Span] = []
    deployment: Deployment | None = None
    # placeholder -> original; restored on the way out, never copied to events.
    redactions: dict[str, str] = {}
    # Set by policy alone (it clears whatever a caller put here): what it took
    # from the shared limit and budget counters, settled by whoever ends the request.
    quota: Reservation | None = None

    @property
    def model(self) -> str:
        if self.body is not None:
            return self.body.model
        return self.embeddings.model if self.embeddings is not None else ""

    @property
    def stream(self) -> bool:
        return self.body is not None and bool(self.body.stream)
