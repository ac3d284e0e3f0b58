"""Provider stage: call the upstream, stream its answer back chunk by chunk."""

from __future__ import annotations

import asyncio
import time

import msgspec
from nats.aio.msg import Msg

from schemas import bus, subjects
from schemas.chat import Delta
from schemas.envelope import Deployment, Envelope
from schemas.errors import CLIENT_CLOSED_STATUS, GatewayError, InternalError, UpstreamTimeout
from schemas.events import AlertEvent, AttemptEvent
from schemas.ids import new_id
from schemas.replies import Accepted, Cancel, Chunk, Failure, Final, Timing
from services import usage as usage_svc
from services.providers.call import CallFailed, CallOutcome, OnDelta, call_chat, call_embeddings
from services.providers.http import UpstreamHTTP, make_upstream_http
from workers import runner


class ProviderStage:
    name = "provider"
    listen_on = (subjects.STAGE_CALL,)
    entry = False
    concurrent = True

    def __init__(self) -> None:
        self.client: UpstreamHTTP | None = None
        self.inflight: dict[str, asyncio.Task] = {}

    async def start(self, ctx: runner.StageContext) -> None:
        self.client = make_upstream_http()
        await ctx.nc.subscribe(subjects.CONTROL_CANCEL, cb=self._on_cancel)

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            cancel = bus.decode(msg.data)
        except msgspec.DecodeError:
            return
        task = self.inflight.get(cancel.id) if isinstance(cancel, Cancel) else None
        if task is not None:
            task.cancel()

    def _attempt(
        self,
        ctx: runner.StageContext,
        env: Envelope,
        dep: Deployment,
        status: int,
        start: int,
        first: int,
        code: str = "",
    ) -> None:
        now = time.time_ns()
        ctx.events.emit(
            AttemptEvent(
                event_id=new_id(),
                request_id=env.id,
                started_at_ns=start,
                deployment=dep.name,
                provider=dep.provider,
                upstream_model=dep.upstream_model,
                status=status,
                stream=env.stream,
                error_code=code,
                ttfb_ns=(first - start) if first else 0,
                duration_ns=now - start,
            )
        )

    async def _upstream_failed(
        self,
        ctx: runner.StageContext,
        env: Envelope,
        error: GatewayError,
        seq: int,
        start_ns: int,
        call_start_ns: int,
        first_byte_ns: int,
    ) -> None:
        dep = env.deployment
        assert dep is not None
        self._attempt(ctx, env, dep, error.status, call_start_ns, first_byte_ns, error.code)
        failure = Failure.from_error(env.id, error, seq, deployment=dep.name, provider=dep.provider)
        failure.timing = Timing(
            upstream_start_ns=call_start_ns, upstream_first_byte_ns=first_byte_ns, upstream_end_ns=time.time_ns()
        )
        await ctx.finish(env, failure, start_ns)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg, start_ns: int) -> None:
        dep = env.deployment
        if dep is None or self.client is None:
            raise InternalError("Request reached the provider stage without a deployment.")
        seq = 0

        async def on_delta(delta: Delta, model: str) -> None:
            nonlocal seq
            await ctx.send(env, bus.encode(Chunk(id=env.id, seq=seq, delta=delta, model=model)))
            seq += 1

        self.inflight[env.id] = asyncio.current_task()  # type: ignore[assignment]
        if env.origin == "http":
            await ctx.send(env, bus.encode(Accepted(id=env.id, worker=ctx.instance)))
        call_start = time.time_ns()
        try:
            remaining = max(0.0, (env.deadline_ns - call_start) / 1e9)
            async with asyncio.timeout(remaining):
                outcome = await self._call(env, dep, on_delta)
        except CallFailed as exc:
            await self._upstream_failed(ctx, env, exc.error, seq, start_ns, exc.start_ns, exc.first_byte_ns)
            return
        except TimeoutError:
            error = UpstreamTimeout("Request deadline passed while waiting for the upstream.")
            await self._upstream_failed(ctx, env, error, seq, start_ns, call_start, 0)
            return
        except asyncio.CancelledError:
            self._attempt(ctx, env, dep, CLIENT_CLOSED_STATUS, call_start, 0, "client_closed")
            raise
        finally:
            self.inflight.pop(env.id, None)
        self._attempt(ctx, env, dep, 200, outcome.start_ns, outcome.first_byte_ns)
        if usage_svc.is_suspiciously_free(outcome.cost, dep.catalog_model):
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
        final = Final(
            id=env.id,
            seq=seq,
            model=outcome.model,
            usage=outcome.usage,
            cost_pico_usd=outcome.cost.total,
            cost=outcome.cost,
            message=outcome.message,
            embeddings=outcome.embeddings,
            finish_reason=outcome.finish_reason,
            deployment=dep.name,
            provider=dep.provider,
            timing=Timing(
                upstream_start_ns=outcome.start_ns,
                upstream_first_byte_ns=outcome.first_byte_ns,
                upstream_end_ns=outcome.end_ns,
            ),
        )
        await ctx.finish(env, final, start_ns)

    async def _call(self, env: Envelope, dep: Deployment, on_delta: OnDelta) -> CallOutcome:
        assert self.client is not None
        if env.embeddings is not None:
            return await call_embeddings(self.client, dep, env.embeddings)
        assert env.body is not None  # policy let through exactly one body
        return await call_chat(self.client, dep, env.body, on_delta=on_delta if env.body.stream else None)

    async def stop(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        if self.client is not None:
            await self.client.aclose()


if __name__ == "__main__":
    runner.main(ProviderStage())
