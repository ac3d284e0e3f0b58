"""Redaction stage: apply the tenant's redaction rules to the prompt."""

from __future__ import annotations

from nats.aio.msg import Msg

from schemas import subjects
from schemas.control import Tenant, decode_tenant
from schemas.envelope import Envelope
from services import redaction
from services.runtime.kv import KvMirror
from workers import runner


class RedactionStage:
    name = "redact"
    listen_on = (subjects.STAGE_REDACT,)
    entry = False
    concurrent = False

    def __init__(self) -> None:
        self.tenants: KvMirror[Tenant] = KvMirror(subjects.KV_TENANTS, decode_tenant)

    async def start(self, ctx: runner.StageContext) -> None:
        await self.tenants.start(ctx.js)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg, start_ns: int) -> None:
        tenant = self.tenants.items.get(env.tenant_id)
        # The client's own bytes would carry the prompt past redaction.
        env.raw = b""
        if tenant is not None and tenant.redaction_rules:
            if env.body is not None:
                redaction.redact_messages(env.body.messages, tenant.redaction_rules)
            if env.embeddings is not None:
                redaction.redact_embeddings_input(env.embeddings, tenant.redaction_rules)
        await ctx.forward(env, start_ns)

    async def stop(self) -> None:
        await self.tenants.stop()


if __name__ == "__main__":
    runner.main(RedactionStage())
