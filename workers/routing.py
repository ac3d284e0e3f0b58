"""Routing stage: resolve the model name to the deployment that serves it."""

from __future__ import annotations

from nats.aio.msg import Msg

from schemas import subjects
from schemas.control import ModelRoute, decode_route
from schemas.envelope import Envelope
from services import routing
from services.runtime.kv import KvMirror
from workers import runner


class RoutingStage:
    name = "route"
    listen_on = (subjects.STAGE_ROUTE,)
    entry = False
    concurrent = False

    def __init__(self) -> None:
        self.routes: KvMirror[ModelRoute] = KvMirror(subjects.KV_MODELS, decode_route)

    async def start(self, ctx: runner.StageContext) -> None:
        await self.routes.start(ctx.js)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg, start_ns: int) -> None:
        env.deployment = routing.resolve(self.routes.items, env.model, env.api)
        await ctx.forward(env, start_ns)

    async def stop(self) -> None:
        await self.routes.stop()


if __name__ == "__main__":
    runner.main(RoutingStage())
