"""The ingress's reply router on a real nats-server: a fence sent while no
provider is up brings NATS's "no responders" status to the request's inbox,
which is no reply (a full run once ended a chat request with a 500 on it,
the pipeline frozen and then killed)."""

from __future__ import annotations

import asyncio

import nats

from ingress.replies import ReplyRouter
from schemas import bus, subjects
from schemas.replies import Fence
from services.fence import ProviderRoster


def test_a_fence_no_provider_hears_brings_nothing_to_the_request(nats_url: str) -> None:
    async def go() -> list[object]:
        nc = await nats.connect(nats_url)
        try:
            router = ReplyRouter(nc, ProviderRoster())
            await router.start()
            inbox, queue = router.open("req1")
            # As BusSession._fence_then_send: no provider subscribes to the fence subject here.
            await nc.publish(subjects.CONTROL_FENCE, bus.encode(Fence(id="req1", copy=1)), reply=inbox)
            await nc.publish(inbox, b"a reply")  # then a real message on the same inbox, to know the first came
            await nc.flush()
            got = [await queue.get(5)]
            await asyncio.sleep(0.2)
            while not queue.empty():
                got.append(queue.get_nowait())
            return got
        finally:
            await nc.close()

    assert asyncio.run(go()) == [b"a reply"]
