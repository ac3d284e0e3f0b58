"""What the mock's batch APIs share: a request as the router read it, a
reply, list pagination, and each family's error body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs

import msgspec

from loadtest.mock_upstream import anthropic_shape, responses_shape

_json = msgspec.json.Encoder()
JSON = b"application/json"
T = TypeVar("T")


class Request(msgspec.Struct):
    method: str
    family: str  # "openai", "azure" or "anthropic"
    # Who owns what it makes: "<upstream name>/<family>".
    owner: str
    kind: str  # "files", "batches"
    id: str | None
    action: str | None  # "content", "cancel", "results"
    query: dict[str, str]
    # The origin the caller reached this mock at, and the "/@<name>" prefix it used (Anthropic's results_url).
    origin: str
    prefix: str
    body: bytes = b""


class Reply(msgspec.Struct):
    status: int
    body: bytes
    content_type: bytes = JSON


def query_of(scope: dict) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {k: v[-1] for k, v in parsed.items()}


def ok(body: Any) -> Reply:
    return Reply(200, _json.encode(body))


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None) -> Reply:
    return Reply(status, _json.encode(responses_shape.error(status, message, param, code)))


def anthropic_error(status: int, message: str) -> Reply:
    body = anthropic_shape.error(status)
    body["error"]["message"] = message
    return Reply(status, _json.encode(body))


def limit_of(query: dict[str, str], default: int, most: int) -> int | None:
    """The page size asked (``limit``), or None when it is not a number in 1..most."""
    raw = query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        return None
    return limit if 1 <= limit <= most else None


def page(
    items: Sequence[T], ids: Sequence[str], after: str | None, before: str | None, limit: int
) -> tuple[list[T], bool]:
    """A page of ``items`` (newest first) after the item ``after`` or before ``before``; and whether more follow."""
    start, end = 0, len(items)
    if after:
        start = ids.index(after) + 1 if after in ids else end
    if before:
        end = ids.index(before) if before in ids else 0
        start = max(start, end - limit)
    chosen = list(items[start:end][:limit])
    more = start + len(chosen) < end if not before else start > 0
    return chosen, more
