"""The protocol every rerank adapter implements (Cohere's ``/v2/rerank``,
Jina's and Voyage's ``/v1/rerank``), and what it reads an answer into.

Like the chat adapters, these are pure translation (no I/O): the call
(``services.providers.tasks.rerank``) posts and settles the usage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Protocol, TypeVar

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from schemas.tasks import RerankHit, RerankRequest
from services.providers.base import UpstreamRequest

T = TypeVar("T")

# What an upstream may report as used (search units, tokens): a count past
# this is a broken or hostile answer, refused as unreadable rather than billed.
Reported = Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class RerankAnswer(msgspec.Struct):
    """An upstream's ranking: hits best first (its own order), and its usage
    as it reported it (None: it reported none)."""

    hits: list[RerankHit]
    usage: Usage | None
    id: str = ""
    model: str = ""


class RerankAdapter(Protocol):
    # True: the upstream bills search units (Cohere), so a missing report is
    # estimated in search units; False: in tokens.
    bills_search_units: bool

    def build_rerank_request(
        self, deployment: Deployment, task: RerankRequest, api_key: str | None
    ) -> UpstreamRequest: ...

    def parse_rerank(self, data: bytes) -> RerankAnswer: ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...


def document_texts(task: RerankRequest) -> list[str]:
    """The documents as texts, in the caller's order (an object's ``text``)."""
    return [d if isinstance(d, str) else d.text for d in task.documents]


def bearer_json_headers(api_key: str | None) -> dict[str, str]:
    """The headers every rerank upstream takes: JSON, and the key as a bearer token."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def read_ranking(decode: Callable[[bytes], T], data: bytes) -> T:
    """An upstream's ranking in its own shape, or an ``UpstreamError`` that says it was unreadable."""
    try:
        return decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise UpstreamError(f"Upstream sent an unreadable ranking: {exc}") from exc
