"""One request's call to its upstreams, from its first try to its last reply.

The provider stage makes a ``RequestCall`` for each request it takes and
drives it in two steps:

* ``run`` walks the candidate deployments (``attempts.Walk``) within the
  request's deadline; a streamed answer goes out as ``Chunk`` replies
  through ``send`` as its deltas arrive, each restored for the caller;
* then ``final`` (the walk answered) or ``failure`` (every try failed, the
  deadline passed, or the call was cancelled) sends what the stream still
  held and builds the last reply, ``Final`` or ``Failure``.

The stage sends that last reply, records the request and emits the events:
each try's end comes back to it through ``tried``. Nothing here knows of
NATS, so a request's whole call runs in a unit test against a fake upstream.

A call holds what its replies need along the way: their sequence numbers,
the deltas of one upstream read (one ``Chunk`` to a requester that batches),
when the first chunk went out (time to first token), the restorer of masked
values (the caller gets its values back, and only the caller) and, for the
cache and the call log, the transcript of a streamed answer as the upstream
wrote it.

An MCP call (api "mcp") walks its candidates the same way, each one an
instance of the server: the try is the MCP adapter's (``services.providers.mcp``)
instead of a model's, and its answer is the upstream's result JSON, its
masked values restored and the output checks applied before the caller has
it (``services.mcp_privacy``).

A REST call (api "rest") walks its candidates too, each an instance of the
service, through the generic HTTP adapter (``services.providers.rest``):
the answer's head and body slices go out as ``Chunk`` replies (``head``,
``data``) as they are read, or, for an answer that came whole with its
head, on the ``Final`` alone. Once the head arrived the request's deadline
no longer applies: a long download or an event stream goes on as long as
the service keeps sending (its read timeout bounds each wait). A requester
that paces the body (``Envelope.flow_window``) gets a ``SendWindow``
(``window``): the stage hands it the requester's credits, the adapter reads
on from the service only while it is open.

A chat request of a tenant with a moderation guardrail (``Envelope.moderation``)
first has its text moderated (``moderation_gate.ModerationGate``), within
the same deadline: a request the guardrail refuses ends as a ``Failure``
with no chat call (``GuardrailStop``); one it lets through goes on, the
moderation's cost added to the answer's and its time a span of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from schemas.chat import Cost, Delta, Message, Usage
from schemas.envelope import Deployment, Envelope, Span
from schemas.errors import ClientClosed, GatewayError, InternalError, SlowReader, StageStopping, UpstreamTimeout
from schemas.events import Detection
from schemas.mcp import McpCall
from schemas.replies import Chunk, Failure, Final, Timing
from schemas.rest import RestCall, RestHead, RestResult
from services import answer_cache, detectors, mcp_privacy, task_privacy
from services import moderation_guardrail as guardrail
from services import usage as usage_svc
from services.flow_window import SendWindow
from services.masking import AnswerRestorer, OutputScanner
from services.providers.attempts import Try, Walk, WalkFailed
from services.providers.call import (
    CallFailed,
    CallOutcome,
    CallProgress,
    OnDelta,
    call_chat,
    call_count_tokens,
    call_embeddings,
)
from services.providers.http import Upstream
from services.providers.moderation_gate import GuardrailStop, ModerationGate
from services.providers.rest.call import RESPONSE_TOO_LARGE
from services.providers.tasks import BlobAccess, call_task


class McpTries(Protocol):
    """What makes an MCP call's tries: ``services.providers.mcp.McpCaller``,
    or the provider's ``McpSide`` in front of it. Named by its shape, not
    imported: the adapter imports the ``mcp`` SDK, which a process loads
    only once it has an MCP server to call."""

    async def call(self, dep: Deployment, call: McpCall, progress: CallProgress) -> CallOutcome: ...


class RestTries(Protocol):
    """What makes a REST call's tries: ``services.providers.rest.call.RestCaller``."""

    async def call(
        self,
        dep: Deployment,
        call: RestCall,
        progress: CallProgress,
        on_body: Callable[[RestHead | None, bytes], Awaitable[None]],
        *,
        may_fail_over: bool = True,
        flow: SendWindow | None = None,
    ) -> CallOutcome: ...


