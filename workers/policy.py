"""Policy stage: authenticate, check model access and approval, admit under
limits and budgets, build the routing slip."""

from __future__ import annotations

import msgspec
from nats.aio.msg import Msg

from schemas import bus, subjects
from schemas.control import (
    ApiKey,
    ApprovalRule,
    ModelRoute,
    Subscription,
    Tenant,
    decode_approval_rule,
    decode_route,
    decode_subscription,
    decode_tenant,
)
from schemas.envelope import Envelope
from schemas.errors import InvalidRequest, PermissionDenied
from schemas.mcp import McpCall, McpServer, ServerCatalog, decode_catalog, decode_server
from schemas.replies import Admitted, Fence
from schemas.rest import RestService, decode_service
from schemas.tasks import NativeBatchRequest
from services import (
    admission,
    answer_cache,
    mcp_policy,
    moderation_guardrail,
    native_batch,
    policy,
    pricing,
    privacy,
    rest_policy,
    routing,
    task_policy,
    tokens,
    trace,
    usage,
)
from services import quota as quota_svc
from services.bus.key_usage import LastUsed
from services.bus.kv import KeyIndex, KvMirror
from services.bus.quota_ledger import QuotaLedger, release
from services.bus.request_ids import RequestIds
from services.config import settings_from_env
from services.fence import remembered_fences
from workers import runner

_decode_fence = msgspec.msgpack.Decoder(Fence).decode


