"""One upstream chat call over httpx, streamed or not, in the unified format.

The provider worker passes ``on_delta`` to stream: every upstream event is
handed over the moment it is parsed, nothing is buffered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

import httpx
import msgspec

from schemas.chat import ChatBody, Delta, Message, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from services import usage as usage_svc
from services.providers import adapter_for
from services.providers.http import UpstreamHTTP
from services.providers.sse import sse_data

OnDelta = Callable[[Delta, str], Awaitable[None]]


class CallOutcome(msgspec.Struct):
    model: str
    usage: Usage
    cost_pico_usd: int
    finish_reason: str | None
    # None when streamed: the text went out as deltas.
    message: Message | None
    start_ns: int
    first_byte_ns: int
    end_ns: int


class CallFailed(Exception):
    """An upstream try failed; carries the timing for the attempt record."""

    def __init__(self, error: GatewayError, start_ns: int, first_byte_ns: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.start_ns = start_ns
        self.first_byte_ns = first_byte_ns


async def call_chat(
    client: UpstreamHTTP,
    deployment: Deployment,
    body: ChatBody,
    *,
    on_delta: OnDelta | None = None,
) -> CallOutcome:
    adapter = adapter_for(deployment.provider)
    api_key = os.environ.get(deployment.api_key_env) if deployment.api_key_env else None
    req = adapter.build_request(deployment, body, api_key, stream=on_delta is not None)
    start_ns = time.time_ns()
    first_byte_ns = 0
    try:
        resp = await client.post(req.url, req.headers, req.content, deployment.timeout_s)
        try:
            if resp.status_code >= 400:
                raise adapter.map_error(resp.status_code, await resp.aread(), resp.headers)
            if on_delta is None:
                first_byte_ns = time.time_ns()
                data = await resp.aread()
                result = adapter.parse_response(data)
                text = result.message.content if isinstance(result.message.content, str) else ""
                model, reported, finish, message = result.model, result.usage, result.finish_reason, result.message
            else:
                model, reported, finish, message, text = "", None, None, None, ""
                parts: list[str] = []
                done = False
                async for data in sse_data(resp.aiter_bytes()):
                    event = adapter.parse_stream_data(data)
                    if event is None:
                        done = True
                        break
                    if not first_byte_ns:
                        first_byte_ns = time.time_ns()
                    model = event.model or model
                    reported = event.usage or reported
                    if event.delta is not None:
                        if event.delta.content:
                            parts.append(event.delta.content)
                        finish = event.delta.finish_reason or finish
                        await on_delta(event.delta, model)
                if not done and finish is None:
                    raise UpstreamError("Upstream stream ended before the answer was complete.")
                text = "".join(parts)
        finally:
            await resp.aclose()
    except GatewayError as exc:
        raise CallFailed(exc, start_ns, first_byte_ns) from exc
    except httpx.ConnectError as exc:
        raise CallFailed(UpstreamUnreachable(f"Upstream unreachable: {exc}"), start_ns, 0) from exc
    except httpx.ConnectTimeout as exc:
        # httpx-aiohttp 0.2 maps every aiohttp connection error, a refused
        # connection included, to ConnectTimeout; only a real timeout is one.
        if isinstance(exc.__cause__, TimeoutError):
            raise CallFailed(UpstreamTimeout("Upstream did not accept the connection in time."), start_ns, 0) from exc
        raise CallFailed(UpstreamUnreachable(f"Upstream unreachable: {exc}"), start_ns, 0) from exc
    except httpx.TimeoutException as exc:
        raise CallFailed(UpstreamTimeout("Upstream did not answer in time."), start_ns, first_byte_ns) from exc
    except httpx.TransportError as exc:
        err = UpstreamError(f"Upstream connection failed: {exc!r}")
        raise CallFailed(err, start_ns, first_byte_ns) from exc
    usage = usage_svc.settle(reported, body, text, deployment.catalog_model)
    return CallOutcome(
        model=model or deployment.upstream_model,
        usage=usage,
        cost_pico_usd=usage_svc.cost_pico_usd(usage, deployment.catalog_model),
        finish_reason=finish,
        message=message,
        start_ns=start_ns,
        first_byte_ns=first_byte_ns or time.time_ns(),
        end_ns=time.time_ns(),
    )
