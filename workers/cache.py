"""Cache stage: answer a request from the shared response cache, or send it
on to the provider marked with the key its answer is to be kept under.

It is on a request's slip only when policy found the tenant caching and the
request not refusing it. It also keeps answers: the provider sends each one
to ``CACHE_STORE`` after its Final went out, so a store never delays a reply.
"""

from __future__ import annotations

import logging
import time

import msgspec
from nats.aio.msg import Msg

from schemas import bus, subjects
from schemas.cached_answer import decode_store
from schemas.envelope import Envelope
from services import answer_cache
from services.bus.response_cache import ResponseCache
from workers import runner

log = logging.getLogger("sluice.cache")


class CacheStage:
    name = "cache"
    listen_on = (subjects.STAGE_CACHE,)
    entry = False
    concurrent = True

    def __init__(self) -> None:
        self.store: ResponseCache | None = None

    async def start(self, ctx: runner.StageContext) -> None:
        self.store = ResponseCache(ctx.js)
        await self.store.start()
        await ctx.nc.subscribe(subjects.CACHE_STORE, queue="cache-store", cb=self._keep)

    async def _keep(self, msg: Msg) -> None:
        try:
            ask = decode_store(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable cache store on %s: dropped", msg.subject)
            return
        if not (ask.ttl_s > 0 and len(ask.key) == 64) or self.store is None:
            return
        try:
            await self.store.put(ask.key, ask.ttl_s, ask.answer)
        except Exception:  # a cache that cannot keep an answer costs a later call, nothing more
            log.exception("cannot keep the answer under %s", ask.key)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
        assert self.store is not None
        key = answer_cache.key(env.tenant_id, env.group, env.body, env.embeddings, env.raw)
        found = None
        if env.cache_lookup:
            try:
                found = await self.store.get(key, start_ns // 1_000_000, env.cache_ttl_s)
            except Exception:  # the cache down is a miss, not an outage
                log.exception("cache lookup failed; calling the upstream")
        if found is None:
            env.cache_key = key
            await ctx.forward(env, start_ns)
            return
        chunks = answer_cache.replay(env.id, found) if env.stream else []
        for chunk in chunks:
            await ctx.send(env, bus.encode(chunk))
        final = answer_cache.hit(env.id, found, streamed=env.stream, seq=len(chunks))
        ttft = time.time_ns() - env.received_at_ns
        await ctx.finish(env, final, start_ns, ttft_ns=ttft)

    async def stop(self) -> None:
        if self.store is not None:
            await self.store.stop()


if __name__ == "__main__":
    runner.main(CacheStage())
