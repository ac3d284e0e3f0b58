"""One try of a task whose request and answer are small JSON bodies
(moderation, rerank): the adapter's request, posted, the answer read whole
and read, every failure as the ``CallFailed`` the walk understands.

It shares the chat call's own plumbing rather than copying it: the key
from the deployment's variable, a translation error as the caller's 400,
the transport's errors as the gateway's."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import httpx

from schemas.envelope import Deployment
from schemas.errors import GatewayError
from services.providers.base import UpstreamRequest
from services.providers.call import CallProgress
from services.providers.call import _api_key as api_key
from services.providers.call import _failed as failed
from services.providers.call import _post_and_read as post_and_read
from services.providers.call import _translated as translated
from services.providers.http import Upstream

T = TypeVar("T")


async def post_json(
    client: Upstream,
    dep: Deployment,
    build: Callable[..., UpstreamRequest],
    request: object,
    read: Callable[[bytes], T],
    map_error: Callable[[int, bytes, Mapping[str, str]], GatewayError],
    progress: CallProgress,
) -> tuple[T, int, int]:
    """``read`` of the answer to ``build(dep, request, key)`` (an
    ``UpstreamError`` it raises fails the try), with the try's start and its
    answer's first byte (ns). Raises ``CallFailed``."""
    start_ns = time.time_ns()
    first_byte_ns = 0
    try:
        req = translated(build, dep, request, api_key(dep))
        progress.sent = True
        data = await post_and_read(client, req, dep, map_error)
        first_byte_ns = time.time_ns()
        return read(data), start_ns, first_byte_ns
    except (GatewayError, httpx.TransportError) as exc:
        raise failed(exc, start_ns, first_byte_ns) from exc
