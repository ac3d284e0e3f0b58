"""One upstream call over httpx (chat, streamed or not, or embeddings) in the unified format.

The provider worker passes ``on_delta`` to stream: every upstream event is
handed over the moment it is parsed, and ``on_read`` after the events of
each read of the upstream's stream (so that those can travel on together).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec

from schemas.chat import ChatBody, Choice, Cost, Delta, EmbeddingsBody, Message, ToolCall, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from services import pricing
from services import usage as usage_svc
from services.providers import passthrough
from services.providers.anthropic.chat import beta_headers
from services.providers.base import UpstreamRequest, embedding_inputs
from services.providers.http import Upstream
from services.providers.registry import provider
from services.providers.sse import sse_data

OnDelta = Callable[[Delta, str], Awaitable[None]]
OnRead = Callable[[], Awaitable[None]]
log = logging.getLogger("sluice.provider")


class CallOutcome(msgspec.Struct):
    model: str
    usage: Usage
    cost: Cost
    finish_reason: str | None
    # None when streamed: the text went out as deltas.
    message: Message | None
    start_ns: int
    first_byte_ns: int
    end_ns: int
    embeddings: list[list[float]] | None = None
    # Choices 1, 2, ... of a non-streamed request with ``n`` > 1.
    other_choices: list[Choice] = []


class CallProgress:
    """How far a call got, kept outside it: when the call is cancelled (the
    client went away), what the upstream already processed and generated is
    still billed."""

    def __init__(self) -> None:
        # The request left for the upstream: from here its prompt is billed.
        self.sent = False
        # Streamed text and tool-call arguments so far (output tokens, if counted).
        self.parts: list[str] = []
        # Usage the upstream reported in the stream so far, if any.
        self.reported: Usage | None = None
        self.first_byte_ns = 0


class CallFailed(Exception):
    """An upstream try failed; carries the timing for the attempt record."""

    def __init__(self, error: GatewayError, start_ns: int, first_byte_ns: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.start_ns = start_ns
        self.first_byte_ns = first_byte_ns


async def call_chat(
    client: Upstream,
    deployment: Deployment,
    body: ChatBody,
    *,
    on_delta: OnDelta | None = None,
    on_read: OnRead | None = None,
    progress: CallProgress | None = None,
    raw: bytes | None = None,
    anthropic_beta: str = "",
) -> CallOutcome:
    """``raw``: the client's own body, sent as it is (``passthrough``) to a
    deployment of the client API's own family; ``anthropic_beta``: the
    client's ``anthropic-beta`` header, sent as it is to an Anthropic deployment."""
    known = provider(deployment.provider)
    adapter = known.chat
    progress = progress or CallProgress()
    start_ns = time.time_ns()
    first_byte_ns = 0
    try:
        stream = on_delta is not None
        if raw:
            req = passthrough.request(deployment, raw, _api_key(deployment), stream=stream)
        else:
            req = _translated(
                adapter.build_request, deployment, _for_model(body, deployment), _api_key(deployment), stream=stream
            )
        if known.family == "anthropic":
            req.headers.update(beta_headers(anthropic_beta))
        progress.sent = True
        resp = await client.post(req.url, req.headers, req.content, deployment.timeout_s)
        try:
            if resp.status_code >= 400:
                raise adapter.map_error(resp.status_code, await resp.aread(), resp.headers)
            if on_delta is None:
                first_byte_ns = time.time_ns()
                data = await resp.aread()
                result = adapter.parse_response(data)
                text = "".join(_output_text(m) for m in (result.message, *(c.message for c in result.other_choices)))
                model, reported, finish, message = result.model, result.usage, result.finish_reason, result.message
                others = result.other_choices
            else:
                model, reported, finish, message, text, others = "", None, None, None, "", []
                parts = progress.parts
                done = False
                parser = adapter.stream_parser()
                async for events in sse_data(resp.aiter_bytes()):
                    for data in events:
                        event = parser.feed(data)
                        if event is None:
                            done = True
                            break
                        if not first_byte_ns:
                            first_byte_ns = progress.first_byte_ns = time.time_ns()
                        model = event.model or model
                        reported = progress.reported = event.usage or reported
                        for delta in (event.delta, *event.extra) if event.delta is not None else ():
                            if not (delta.content or delta.tool_calls or delta.role or delta.finish_reason):
                                continue
                            if delta.content:
                                parts.append(delta.content)
                            # Tool-call arguments are output tokens too, for counting.
                            parts += [tc.function.arguments or "" for tc in delta.tool_calls or () if tc.function]
                            finish = delta.finish_reason or finish
                            await on_delta(delta, model)
                    if on_read is not None:
                        await on_read()
                    if done:
                        break
                if not done and finish is None:
                    raise UpstreamError("Upstream stream ended before the answer was complete.")
                text = "".join(parts)
        finally:
            await resp.aclose()
    except (GatewayError, httpx.TransportError) as exc:
        raise _failed(exc, start_ns, first_byte_ns) from exc
    usage = usage_svc.settle(reported, body, text, deployment.catalog_model)
    return CallOutcome(
        model=model or deployment.upstream_model,
        usage=usage,
        cost=usage_svc.cost_of(usage, deployment.catalog_model),
        finish_reason=finish,
        message=message,
        other_choices=others,
        start_ns=start_ns,
        first_byte_ns=first_byte_ns or time.time_ns(),
        end_ns=time.time_ns(),
    )


