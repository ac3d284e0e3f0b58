"""Provider stage: take each request once (fences, copies sent again,
cancels) and drive its upstream call, a ``RequestCall``
(``services.providers.request_call``: the walk over the candidate
deployments, the answer streamed back chunk by chunk, the last reply); send
what it produces, record the request, keep the answer in the cache, and tell
every routing replica how each try went.

It also holds the gateway's sessions with upstream MCP servers and keeps
their catalogs (``McpSide``): it is the one stage that speaks MCP upstream,
so it is the one that lists what each server offers.

REST services (api "rest") are called through the generic HTTP adapter
(``services.providers.rest``) with each service's current record, mirrored
from ``sluice_services`` (``RestSide``): header rules, caps and timeouts
are read there, never from the envelope; their instances' health checks
reach every routing replica as tries do. A REST answer to a requester that
paces it is sent a window at a time: each ``Credit`` (every provider hears
them, as cancels) opens the window of the call it names.

A chat request of a tenant with a moderation guardrail is moderated first,
inside its ``RequestCall``; what the guardrail found is recorded as
detections, as the redaction stage records its own."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from schemas import bus, subjects
from schemas.cached_answer import CacheStore
from schemas.chat import Message
from schemas.envelope import Deployment, Envelope
from schemas.errors import ClientClosed, InternalError, RecordNotFound
from schemas.events import AlertEvent, AttemptEvent, Detection
from schemas.health import TryOutcome
from schemas.ids import new_id
from schemas.mcp import McpServer, ServerCatalog, decode_catalog, decode_server, kv_encode
from schemas.replies import Accepted, Cancel, Chunk, Credit, Failure, Fence, Fenced, Final, ReplayAsk
from schemas.rest import RestService, decode_service
from schemas.tasks import NativeBatchResult
from services import admission, answer_cache, call_logs, native_batch, privacy
from services import usage as usage_svc
from services.bus import process, quota_ledger
from services.bus.blobs import BlobStore
from services.bus.health_outbox import HealthOutbox
from services.bus.kv import KvMirror, kv_key
from services.config import settings_from_env
from services.fence import remembered_fences, reservation_copy
from services.flow_window import SendWindow
from services.providers.attempts import Try, WalkFailed, retryable
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import Upstream, make_upstream_http
from services.providers.logged_answer import logged_answer
from services.providers.moderation_gate import GuardrailStop
from services.providers.request_call import RequestCall
from services.providers.rest.call import FAIL_OVER_STATUSES, RestCaller
from services.providers.rest.client import RestClient
from services.providers.rest.health import CHECK_S, HealthChecks
from services.recent import RecentMap, RecentSet
from services.reply_log import ReplyLog
from workers import runner

if TYPE_CHECKING:
    from schemas.mcp import McpCall
    from services.providers.mcp.call import McpCaller
    from services.providers.mcp.keeper import CatalogKeeper
    from services.providers.mcp.pool import McpPool

# Request ids are remembered this long (and at most this many): a cancel that
# arrives before its request (the client left while the request was still in
# policy or routing), so the request is not sent upstream when it gets here;
# and the requests taken, so that a copy the ingress sent again is ignored.
MEMORY_NS = 60 * 1_000_000_000
MEMORY_MAX = 50_000


_decode_cancel = msgspec.msgpack.Decoder(Cancel).decode
_decode_replay_ask = msgspec.msgpack.Decoder(ReplayAsk).decode
_decode_fence = msgspec.msgpack.Decoder(Fence).decode
_decode_credit = msgspec.msgpack.Decoder(Credit).decode


class McpSide:
    """The provider's MCP side: the servers' and catalogs' buckets mirrored,
    a session pool with the servers, the keeper of their catalogs, and the
    caller an MCP request's tries go through.

    The pool, keeper and caller are made when the servers' mirror first
    holds a server (``_load``): they import the ``mcp`` SDK (with pydantic
    and httpx2, ~50 MB of the process's memory), which a gateway with no
    MCP server should not pay for in every pipeline process. The mirrors are
    msgspec only, and start at once."""

    def __init__(self, refresh_s: float | None = None) -> None:
        self.refresh_s = refresh_s
        self.pool: McpPool | None = None
        self.keeper: CatalogKeeper | None = None
        self.caller: McpCaller | None = None
        self.servers: KvMirror[McpServer] = KvMirror(subjects.KV_MCP_SERVERS, decode_server, self._server_changed)
        self.catalogs: KvMirror[ServerCatalog] = KvMirror(subjects.KV_MCP_CATALOG, decode_catalog)
        self._kv: KeyValue | None = None
        self._started = False

    async def start(self, js: JetStreamContext) -> None:
        bucket = subjects.KV_MCP_CATALOG
        self._kv = await process.jetstream_ready(lambda: js.key_value(bucket), f"bucket {bucket}")
        await self.catalogs.start(js)
        await self.servers.start(js)
        self._started = True
        if self.keeper is not None:
            self.keeper.start()

    def _server_changed(self, name: str, old: McpServer | None, new: McpServer | None) -> None:
        if self.keeper is not None:
            self.keeper.server_changed(name, old, new)
        elif new is not None:
            self._load()

    def _load(self) -> None:
        """The pool, keeper and caller, with the SDK they import (here, not
        at the module's top: see the class's doc). The keeper starts with the
        servers the mirror holds, the one just registered included."""
        from services.providers.mcp.call import McpCaller
        from services.providers.mcp.keeper import REFRESH_S, CatalogKeeper
        from services.providers.mcp.pool import McpPool

        self.pool = McpPool()
        refresh_s = self.refresh_s if self.refresh_s is not None else REFRESH_S
        self.keeper = CatalogKeeper(
            self.pool, self.servers.items, self.catalogs.items, self._write, self._delete, refresh_s
        )
        self.caller = McpCaller(self.pool, self.servers.items)
        if self._started:  # else ``start`` starts it once both mirrors are current
            self.keeper.start()

    async def call(self, dep: Deployment, call: McpCall, progress: CallProgress) -> CallOutcome:
        """One try of an MCP request (``RequestCall``'s ``mcp``)."""
        if self.caller is None:  # no server was ever registered here: none to call
            error = RecordNotFound(f"MCP server {call.server!r} is not registered.", code="tool_not_found")
            raise CallFailed(error, time.time_ns(), 0)
        return await self.caller.call(dep, call, progress)

    async def _write(self, catalog: ServerCatalog) -> None:
        assert self._kv is not None
        await self._kv.put(kv_key(catalog.server), kv_encode(catalog))
        self.catalogs.apply(catalog.server, catalog)

    async def _delete(self, name: str) -> None:
        assert self._kv is not None
        await self._kv.delete(kv_key(name))
        self.catalogs.apply(name, None)

    async def stop(self) -> None:
        if self.keeper is not None:
            await self.keeper.stop()
        await self.servers.stop()
        await self.catalogs.stop()
        if self.pool is not None:
            await self.pool.aclose()


class RestSide:
    """The provider's REST side: the services' bucket mirrored, the
    process's HTTP client for them, the caller a REST request's tries go
    through, and the instances' health checks (their outcomes published as
    tries' are, so every routing replica's breakers hear them)."""

    def __init__(self, health_s: float = CHECK_S) -> None:
        self.services: KvMirror[RestService] = KvMirror(subjects.KV_SERVICES, decode_service, self._changed)
        self.client = RestClient()
        self.caller = RestCaller(self.client, self.services.items)
        self.health = HealthChecks(self.client, self.services.items, health_s)

    def _changed(self, _key: str, _old: RestService | None, _new: RestService | None) -> None:
        self.health.services_changed()

    async def start(self, js: JetStreamContext, nc: Client) -> None:
        async def publish(outcome: TryOutcome) -> None:
            await nc.publish(subjects.HEALTH_ATTEMPT, bus.encode(outcome))

        await self.services.start(js)
        self.health.start(publish)

    async def stop(self) -> None:
        await self.health.stop()
        await self.services.stop()
        await self.client.aclose()


class ProviderStage:
    name = "provider"
    listen_on = (subjects.STAGE_CALL,)
    entry = False
    concurrent = True

    def __init__(self) -> None:
        self.client: Upstream | None = None
        self._nc: Client | None = None
        self._instance = ""
        self.inflight: dict[str, asyncio.Task] = {}
        # request id -> the window of its REST answer, for a requester that paces it
        self.windows: dict[str, SendWindow] = {}
        # request id -> when its client went away
        self.cancelled = RecentSet(MEMORY_NS, MEMORY_MAX)
        # request id -> when it arrived: the ingress may send a request again
        # when it saw no acceptance in time; a second copy is not called again.
        # (and the copy whose reservation it came with: see ``reservation_copy``)
        self.seen: RecentMap[int] = RecentMap(MEMORY_NS, MEMORY_MAX)
        # request id -> the lowest copy this process may still take (see ``services.fence``)
        self.fences = remembered_fences(settings_from_env().request_timeout_s)
        # deployment name -> calls in flight from this process (least-busy routing)
        self.calls: dict[str, int] = {}
        self.replies = ReplyLog()
        self.mcp = McpSide()
        self.rest = RestSide()
        # What a request uploaded, and where the images it makes are kept
        # (``OBJ_MEDIA``: this role may not purge, so a write cut short ages out).
        self.blobs: BlobStore | None = None
        self.health: HealthOutbox | None = None

    async def start(self, ctx: runner.StageContext) -> None:
        self.client = make_upstream_http()
        self.health = HealthOutbox(ctx.nc)
        self.blobs = BlobStore(ctx.js, may_purge=False)
        await self.blobs.start()
        await self.mcp.start(ctx.js)
        await self.rest.start(ctx.js, ctx.nc)
        await ctx.nc.subscribe(subjects.CONTROL_CANCEL, cb=self._on_cancel)
        ctx.replies = self.replies
        self._nc = ctx.nc
        await ctx.nc.subscribe(subjects.CONTROL_REPLAY, cb=self._on_replay)
        self._instance = ctx.instance
        await ctx.nc.subscribe(subjects.CONTROL_FENCE, cb=self._on_fence)
        # Services on the bus cancel their own requests here (by id: ids are
        # not guessable, so a caller can only cancel one it was told of).
        await ctx.nc.subscribe(subjects.IN_CANCEL, cb=self._on_cancel)
        await ctx.nc.subscribe(subjects.CONTROL_CREDIT, cb=self._on_credit)
        await ctx.nc.subscribe(subjects.IN_CREDIT, cb=self._on_credit)

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            cancel = _decode_cancel(msg.data)
        except msgspec.DecodeError:  # not a Cancel: anyone allowed on the subject may send anything
            return
        self.cancelled.add(cancel.id)
        task = self.inflight.get(cancel.id)
        if task is not None:
            task.cancel()

    async def _on_credit(self, msg: Msg) -> None:
        try:
            credit = _decode_credit(msg.data)
        except msgspec.DecodeError:
            return
        window = self.windows.get(credit.id)
        if window is not None:  # else another process holds the call, or it ended
            window.grant(credit.through)

    async def _on_replay(self, msg: Msg) -> None:
        """Send a request's replies again from ``from_seq`` on, if this
        process holds them (every provider hears the ask)."""
        try:
            ask = _decode_replay_ask(msg.data)
        except msgspec.DecodeError:
            return
        kept = self.replies.replies(ask.id)
        nc = self._nc
        if kept is None or nc is None:
            return
        reply_to, payloads, _ = kept
        for payload in payloads:
            reply = bus.decode_reply(payload)
            # Accepted is not sent again: the ingress asks only once it had it.
            if isinstance(reply, Chunk | Final | Failure) and reply.seq >= ask.from_seq:
                await nc.publish(reply_to, payload)

    async def _on_fence(self, msg: Msg) -> None:
        """Say whether this process took a copy of the request; if it did
        not, it takes none older than the fence's from now on. Both the
        check and the mark happen before any await, as in ``handle``: a copy
        is either taken before the fence (this answers "holds") or refused."""
        try:
            fence = _decode_fence(msg.data)
        except msgspec.DecodeError:
            return
        if self._nc is None or not admission.valid_reply_subject(msg.reply or ""):
            return
        holds = fence.id in self.seen
        if not holds:
            self.fences.raise_to(fence.id, fence.copy, fence.carries)
        answer = Fenced(id=fence.id, worker=self._instance, holds=holds, copy=fence.copy)
        await self._nc.publish(msg.reply, bus.encode(answer))

    async def _tried(self, ctx: runner.StageContext, env: Envelope, t: Try, *, says_health: bool = True) -> None:
        """An attempt row, and the outcome every routing replica's health
        board hears (``says_health``: the try's end tells of the deployment,
        not of the client leaving or the gateway stopping)."""
        dep = t.deployment
        ctx.events.emit(
            AttemptEvent(
                event_id=new_id(),
                request_id=env.id,
                started_at_ns=t.start_ns,
                deployment=dep.name,
                provider=dep.provider,
                upstream_model=dep.upstream_model,
                status=t.status,
                stream=env.stream,
                error_code=t.error.code if t.error else "",
                error_message=t.error.message[:1000] if t.error else "",
                ttfb_ns=(t.first_byte_ns - t.start_ns) if t.first_byte_ns else 0,
                duration_ns=t.end_ns - t.start_ns,
                number=t.number,
            )
        )
        if not says_health or (t.error is not None and not retryable(t.error)):
            return  # the caller's mistake (a 400) says nothing of the deployment's health
        # A REST instance's 502-504, relayed as the service's answer, still says it could not serve.
        outcome = TryOutcome(
            deployment=dep.name,
            ok=t.error is None and not (env.rest is not None and t.status in FAIL_OVER_STATUSES),
            at_ns=t.end_ns,
            ttfb_ns=(t.first_byte_ns - t.start_ns) if t.first_byte_ns and t.error is None else 0,
            tokens=t.tokens,
            in_flight=self.calls.get(dep.name, 0),
            replica=ctx.instance,
        )
        if self.health is not None:
            await self.health.tell(outcome)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
        if not env.candidates or self.client is None:
            raise InternalError("Request reached the provider stage without a deployment.")
        if not self.fences.admits(env.id, env.copy):
            # Sent before a fence this process answered: the requester has moved on.
            if self.fences.orphans(env.id, env.quota):
                quota_ledger.release(ctx.counters, env.quota)
            return
        new, taken_with = self.seen.add(env.id, reservation_copy(env.quota))
        if not new:  # a copy the ingress sent again, which this process already took
            # It carries the taken copy's reservation, which that copy settles,
            # unless it was sent before its requester heard of that one.
            if env.quota is not None and env.quota.copy != taken_with:
                quota_ledger.release(ctx.counters, env.quota)
            return
        if env.id in self.cancelled:  # its client left before it got here: never sent upstream
            first = env.candidates[0]
            closed = ClientClosed("The client closed the connection before the upstream was called.")
            failure = Failure.from_error(env.id, closed, deployment=first.name, provider=first.provider)
            await ctx.finish(env, failure, start_ns, client_disconnected=True)
            return
        call = RequestCall(
            env,
            self.client,
            send=lambda chunk: ctx.send(env, bus.encode(chunk)),
            tried=lambda t, says_health: self._tried(ctx, env, t, says_health=says_health),
            in_flight=self.calls,
            mcp=self.mcp,
            rest=self.rest.caller,
            blobs=self.blobs,
        )
        self.inflight[env.id] = asyncio.current_task()  # type: ignore[assignment]
        if call.window is not None:
            self.windows[env.id] = call.window
        if env.progress:
            await ctx.send(env, bus.encode(Accepted(id=env.id, worker=ctx.instance)))
            # On the socket before the upstream hears of the request: if this
            # process dies calling it, the requester knows who held it and
            # does not send it again.
            await process.written(ctx.nc)
        try:
            outcome = await call.run()
        except (GuardrailStop, WalkFailed, TimeoutError, asyncio.CancelledError) as exc:
            client_gone = isinstance(exc, asyncio.CancelledError) and env.id in self.cancelled
            failure = await call.failure(exc, client_gone=client_gone)
            self._report_guardrail(ctx, env, call)
            self._log_call(ctx, env, call, failure)
            # A Failure carries usage only when the upstream billed some.
            billed = failure.usage is not None
            await ctx.finish(
                env, failure, start_ns, billed=billed, ttft_ns=call.ttft_ns, client_disconnected=client_gone
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self.inflight.pop(env.id, None)
            self.windows.pop(env.id, None)
        self._alert_if_free(ctx, env, outcome, call.deployment)
        final = await call.final(outcome)
        self._report_guardrail(ctx, env, call)
        self._report_output(ctx, env, call.detections())
        self._log_call(ctx, env, call, final)
        if isinstance(final.task_result, NativeBatchResult) and env.quota is not None:
            # What the lines may spend stays held until their results settle it (``ingress.batch_native``);
            # the submit's own end gives back the rest (its parallel slot) now.
            final.task_result.reservation, env.quota = native_batch.split_reservation(env.quota)
        await ctx.finish(env, final, start_ns, billed=True, ttft_ns=call.ttft_ns)
        if env.cache_key and env.cache_ttl_s > 0:
            await self._keep(ctx, env, final, call.written)

    @staticmethod
    def _alert_if_free(ctx: runner.StageContext, env: Envelope, outcome: CallOutcome, dep: Deployment) -> None:
        if outcome.count is not None or isinstance(outcome.task_result, NativeBatchResult):
            return  # a token count is free by design, and a native batch's lines are billed on their own rows
        if not usage_svc.is_suspiciously_free(outcome.cost, dep.catalog_model):
            return
        ctx.events.emit(
            AlertEvent(
                event_id=new_id(),
                request_id=env.id,
                at_ns=time.time_ns(),
                alert="zero_cost",
                model=env.model,
                deployment=dep.name,
                detail=f"priced model {dep.catalog_model!r} cost 0 (usage {outcome.usage.source}: "
                f"{outcome.usage.prompt_tokens} in, {outcome.usage.completion_tokens} out)",
            )
        )

    @staticmethod
    def _log_call(ctx: runner.StageContext, env: Envelope, call: RequestCall, reply: Final | Failure) -> None:
        """The call log, for a tenant that opted in."""
        if env.call_log_max_bytes > 0:
            status = reply.status if isinstance(reply, Failure) else 200
            ctx.events.emit(call_logs.entry(env, status, logged_answer(call, reply), time.time_ns()))

    @staticmethod
    def _report_output(ctx: runner.StageContext, env: Envelope, found: list[Detection]) -> None:
        p = env.privacy
        if p is None:
            return
        for event in privacy.events(env.id, env.tenant_id, found, p.version, time.time_ns()):
            ctx.events.emit(event)

    @staticmethod
    def _report_guardrail(ctx: runner.StageContext, env: Envelope, call: RequestCall) -> None:
        """What the tenant's moderation guardrail found, as the redaction
        stage's detections are recorded (under no rules' version: the
        guardrail's setting has none)."""
        found = call.guardrail_found()
        for event in privacy.events(env.id, env.tenant_id, found, 0, time.time_ns()):
            ctx.events.emit(event)

    async def _keep(self, ctx: runner.StageContext, env: Envelope, final: Final, message: Message | None) -> None:
        """Ask the cache stage to keep a whole answer (sent after the Final,
        so the client never waits on it). One too large for a NATS message is
        not kept."""
        answer = answer_cache.answer_of(final, message, time.time_ns() // 1_000_000, env.cache_ttl_s)
        payload = bus.encode(CacheStore(key=env.cache_key, ttl_s=env.cache_ttl_s, answer=answer))
        if len(payload) <= ctx.nc.max_payload - 1024:
            await ctx.nc.publish(subjects.CACHE_STORE, payload)

    async def stop(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        if self.inflight:
            await asyncio.wait(list(self.inflight.values()), timeout=1.0)
        if self.health is not None:
            await self.health.close()
        if self.client is not None:
            await self.client.aclose()
        await self.mcp.stop()
        await self.rest.stop()


if __name__ == "__main__":
    runner.main(ProviderStage())
