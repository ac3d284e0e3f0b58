"""Routing stage: the requested model's group -> the deployments to try, in order.

Besides requests it hears every try's outcome from every provider replica
(``HEALTH_ATTEMPT``) and keeps the shared health board; a breaker's change of
state is written to the ``sluice_health`` bucket, which every replica watches.
"""

from __future__ import annotations

import logging
import os
import random
import time

import msgspec
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import ModelRoute, decode_route
from schemas.envelope import Envelope
from schemas.events import AlertEvent
from schemas.health import BreakerRecord, BreakerStateName, TryOutcome, TryOutcomes, decode_breaker, decode_tries
from schemas.mcp import McpServer, ServerCatalog, decode_catalog, decode_server
from schemas.rest import RestService, decode_service
from services import mcp_routing, rest_routing, routing, tokens
from services.breaker import BreakerState
from services.bus.events import EventPublisher
from services.bus.kv import KvMirror, kv_key
from services.config import settings_from_env
from services.health import HealthBoard
from workers import runner

log = logging.getLogger("sluice.route")


class RoutingStage:
    name = "route"
    listen_on = (subjects.STAGE_ROUTE,)
    entry = False
    concurrent = False

    def __init__(self) -> None:
        settings = settings_from_env()
        self.default_max_output = settings.default_max_output_tokens
        self.table = routing.RouteTable()
        self.routes: KvMirror[ModelRoute] = KvMirror(subjects.KV_MODELS, decode_route, self.table.changed)
        self.board = HealthBoard(settings.breaker, settings.latency_window_s)
        self.breakers: KvMirror[BreakerRecord] = KvMirror(subjects.KV_HEALTH, decode_breaker, self._taken_over)
        self.mcp_servers: KvMirror[McpServer] = KvMirror(subjects.KV_MCP_SERVERS, decode_server, self._mcp_changed)
        self.mcp_catalogs: KvMirror[ServerCatalog] = KvMirror(subjects.KV_MCP_CATALOG, decode_catalog)
        # Every MCP server's instances as deployments: health is kept for these too.
        self.mcp_deployments: set[str] = set()
        self.services: KvMirror[RestService] = KvMirror(subjects.KV_SERVICES, decode_service, self._rest_changed)
        # And every REST service's instances (their health checks report here as tries).
        self.rest_deployments: set[str] = set()
        self.rng = random.Random()
        self.health_kv: KeyValue | None = None
        self.instance = ""
        self.events: EventPublisher | None = None

    async def start(self, ctx: runner.StageContext) -> None:
        # With the pid: a restarted replica of the same name takes over what
        # its predecessor wrote instead of taking it for its own.
        self.instance, self.events = f"{ctx.instance}#{os.getpid()}", ctx.events
        await self.routes.start(ctx.js)
        await self.breakers.start(ctx.js)
        await self.mcp_servers.start(ctx.js)
        await self.mcp_catalogs.start(ctx.js)
        await self.services.start(ctx.js)
        self.health_kv = await ctx.js.key_value(subjects.KV_HEALTH)
        await ctx.nc.subscribe(subjects.HEALTH_ATTEMPT, cb=self._on_try, pending_msgs_limit=1_000_000)

    def _mcp_changed(self, _name: str, _old: McpServer | None, _new: McpServer | None) -> None:
        self.mcp_deployments = {
            d.name for server in self.mcp_servers.items.values() for d in mcp_routing.deployments(server, "")
        }

    def _rest_changed(self, _name: str, _old: RestService | None, _new: RestService | None) -> None:
        self.rest_deployments = {
            d.name for service in self.services.items.values() for d in rest_routing.deployments(service)
        }

    def _taken_over(self, _name: str, _old: BreakerRecord | None, new: BreakerRecord | None) -> None:
        if new is not None and new.by != self.instance:
            self.board.take_over(new)

    async def _on_try(self, msg: Msg) -> None:
        try:
            told = decode_tries(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable try outcome on %s: dropped", msg.subject)
            return
        known = (self.table.deployments, self.mcp_deployments, self.rest_deployments)
        now = time.time()
        for outcome in told.tries if isinstance(told, TryOutcomes) else (told,):
            if not any(outcome.deployment in names for names in known):
                continue  # no group, server or service names it (any more): nothing to keep
            changed = self.board.record(outcome, now)
            if changed is not None:
                await self._announce(outcome, changed, now)

    async def _announce(self, outcome: TryOutcome, state: BreakerState, now: float) -> None:
        deployment = outcome.deployment
        reason = "a try failed" if state is BreakerState.OPEN else "a probe succeeded"
        log.warning("%s: deployment %s breaker %s (%s)", self.instance, deployment, state.value, reason)
        if self.events is not None:
            # Every routing replica sees the same try change the same breaker:
            # an id (and time) from that try makes their alerts one row.
            self.events.emit(
                AlertEvent(
                    event_id=f"breaker:{deployment}:{state.value}:{outcome.replica}:{outcome.at_ns}",
                    request_id="",
                    at_ns=outcome.at_ns,
                    alert=f"breaker_{state.value}",
                    deployment=deployment,
                    detail=reason,
                )
            )
        name: BreakerStateName = state.value  # type: ignore[assignment]
        record = BreakerRecord(deployment, name, int(now * 1000), by=self.instance, reason=reason)
        if self.health_kv is not None:
            try:
                await self.health_kv.put(kv_key(deployment), msgspec.msgpack.encode(record))
            except Exception:  # the board here already has it; others still hear the same tries
                log.exception("cannot write the breaker state of %s", deployment)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
        if env.rest is not None:
            plan = rest_routing.plan(self.services.items, env.rest, self.board, start_ns / 1e9, self.rng, env.pin)
            env.group, env.candidates, env.context_candidates = plan.group, plan.candidates, []
            env.arm, env.retries = "", plan.retries
            await ctx.forward(env, start_ns)
            return
        if env.tool is not None:
            plan = mcp_routing.plan(
                self.mcp_servers.items, self.mcp_catalogs.items, env.tool, self.board, start_ns / 1e9, self.rng, env.pin
            )
            env.group, env.candidates, env.context_candidates = plan.group, plan.candidates, []
            env.arm, env.retries = "", plan.retries
            await ctx.forward(env, start_ns)
            return
        request = routing.Request(
            env.model, env.api, env.key_id, body=env.body, embeddings=env.embeddings, pin=env.pin, task=env.task
        )
        if counted := routing.counted_with(self.table, request):
            await tokens.load(*counted)  # built here, the first build would hold up the whole process
        plan = routing.plan(self.table, request, self.board, start_ns / 1e9, self.rng, self.default_max_output)
        env.group, env.candidates, env.context_candidates = plan.group, plan.candidates, plan.context_candidates
        env.arm, env.retries = plan.arm, plan.retries
        if env.moderation is not None:
            # The tenant's guardrail: its moderation group's deployments, for the provider to call first.
            env.moderation = routing.plan_moderation(
                self.table, env.moderation, env.key_id, self.board, start_ns / 1e9, self.rng
            )
        await ctx.forward(env, start_ns)

    async def stop(self) -> None:
        for mirror in (self.routes, self.breakers, self.mcp_servers, self.mcp_catalogs, self.services):
            await mirror.stop()


if __name__ == "__main__":
    runner.main(RoutingStage())
