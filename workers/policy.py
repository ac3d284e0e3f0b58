"""Policy stage: authenticate, check model access, build the routing slip."""

from __future__ import annotations

from nats.aio.msg import Msg

from schemas import subjects
from schemas.control import ApiKey, Tenant, decode_key, decode_tenant
from schemas.envelope import Envelope
from services import admission, policy
from services.config import settings_from_env
from services.runtime.kv import KvMirror
from workers import runner


class PolicyStage:
    name = "policy"
    listen_on = (subjects.IN_CHAT, subjects.FROM_INGRESS)
    entry = True
    concurrent = False

    def __init__(self) -> None:
        self.timeout_s = settings_from_env().request_timeout_s
        self.ids = admission.RecentIds()
        self.keys: KvMirror[ApiKey] = KvMirror(subjects.KV_KEYS, decode_key)
        self.tenants: KvMirror[Tenant] = KvMirror(subjects.KV_TENANTS, decode_tenant)

    async def start(self, ctx: runner.StageContext) -> None:
        await self.keys.start(ctx.js)
        await self.tenants.start(ctx.js)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg, start_ns: int) -> None:
        from_ingress = msg.subject == subjects.FROM_INGRESS
        admission.admit(
            env, start_ns, self.timeout_s, from_ingress=from_ingress, ids=self.ids, nats_reply=msg.reply or ""
        )
        policy.check_body(env)
        header = msg.headers.get(subjects.API_KEY_HEADER) if msg.headers else None
        key = policy.authenticate(header, self.keys.items)
        env.key_id, env.tenant_id = key.id, key.tenant_id
        policy.check_model(key, env.model)
        env.slip = policy.build_slip(self.tenants.items.get(key.tenant_id))
        await ctx.forward(env, start_ns)

    async def stop(self) -> None:
        await self.keys.stop()
        await self.tenants.stop()


if __name__ == "__main__":
    runner.main(PolicyStage())