# Where a chunk of the answer goes (the requester's inbox, in the stage).
Send = Callable[[Chunk], Awaitable[None]]
# A try that ended, and whether its end tells of the deployment's health
# (not when the client left or the gateway stopped while it ran).
Tried = Callable[[Try, bool], Awaitable[None]]
# A REST chunk's ``delta``: nothing (shared: it is only ever encoded).
_NO_DELTA = Delta()


def output_checks(env: Envelope) -> Callable[[], OutputScanner] | None:
    """The tenant's output checks, a scanner for each text (a choice's
    content, a tool call's arguments); the caller's own (restored) values
    are not leaks."""
    p = env.privacy
    if p is None or not p.output:
        return None
    kinds, given = list(p.output), list(p.vault.values())
    return lambda: OutputScanner(lambda text: detectors.find(text, kinds, p.phone_region), p.output, given)


class RequestCall:
    """One request's upstream call; ``send`` takes its chunks, ``tried`` each
    try's end, ``in_flight`` counts the calls to each deployment, ``mcp``
    makes an MCP call's tries and ``rest`` a REST call's."""

    def __init__(
        self,
        env: Envelope,
        client: Upstream,
        send: Send,
        tried: Tried,
        in_flight: dict[str, int] | None = None,
        mcp: McpTries | None = None,
        rest: RestTries | None = None,
        blobs: BlobAccess | None = None,
    ) -> None:
        self.env = env
        self.client = client
        self.mcp = mcp
        self.rest = rest
        # The object store an image, audio or edit request's bytes are in (``env.task``).
        self.blobs = blobs
        self.send = send
        self.tried = tried
        # deployment name -> calls in flight to it (shared by the process's calls)
        self.in_flight = in_flight if in_flight is not None else {}
        self.walk = Walk(
            env.candidates, context_candidates=env.context_candidates, retries=env.retries, deadline_ns=env.deadline_ns
        )
        # The tenant's moderation guardrail, run before the chat call (policy
        # stamps it on chat requests only).
        self.gate = (
            ModerationGate(env.moderation, env.body, client, tried, self.in_flight, env.deadline_ns)
            if env.moderation is not None and env.body is not None
            else None
        )
        self.seq = 0
        self.started_ns = 0
        self.first_chunk_ns = 0
        # Deltas of one upstream read, for a requester that takes them together.
        self.batch: list[Delta] = []
        # The model the upstream's stream names, for the chunks.
        self.model = env.model
        # A streamed answer to keep in the cache or the call log is joined as it goes out.
        keeps = bool(env.cache_key) or env.call_log_max_bytes > 0
        self.transcript = answer_cache.Transcript() if keeps and env.stream else None
        # Masked values go back into the answer for the caller, and only there:
        # the transcript (call log, cache) keeps what the upstream wrote.
        chat = env.privacy is not None and env.tool is None and env.rest is None
        self.restorer = AnswerRestorer(env.privacy.vault, output_checks(env)) if chat else None
        # The answer as the upstream wrote it (placeholders unrestored), once
        # the call ended: what the cache keeps and the call log shows.
        self.written: Message | None = None
        # An MCP call's result as the upstream wrote it, and what the output checks found in it.
        self.tool_result = b""
        self.tool_found: list[Detection] = []
        # A REST call: its deadline, lifted once the head arrived; the head
        # and the body's first bytes as they went out, for the call log.
        self._deadline: asyncio.Timeout | None = None
        self.rest_head: RestHead | None = None
        # Body bytes sent on to the requester so far (a cut call's row has them).
        self.rest_bytes = 0
        self.rest_logged = bytearray()
        # A REST answer's pace, for a requester that grants credit.
        self.window = SendWindow(env.flow_window) if env.rest is not None and env.flow_window > 0 else None

    @property
    def deployment(self) -> Deployment:
        """The deployment called last (the one that answered, once ``run`` returned)."""
        return self.walk.current

    @property
    def tells_health(self) -> bool:
        """Whether the call's tries tell of its deployments' health. A token
        count's do not: it is another endpoint, or no call at all, and its
        speed and failures say nothing of how a deployment answers completions."""
        return self.env.api != "count_tokens"

    @property
    def ttft_ns(self) -> int:
        return self.first_chunk_ns - self.env.received_at_ns if self.first_chunk_ns else 0

    async def run(self) -> CallOutcome:
        """Try the candidates until one answers, within the request's
        deadline, once the guardrail (if any) let the request through.
        Raises ``GuardrailStop`` (it did not), ``WalkFailed`` (no try
        answered), ``TimeoutError`` (the deadline passed) or
        ``asyncio.CancelledError``: each is the ``failure`` to send."""
        env = self.env
        self.started_ns = time.time_ns()
        async with asyncio.timeout(max(0.0, (env.deadline_ns - self.started_ns) / 1e9)) as self._deadline:
            if self.gate is not None:
                await self.gate.run()
            return await self.walk.run(self._try, self._ended, self._on_delta if env.stream else None)

    async def final(self, outcome: CallOutcome) -> Final:
        """Send what the stream still held; the ``Final`` of the answer, restored for the caller."""
        env, dep = self.env, self.walk.current
        answer, others = outcome.message, outcome.other_choices
        await self._send_batch()
        if self.restorer is not None:
            await self._send_held()
            answer = self.restorer.message(answer)
            others = [msgspec.structs.replace(c, message=self.restorer.message(c.message, c.index)) for c in others]
        self.written = self.transcript.message() if self.transcript is not None else outcome.message
        tool_result = self.tool_result = outcome.tool_result
        if env.tool is not None and env.privacy is not None:
            tool_result, self.tool_found = mcp_privacy.restore_result(tool_result, env.privacy)
        cost = guardrail.plus(outcome.cost, self.gate.cost) if self.gate is not None else outcome.cost
        return Final(
            id=env.id,
            seq=self.seq,
            model=outcome.model,
            usage=outcome.usage,
            cost_pico_usd=cost.total,
            cost=cost,
            message=answer,
            other_choices=others,
            embeddings=outcome.embeddings,
            finish_reason=outcome.finish_reason,
            count=outcome.count,
            tool_result=tool_result,
            rest=outcome.rest,
            data=outcome.data,
            task_result=task_privacy.restore_result(outcome.task_result, env.privacy),
            deployment=dep.name,
            provider=dep.provider,
            attempts=len(self.walk.tries),
            cache="miss" if env.cache_key else "",
            timing=Timing(
                spans=self._guardrail_spans(),
                upstream_start_ns=outcome.start_ns,
                upstream_first_byte_ns=outcome.first_byte_ns,
                upstream_end_ns=outcome.end_ns,
            ),
        )

    async def failure(self, exc: BaseException, *, client_gone: bool = False) -> Failure:
        """The ``Failure`` of a call that ``run`` ended with ``exc``, after
        what the stream held; it bills what the upstream processed and
        generated. A cancelled call ended because its client left
        (``client_gone``) or the gateway is stopping."""
        walk = self.walk
        if isinstance(exc, GuardrailStop):
            return self._refused(exc.error)
        if isinstance(exc, WalkFailed):
            error, started, first_byte = exc.error, exc.last.start_ns, exc.last.first_byte_ns
        else:
            if isinstance(exc, TimeoutError):
                error = UpstreamTimeout("Request deadline passed while waiting for the upstream.")
            elif client_gone:
                error = ClientClosed("The client closed the connection.")
            else:
                error = StageStopping("The gateway stopped while calling the upstream.")
            if self.gate is not None and not self.gate.done:
                return await self._cut_in_guardrail(error)
            started, first_byte = self.started_ns, walk.progress.first_byte_ns
            # The try cut short from outside has no row of its own yet.
            cut = Try(len(walk.tries) + 1, walk.current, started, first_byte, time.time_ns(), error.status, error)
            walk.tries.append(cut)
            await self.tried(cut, self.tells_health and isinstance(error, UpstreamTimeout))
        dep = walk.current
        await self._send_batch()  # what came before the end reaches the client before it
        if self.restorer is not None and self.first_chunk_ns:
            await self._send_held()
        failure = Failure.from_error(self.env.id, error, self.seq, deployment=dep.name, provider=dep.provider)
        failure.timing = Timing(
            spans=self._guardrail_spans(),
            upstream_start_ns=started,
            upstream_first_byte_ns=first_byte,
            upstream_end_ns=time.time_ns(),
        )
        failure.attempts = len(walk.tries)
        billed = self._plus_guardrail(self._billed_so_far(refused=isinstance(exc, WalkFailed)))
        if billed is not None:
            failure.usage, failure.cost = billed
        if self.rest_head is not None:
            failure.rest = RestResult(status=self.rest_head.status, response_bytes=self.rest_bytes)
        t = self.transcript
        self.written = t.message() if t is not None and t.parts else None
        return failure

    def _refused(self, error: GatewayError) -> Failure:
        """The ``Failure`` of a request the guardrail stopped: no chat call
        was made; the moderation deployment that judged it (if one did) and
        what the moderation cost are on it."""
        assert self.gate is not None
        dep = self.gate.deployment
        named = {"deployment": dep.name, "provider": dep.provider} if dep is not None else {}
        failure = Failure.from_error(self.env.id, error, self.seq, **named)
        failure.timing = Timing(spans=self._guardrail_spans())
        billed = self._plus_guardrail(None)
        if billed is not None:
            failure.usage, failure.cost = billed
        return failure

    async def _cut_in_guardrail(self, error: GatewayError) -> Failure:
        """The ``Failure`` of a call cut short (deadline, cancel) while the
        guardrail's moderation ran: its try is the one cut; the chat's never began."""
        assert self.gate is not None
        await self.gate.cut(error, says_health=isinstance(error, UpstreamTimeout))
        return self._refused(error)

    def _guardrail_spans(self) -> list[Span]:
        span = self.gate.span if self.gate is not None else None
        return [span] if span is not None else []

    def _plus_guardrail(self, billed: tuple[Usage, Cost] | None) -> tuple[Usage, Cost] | None:
        """What the chat call billed, with the moderation's cost added; the
        moderation's usage stands for the request's when the chat billed none."""
        gate = self.gate
        if gate is None or gate.usage is None:
            return billed
        if billed is None:
            return gate.usage, gate.cost
        return billed[0], guardrail.plus(billed[1], gate.cost)

    def guardrail_found(self) -> list[Detection]:
        """What the tenant's moderation guardrail found (or that it could not check)."""
        return self.gate.found if self.gate is not None else []

    def detections(self) -> list[Detection]:
        """What the tenant's output checks found in the answer, and what each did."""
        p = self.env.privacy
        if self.env.tool is not None:
            return self.tool_found
        if p is None or self.restorer is None:
            return []
        return [
            Detection(f.detector, p.output.get(f.detector, "flag"), where, f.start, f.end)
            for where, f in self.restorer.found
        ]

    async def _try(self, dep: Deployment, progress: CallProgress, on_delta: OnDelta | None) -> CallOutcome:
        """One try at ``dep`` (the walk's call)."""
        env = self.env
        self.in_flight[dep.name] = self.in_flight.get(dep.name, 0) + 1
        try:
            if env.rest is not None:
                if self.rest is None:
                    raise CallFailed(InternalError("This provider process makes no REST calls."), time.time_ns(), 0)
                # Another instance is left to try: a 502-504 may move on to it.
                last = dep is self.walk.candidates[-1]
                return await self.rest.call(
                    dep, env.rest, progress, self._on_body, may_fail_over=not last, flow=self.window
                )
            if env.tool is not None:
                if self.mcp is None:
                    raise CallFailed(InternalError("This provider process makes no MCP calls."), time.time_ns(), 0)
                return await self.mcp.call(dep, env.tool, progress)
            if env.task is not None:
                if self.blobs is None:
                    raise CallFailed(InternalError("This provider process has no object store."), time.time_ns(), 0)
                return await call_task(self.client, dep, env.task, progress, self.blobs, self._on_body, env.tenant_id)
            if env.embeddings is not None:
                return await call_embeddings(self.client, dep, env.embeddings, progress)
            assert env.body is not None  # policy let through exactly one body
            if env.api == "count_tokens":
                raw = env.raw or None
                return await call_count_tokens(
                    self.client, dep, env.body, progress, raw=raw, anthropic_beta=env.anthropic_beta
                )
            return await call_chat(
                self.client,
                dep,
                env.body,
                on_delta=on_delta,
                on_read=self._send_batch,
                progress=progress,
                api=env.api,
                raw=env.raw or None,
                anthropic_beta=env.anthropic_beta,
            )
        finally:
            self.in_flight[dep.name] -= 1

    async def _ended(self, t: Try) -> None:
        # An answer cut at the service's own size cap, or for a client that
        # stopped reading, says nothing of the instance's health.
        not_its_own = t.error is not None and t.error.code in (RESPONSE_TOO_LARGE, SlowReader.code)
        await self.tried(t, self.tells_health and not not_its_own)

    async def _on_body(self, head: RestHead | None, data: bytes) -> None:
        """A REST answer's head (on its first chunk) or next body slice, or
        a task's (speech's audio, a transcript's text), on to the requester
        as it came."""
        env = self.env
        chunk = Chunk(id=env.id, seq=self.seq, delta=_NO_DELTA, head=head, data=data)
        if self.seq == 0:  # it carries the response headers' facts (who answers)
            chunk.deployment = self.walk.current.name
        if head is not None:
            self.rest_head = head
            if self._deadline is not None:
                self._deadline.reschedule(None)
        self.rest_bytes += len(data)
        room = env.call_log_max_bytes - len(self.rest_logged)
        if room > 0:
            self.rest_logged += data[:room]
        await self.send(chunk)
        self.first_chunk_ns = self.first_chunk_ns or time.time_ns()
        self.seq += 1

    async def _on_delta(self, delta: Delta, model: str) -> None:
        self.batch.append(self.restorer.delta(delta) if self.restorer is not None else delta)
        if self.transcript is not None:
            self.transcript.add(delta)
        self.model = model or self.model
        if not self.env.batch_chunks:
            await self._send_batch()

    async def _send_batch(self) -> None:
        if not self.batch:
            return
        env = self.env
        chunk = Chunk(id=env.id, seq=self.seq, delta=self.batch[0], model=self.model, more=self.batch[1:])
        self.batch.clear()
        if self.seq == 0:  # it carries the response headers' facts
            chunk.deployment, chunk.cache = self.walk.current.name, "miss" if env.cache_key else ""
        await self.send(chunk)
        self.first_chunk_ns = self.first_chunk_ns or time.time_ns()
        self.seq += 1

    async def _send_held(self) -> None:
        """What the restorer still held at the stream's end (an unfinished
        placeholder's start is the model's own text), before the last reply."""
        assert self.restorer is not None
        for delta in self.restorer.rest():
            await self.send(Chunk(id=self.env.id, seq=self.seq, delta=delta, model=self.env.model))
            self.seq += 1

    def _billed_so_far(self, *, refused: bool) -> tuple[Usage, Cost] | None:
        """What the upstream processed and generated of a call that ended
        early. ``refused``: the upstream answered with an error (a 429, a 5xx,
        no connection), which bills nothing unless a stream had begun."""
        env, progress, dep = self.env, self.walk.progress, self.walk.current
        if not progress.sent or (refused and not progress.first_byte_ns) or env.api in ("count_tokens", "mcp", "rest"):
            return None  # a count bills nothing, even cut short; a tool's or a service's price is for its answer
        if env.task is not None:
            return usage_svc.task_cut_short(env.task, progress, dep.catalog_model)
        if env.embeddings is not None:
            usage = usage_svc.settle_embeddings(None, env.embeddings, dep.catalog_model)
        else:
            assert env.body is not None
            usage = usage_svc.settle_cut_short(progress.reported, env.body, "".join(progress.parts), dep.catalog_model)
        return usage, usage_svc.cost_of(usage, dep.catalog_model)