class PolicyStage:
    name = "policy"
    listen_on = (subjects.IN_CHAT, subjects.FROM_INGRESS)
    entry = True
    concurrent = False

    def __init__(self) -> None:
        settings = settings_from_env()
        self.timeout_s = settings.request_timeout_s
        self.default_max_output = settings.default_max_output_tokens
        self.redaction_budget_ns = int(settings.redaction_budget_s * 1e9)
        self.ids = admission.RecentIds()
        self.keys = KeyIndex()
        self.tenants: KvMirror[Tenant] = KvMirror(subjects.KV_TENANTS, decode_tenant)
        self.table = routing.RouteTable()
        self.routes: KvMirror[ModelRoute] = KvMirror(subjects.KV_MODELS, decode_route, self.table.changed)
        self.subscriptions: KvMirror[Subscription] = KvMirror(subjects.KV_SUBSCRIPTIONS, decode_subscription)
        self.approval_rules: KvMirror[ApprovalRule] = KvMirror(subjects.KV_APPROVAL_RULES, decode_approval_rule)
        self.mcp_servers: KvMirror[McpServer] = KvMirror(subjects.KV_MCP_SERVERS, decode_server)
        self.mcp_catalogs: KvMirror[ServerCatalog] = KvMirror(subjects.KV_MCP_CATALOG, decode_catalog)
        self.services: KvMirror[RestService] = KvMirror(subjects.KV_SERVICES, decode_service)
        self.ledger: QuotaLedger | None = None
        self.last_used: LastUsed | None = None
        self.request_ids = RequestIds()
        # request id -> the lowest copy still admitted: a copy the ingress sent
        # again while an older one waited here (a stall, a first limited
        # request building its tokenizer) is admitted once, not once per copy.
        self.fences = remembered_fences(self.timeout_s)

    async def start(self, ctx: runner.StageContext) -> None:
        for mirror in self._mirrors():
            await mirror.start(ctx.js)
        self.ledger = QuotaLedger(ctx.counters)
        self.ledger.start()
        self.last_used = LastUsed(ctx.js)
        self.last_used.start()
        await self.request_ids.start(ctx.js)
        await ctx.nc.subscribe(subjects.CONTROL_FENCE, cb=self._on_fence)
        # Token limits and budgets count prompts. The encodings are built
        # when first counted with (``_tokenizers_ready``: ~50 MB for o200k,
        # which a gateway without limits never needs); a broken install
        # still stops the process here.
        tokens.check_shipped()
        pricing.load_catalog()

    async def _on_fence(self, msg: Msg) -> None:
        """Heard, not answered: the providers answer fences (``services.fence``)."""
        try:
            fence = _decode_fence(msg.data)
        except msgspec.DecodeError:
            return
        self.fences.raise_to(fence.id, fence.copy, fence.carries)

    def _mirrors(self) -> tuple[KeyIndex | KvMirror, ...]:
        return (
            self.keys,
            self.tenants,
            self.routes,
            self.subscriptions,
            self.approval_rules,
            self.mcp_servers,
            self.mcp_catalogs,
            self.services,
        )

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
        assert msg is not None  # the entry stage: requests come in from the bus only
        # First: a row written for a refusal below must not carry a trace id the caller planted.
        traceparent = msg.headers.get(subjects.TRACEPARENT_HEADER) if msg.headers else None
        env.trace_id, env.parent_span_id = trace.parse(traceparent)
        from_ingress = msg.subject == subjects.FROM_INGRESS
        # A reservation is policy's to make. Only the ingress may bring one: on a
        # request it sends again, the one policy made for the first copy.
        resent = env.quota if from_ingress else None
        env.quota = None
        own_id = admission.admit(
            env, start_ns, self.timeout_s, from_ingress=from_ingress, ids=self.ids, nats_reply=msg.reply or ""
        )
        # Another replica may have served this id: one of the two is refused.
        if own_id and not await self.request_ids.take(env.id, ctx.instance):
            admission.refuse_reused(env, start_ns)
        mcp = mcp_policy.check_call(env) if env.api == "mcp" else None
        rest = rest_policy.check_call(env) if env.api == "rest" else None
        if mcp is None and rest is None:
            policy.check_body(env)
        now_ms = start_ns // 1_000_000
        header = msg.headers.get(subjects.API_KEY_HEADER) if msg.headers else None
        # A durable job's request names its key by id: only the ingress may
        # publish on its subject, and it checked the secret when the job came in.
        key_id = msg.headers.get(subjects.KEY_ID_HEADER) if from_ingress and msg.headers else None
        if key_id:
            key = policy.key_by_id(key_id, self.keys.mirror.items, now_ms)
        else:
            key = policy.authenticate(header, self.keys.by_hash, now_ms)
        env.key_id, env.tenant_id = key.id, key.tenant_id
        if env.task is not None:
            task_policy.check_refs(env.task, key.tenant_id)
            if isinstance(env.task, NativeBatchRequest) and not from_ingress:
                raise PermissionDenied("Only the gateway's batch runner sends a native batch's steps.")
        assert self.last_used is not None and self.ledger is not None
        self.last_used.saw(key.id, now_ms)
        tenant = self.tenants.items.get(key.tenant_id)
        route: ModelRoute | None = None
        server: McpServer | None = None
        service: RestService | None = None
        if rest is not None:
            policy.check_pin(key, env.pin)
            # A service is no model: its key patterns, lifecycle and approval stand for the model checks.
            service = rest_policy.check_access(rest, key, self.services.items, self.subscriptions.items.values())
        elif mcp is not None:
            policy.check_pin(key, env.pin)
            # A tool is no model: the MCP allow-list and the server's approval stand for the model checks.
            server = mcp_policy.check_access(
                mcp, tenant, key, self.mcp_servers.items, self.mcp_catalogs.items, self.subscriptions.items.values()
            )
        else:
            route = self.table.find(env.model)
            policy.check_model(key, env.model, route)
            policy.check_pin(key, env.pin)
            if policy.needs_approval(env.model, route, self.approval_rules.items.values()):
                group = route.name if route is not None else env.model
                policy.check_subscription(key.tenant_id, group, self.subscriptions.items.values())
        admitted = False
        if resent is None and mcp is None and rest is None:
            await self._tokenizers_ready(env, key, tenant, route)
        if from_ingress and not self.fences.admits(env.id, env.copy):
            # The ingress sent a newer copy meanwhile (this one waited here, in
            # a stall or behind a first limited request's tokenizer build):
            # admitting it too would hold the request's units twice and could
            # refuse the newer copy on a tight budget. Dropped unanswered, as a
            # provider drops it.
            if self.fences.orphans(env.id, resent):
                release(ctx.counters, resent)
            return
        if resent is not None:
            env.quota = resent
        else:
            if wanted := self._wanted(env, key, tenant, route, mcp, server, service, now_ms):
                env.quota = await self.ledger.admit(wanted, now_ms)
                env.quota.copy = env.copy
                admitted = True
                if from_ingress and not self.fences.admits(env.id, env.copy):
                    release(ctx.counters, env.quota)  # fenced while it was admitted
                    return
        screened = rest_policy.screened(tenant, service)
        rules = privacy.rules_of(screened) if screened is not None else None
        # A masked answer is restored per request: a cached one would carry another caller's values.
        masking = privacy.masks(rules)
        # A token count is not kept either: it is cheap, and the cache keeps answers.
        # Nor is a tool's result: a call acts (or reads what changes), it is not a completion to reuse.
        # Nor is a REST service's answer: HTTP caching is the service's to say, not a completion's.
        # Nor is a task's: images and speech are made anew each time, and their bytes age out of the store.
        keeps = answer_cache.cacheable(env.body) and not masking and env.api not in ("count_tokens", "mcp", "rest")
        keeps = keeps and env.task is None
        # The tenant's moderation guardrail runs in the provider stage, which a cache hit never reaches.
        env.moderation = moderation_guardrail.check_for(tenant, env)
        keeps = keeps and env.moderation is None
        if tenant is not None and tenant.cache is not None and keeps:
            env.cache_ttl_s, env.cache_lookup = answer_cache.decide(env.cache_control, tenant.cache)
        # A caller's own value is never kept: only its tenant opts in.
        env.call_log_max_bytes = tenant.call_log_max_bytes if tenant is not None else 0
        env.privacy = None
        env.slip = policy.build_slip(screened, cached=env.cache_ttl_s > 0)
        redacting = subjects.STAGE_REDACT in env.slip
        # The rules routed with: a redaction replica that holds older ones refuses the request.
        env.rules_version = rules.version if rules is not None and redacting else 0
        redaction_by = start_ns + self.redaction_budget_ns if redacting else 0
        screened_out = redacting or (tenant is not None and tenant.moderation is not None)
        if isinstance(env.task, NativeBatchRequest) and env.task.op == "submit" and screened_out:
            # Its lines would reach the upstream unread by them: they run one by one instead.
            raise InvalidRequest(
                "The tenant's redaction or moderation reads every request; this batch's lines run one by one.",
                code=native_batch.SCREENED,
            )
        if env.progress and (admitted or redaction_by):
            reservation = env.quota if admitted else None
            await ctx.send(env, bus.encode(Admitted(id=env.id, quota=reservation, redaction_by_ns=redaction_by)))
        await ctx.forward(env, start_ns)

    def _wanted(
        self,
        env: Envelope,
        key: ApiKey,
        tenant: Tenant | None,
        route: ModelRoute | None,
        mcp: McpCall | None,
        server: McpServer | None,
        service: RestService | None,
        now_ms: int,
    ) -> list[quota_svc.Need]:
        if service is not None:
            return rest_policy.needs(service, key, tenant, now_ms)
        if mcp is not None and server is not None:
            return mcp_policy.needs(mcp, server, key, tenant, now_ms)
        return self._needs(env, key, tenant, route, now_ms)

    async def _tokenizers_ready(
        self, env: Envelope, key: ApiKey, tenant: Tenant | None, route: ModelRoute | None
    ) -> None:
        """Build, off the event loop, the encodings ``_needs`` is about to
        count with, the first time each is needed: built there, a first
        limited request would hold up every stage and stream of this
        process for as long as the build takes."""
        if _limited(key, tenant) and (models := _counted_models(env, route)) is not None:
            await tokens.load(*{usage.tokenizer_for(m)[0] for m in models or [None]})

    def _needs(
        self, env: Envelope, key: ApiKey, tenant: Tenant | None, route: ModelRoute | None, now_ms: int
    ) -> list[quota_svc.Need]:
        limited = _limited(key, tenant)
        if not limited:
            return []
        if env.api == "count_tokens":
            # A count uses no tokens and costs nothing: it takes a request
            # (and a parallel slot) from the limits, nothing from the rest.
            prompt, output, cost = 0, 0, 0
        elif isinstance(env.task, NativeBatchRequest):
            if env.task.op != "submit":
                return []  # the submit took what the batch may cost; its other steps take nothing
            # The lines' worst case at the batch price (the ingress's count: only it sends these).
            prompt, output, cost = 0, 0, env.task.cost_pico_usd
        elif env.task is not None:
            # Priced per image, second, character or search: the dearest any deployment may charge.
            (prompt, cost), output = quota_svc.estimate_task(env.task, _counted_models(env, route) or []), 0
        else:
            [catalog_model] = _counted_models(env, route) or [None]
            prompt, output = quota_svc.estimate(env.body, env.embeddings, catalog_model, self.default_max_output)
            cost = quota_svc.estimate_cost(prompt, output, catalog_model)
        out: list[quota_svc.Need] = []
        for r, scope in limited:
            out += quota_svc.needs(scope, r.id, r.limits, r.budget, r.created_at_ms, now_ms, prompt + output, cost)
        return out

    async def stop(self) -> None:
        for mirror in self._mirrors():
            await mirror.stop()
        if self.ledger is not None:
            await self.ledger.close()
        if self.last_used is not None:
            await self.last_used.close()


def _counted_models(env: Envelope, route: ModelRoute | None) -> list[str | None] | None:
    """The catalog models a limited request's estimate counts its text for
    (``_needs``, and the encodings ``_tokenizers_ready`` builds ahead); None
    when it counts none (a token count, a native batch's steps)."""
    if env.api == "count_tokens" or isinstance(env.task, NativeBatchRequest):
        return None
    if env.task is not None:  # the dearest any deployment may charge
        return [d.catalog_model for d in route.deployments] if route is not None else []
    return [routing.priciest_catalog_model(route) if route is not None else None]


def _limited(key: ApiKey, tenant: Tenant | None) -> list[tuple[ApiKey | Tenant, str]]:
    """The key and its tenant, each with its scope, where it has limits or a budget."""
    both: list[tuple[ApiKey | Tenant | None, str]] = [(key, "key"), (tenant, "tenant")]
    return [(r, scope) for r, scope in both if r is not None and (r.limits.any() or r.budget is not None)]


if __name__ == "__main__":
    runner.main(PolicyStage())