async def call_embeddings(
    client: Upstream, deployment: Deployment, body: EmbeddingsBody, progress: CallProgress | None = None
) -> CallOutcome:
    adapter = provider(deployment.provider).embeddings
    if adapter is None:
        raise CallFailed(InvalidRequest(f"Provider {deployment.provider!r} serves no embeddings."), time.time_ns(), 0)
    progress = progress or CallProgress()
    start_ns = time.time_ns()
    first_byte_ns = 0
    try:
        req = _translated(adapter.build_embeddings_request, deployment, body, _api_key(deployment))
        progress.sent = True
        data = await _post_and_read(client, req, deployment, adapter.map_error)
        first_byte_ns = time.time_ns()
        result = adapter.parse_embeddings(data)
    except (GatewayError, httpx.TransportError) as exc:
        raise _failed(exc, start_ns, first_byte_ns) from exc
    inputs = len(embedding_inputs(body))
    if len(result.vectors) != inputs:
        error = UpstreamError(f"Upstream returned {len(result.vectors)} embeddings for {inputs} inputs.")
        raise CallFailed(error, start_ns, first_byte_ns)
    usage = usage_svc.settle_embeddings(result.usage, body, deployment.catalog_model)
    return CallOutcome(
        model=result.model or deployment.upstream_model,
        usage=usage,
        cost=usage_svc.cost_of(usage, deployment.catalog_model),
        finish_reason=None,
        message=None,
        start_ns=start_ns,
        first_byte_ns=first_byte_ns,
        end_ns=time.time_ns(),
        embeddings=result.vectors,
    )


def _output_text(m: Message) -> str:
    """What a message's output tokens are made of: text and tool-call arguments."""
    text = m.content if isinstance(m.content, str) else ""
    return text + "".join(
        tc.function.arguments if isinstance(tc, ToolCall) else tc.custom.input for tc in m.tool_calls or ()
    )


def _translated(
    build: Callable[..., UpstreamRequest], deployment: Deployment, *args: Any, **kwargs: Any
) -> UpstreamRequest:
    """An adapter's translation of the request. Tools, tool choices and
    response formats are still the caller's free-form JSON: a shape the
    adapter cannot read is the caller's 400, not our 500."""
    try:
        return build(deployment, *args, **kwargs)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        log.warning("cannot translate a request for %s", deployment.provider, exc_info=True)
        raise InvalidRequest(
            f"The request cannot be translated for a {deployment.provider} model: {type(exc).__name__}: {exc}."
        ) from exc


def _for_model(body: ChatBody, deployment: Deployment) -> ChatBody:
    """No ``reasoning_effort`` for a model the catalog says does not reason
    (OpenAI answers those 400): one read from an Anthropic request's thinking
    settings must not make an error of a request Anthropic would serve."""
    entry = pricing.load_catalog().get(deployment.catalog_model or "")
    if body.reasoning_effort is None or entry is None or "reasoning" in entry.caps:
        return body
    return msgspec.structs.replace(body, reasoning_effort=None)


def _api_key(deployment: Deployment) -> str | None:
    return os.environ.get(deployment.api_key_env) if deployment.api_key_env else None


async def _post_and_read(
    client: Upstream,
    req: UpstreamRequest,
    deployment: Deployment,
    map_error: Callable[[int, bytes, httpx.Headers], GatewayError],
) -> bytes:
    resp = await client.post(req.url, req.headers, req.content, deployment.timeout_s)
    try:
        data = await resp.aread()
    finally:
        await resp.aclose()
    if resp.status_code >= 400:
        raise map_error(resp.status_code, data, resp.headers)
    return data


def _failed(exc: GatewayError | httpx.TransportError, start_ns: int, first_byte_ns: int) -> CallFailed:
    """An exception of the call as a ``CallFailed`` with the unified error."""
    if isinstance(exc, GatewayError):
        return CallFailed(exc, start_ns, first_byte_ns)
    if isinstance(exc, httpx.ConnectError):
        return CallFailed(UpstreamUnreachable(f"Upstream unreachable: {exc}"), start_ns, 0)
    if isinstance(exc, httpx.ConnectTimeout):
        return CallFailed(UpstreamTimeout("Upstream did not accept the connection in time."), start_ns, 0)
    if isinstance(exc, httpx.TimeoutException):
        return CallFailed(UpstreamTimeout("Upstream did not answer in time."), start_ns, first_byte_ns)
    # The transport's own words (aiohttp's, through httpx) go to the log, not
    # to the caller: they name our client's internals, not what happened.
    log.warning("upstream %s: %r", "cut the answer short" if first_byte_ns else "connection failed", exc)
    if first_byte_ns:
        error = UpstreamError("The upstream closed the connection before its answer was complete.")
    else:
        error = UpstreamError("The upstream connection failed before an answer began.")
    return CallFailed(error, start_ns, first_byte_ns)
