"""One upstream try over httpx (chat, streamed or not, embeddings, or a token count) in the unified format.

``call_chat`` reads top-down: the request (the client's own body to a
deployment of its API's family, else the adapter's translation), the
upstream's answer read whole or from its stream into an ``Answer``, then the
usage settled and priced into a ``CallOutcome``. ``reader_for`` is the one
place that picks what reads the answer.

To stream, the caller passes ``on_delta``: every upstream event is handed
over the moment it is parsed, and ``on_read`` after the events of each read
of the upstream's stream (so that those can travel on together).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from schemas.chat import ChatBody, Choice, Cost, Delta, EmbeddingsBody, Message, ToolCall, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from schemas.replies import TokenCount
from schemas.responses import BuiltinChoice, BuiltinTool, decode_request
from schemas.rest import RestResult
from schemas.tasks import TaskResult
from services import pricing, tokens
from services import usage as usage_svc
from services.providers import passthrough
from services.providers.anthropic import count as anthropic_count
from services.providers.anthropic.chat import beta_headers
from services.providers.base import ChatAdapter, ChatResult, StreamParser, UpstreamRequest, embedding_inputs
from services.providers.http import Upstream, UpstreamResponse
from services.providers.openai import responses as openai_responses
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
    # A token count's answer (its usage is zero: a count uses no tokens).
    count: TokenCount | None = None
    # An MCP call's answer: the upstream's result JSON, as it sent it.
    tool_result: bytes = b""
    # A REST call's end (its status, the head when no chunk carried it, the
    # body's size) and the body, when it came whole in its first read.
    rest: RestResult | None = None
    data: bytes = b""
    # An image, audio, moderation or rerank request's answer (``services.providers.tasks``).
    task_result: TaskResult | None = None


class Answer(msgspec.Struct):
    """What one upstream answer said, read whole or from its stream, before
    its usage is settled."""

    model: str
    finish_reason: str | None
    # Usage as the upstream reported it, if it did.
    reported: Usage | None
    # What its output tokens are made of (text and tool-call arguments of
    # every choice): counted when the upstream reported no usage.
    output_text: str
    # The whole message of the first choice; None when streamed (it went out as deltas).
    message: Message | None = None
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
        # When a streamed answer's first event came (not set for a whole answer).
        self.first_byte_ns = 0
        # What the call priced already, with ``reported``: an answer read
        # whose delivery failed (images made, then not kept) bills this.
        self.cost: Cost | None = None


class CallFailed(Exception):
    """An upstream try failed; carries the timing for the attempt record.
    ``repeatable``: whether another try could not do twice what this one may
    have done upstream (False: a REST POST whose body reached an instance,
    or an answer already under way; the walk then ends whatever the error)."""

    def __init__(self, error: GatewayError, start_ns: int, first_byte_ns: int, *, repeatable: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.start_ns = start_ns
        self.first_byte_ns = first_byte_ns
        self.repeatable = repeatable


@dataclass(frozen=True, slots=True)
class AnswerReader:
    """What reads an upstream's chat answer into the unified format: a whole
    one (``parse``), or a stream (a new ``stream_parser()`` per stream)."""

    parse: Callable[[bytes], ChatResult]
    stream_parser: Callable[[], StreamParser]


def reader_for(api: str, deployment: Deployment, raw: bytes | None) -> AnswerReader:
    """What reads ``deployment``'s answer to a request of the client's
    ``api`` (``raw``: the client's own body, if the ingress kept it): the
    deployment family's adapter, pass-through or not, except for a client
    API whose native answers the adapter cannot read (OpenAI's Responses),
    which may also refuse, as ``InvalidRequest``, what no other family can serve."""
    if api == "responses" and raw:
        if passthrough.native(api, deployment):
            return AnswerReader(openai_responses.parse_response, openai_responses.ResponsesStreamParser)
        # Tools that run on OpenAI's side are left out for another family
        # (the row names them: agents such as Codex declare web_search with
        # every request); a request that must call one is refused.
        request = decode_request(raw)
        forced = request.tool_choice
        if isinstance(forced, BuiltinChoice) or (
            forced == "required" and all(isinstance(t, BuiltinTool) for t in request.tools or ())
        ):
            raise InvalidRequest(
                "The request's tool_choice requires a tool that runs on OpenAI's side: "
                f"model deployment {deployment.name!r} ({deployment.provider}) cannot serve it."
            )
    adapter = provider(deployment.provider).chat
    return AnswerReader(adapter.parse_response, adapter.stream_parser)


async def call_chat(
    client: Upstream,
    deployment: Deployment,
    body: ChatBody,
    *,
    on_delta: OnDelta | None = None,
    on_read: OnRead | None = None,
    progress: CallProgress | None = None,
    api: str = "chat",
    raw: bytes | None = None,
    anthropic_beta: str = "",
) -> CallOutcome:
    """One try at ``deployment``, streamed when ``on_delta`` is given.
    ``api`` is the client's API and ``raw`` its own body, if the ingress
    kept it: a deployment of that API's own family gets it as it is
    (``passthrough``); an Anthropic deployment gets ``anthropic_beta``, the
    client's ``anthropic-beta`` header, as it is."""
    known = provider(deployment.provider)
    adapter = known.chat
    progress = progress or CallProgress()
    start_ns = time.time_ns()
    # When a whole answer began to be read (a stream's first event is ``progress.first_byte_ns``).
    whole_ns = 0
    try:
        reader = reader_for(api, deployment, raw)
        req = _chat_request(adapter, deployment, body, api, raw, stream=on_delta is not None)
        if known.family == "anthropic":
            req.headers.update(beta_headers(anthropic_beta))
        progress.sent = True
        resp = await client.post(req.url, req.headers, req.content, deployment.timeout_s)
        try:
            if resp.status_code >= 400:
                raise adapter.map_error(resp.status_code, await resp.aread(), resp.headers)
            if on_delta is None:
                whole_ns = time.time_ns()
                answer = _whole(reader.parse(await resp.aread()))
            else:
                answer = await _streamed(resp, reader.stream_parser(), progress, on_delta, on_read)
        finally:
            await resp.aclose()
    except (GatewayError, httpx.TransportError) as exc:
        raise _failed(exc, start_ns, whole_ns or progress.first_byte_ns) from exc
    if answer.reported is None:  # counted here: the first count's encoding is built off the event loop
        await tokens.load(usage_svc.tokenizer_for(deployment.catalog_model)[0])
    usage = usage_svc.settle(answer.reported, body, answer.output_text, deployment.catalog_model)
    return CallOutcome(
        model=answer.model or deployment.upstream_model,
        usage=usage,
        cost=usage_svc.cost_of(usage, deployment.catalog_model),
        finish_reason=answer.finish_reason,
        message=answer.message,
        other_choices=answer.other_choices,
        start_ns=start_ns,
        first_byte_ns=whole_ns or progress.first_byte_ns or time.time_ns(),
        end_ns=time.time_ns(),
    )


def _chat_request(
    adapter: ChatAdapter, deployment: Deployment, body: ChatBody, api: str, raw: bytes | None, *, stream: bool
) -> UpstreamRequest:
    """The client's own body to a deployment of its API's own family, else
    the family adapter's translation of the unified body."""
    if raw and passthrough.native(api, deployment):
        return passthrough.request(deployment, raw, _api_key(deployment), stream=stream, api=api)
    return _translated(
        adapter.build_request, deployment, _for_model(body, deployment), _api_key(deployment), stream=stream
    )


def _for_model(body: ChatBody, deployment: Deployment) -> ChatBody:
    """No ``reasoning_effort`` for a model the catalog says does not reason
    (OpenAI answers those 400): one read from an Anthropic request's thinking
    settings must not make an error of a request Anthropic would serve."""
    entry = pricing.load_catalog().get(deployment.catalog_model or "")
    if body.reasoning_effort is None or entry is None or "reasoning" in entry.caps:
        return body
    return msgspec.structs.replace(body, reasoning_effort=None)


def _whole(result: ChatResult) -> Answer:
    text = "".join(_output_text(m) for m in (result.message, *(c.message for c in result.other_choices)))
    return Answer(result.model, result.finish_reason, result.usage, text, result.message, result.other_choices)


async def _streamed(
    resp: UpstreamResponse, parser: StreamParser, progress: CallProgress, on_delta: OnDelta, on_read: OnRead | None
) -> Answer:
    """Reads a stream to its end marker (or its last choice's finish),
    handing each delta over as it is parsed; keeps in ``progress`` what a
    call cut short still bills."""
    model, reported, finish = "", None, None
    parts = progress.parts
    done = False
    async for events in sse_data(resp.aiter_bytes()):
        for data in events:
            event = parser.feed(data)
            if event is None:
                done = True
                break
            if not progress.first_byte_ns:
                progress.first_byte_ns = time.time_ns()
            model = event.model or model
            reported = progress.reported = event.usage or reported
            for delta in (event.delta, *event.extra) if event.delta is not None else ():
                if not (delta.content or delta.tool_calls or delta.role or delta.finish_reason or delta.reasoning):
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
    return Answer(model, finish, reported, "".join(parts))


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
    if result.usage is None:
        await tokens.load(usage_svc.tokenizer_for(deployment.catalog_model)[0])
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


async def call_count_tokens(
    client: Upstream,
    deployment: Deployment,
    body: ChatBody,
    progress: CallProgress | None = None,
    *,
    raw: bytes | None = None,
    anthropic_beta: str = "",
) -> CallOutcome:
    """The input tokens of ``body`` on ``deployment``: Anthropic's own count
    (its count endpoint, exact, with the client's body ``raw`` and betas),
    else the gateway's, with the tokenizer that counts the model's usage
    when its upstream reports none (``usage.tokenizer_for``), so a count and
    a completion's counted prompt agree. Nothing is billed either way."""
    progress = progress or CallProgress()
    start_ns = time.time_ns()
    if provider(deployment.provider).family != "anthropic":
        name, _ = usage_svc.tokenizer_for(deployment.catalog_model)
        await tokens.load(name)
        counted = tokens.count_prompt(body.messages, tokens.encoding(name))
        return _counted(deployment, TokenCount(counted, "gateway"), start_ns, time.time_ns())
    first_byte_ns = 0
    try:
        req = _translated(anthropic_count.request, deployment, body, raw, _api_key(deployment), anthropic_beta)
        progress.sent = True
        data = await _post_and_read(client, req, deployment, provider(deployment.provider).chat.map_error)
        first_byte_ns = time.time_ns()
        counted = anthropic_count.parse(data)
    except (GatewayError, httpx.TransportError) as exc:
        raise _failed(exc, start_ns, first_byte_ns) from exc
    return _counted(deployment, TokenCount(counted, "upstream"), start_ns, first_byte_ns)


def _counted(deployment: Deployment, count: TokenCount, start_ns: int, first_byte_ns: int) -> CallOutcome:
    return CallOutcome(
        model=deployment.upstream_model,
        usage=Usage(),
        cost=Cost(),
        finish_reason=None,
        message=None,
        start_ns=start_ns,
        first_byte_ns=first_byte_ns,
        end_ns=time.time_ns(),
        count=count,
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
