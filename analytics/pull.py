"""Reading a JetStream pull consumer in batches, with nothing lost on the
client's side.

nats-py's ``fetch`` waits for each message with ``asyncio.wait_for``; on
Python 3.11 a message that arrives just as that wait times out is dropped
(the race CPython fixed in 3.12), and the server sends it again only when
its ack wait ends. Under load that happened to about one event batch in
twenty and put seconds on the time to a visible row. Here every message goes
through a subscription callback into a list, and a batch ends when its pull
request does: filled, or answered with a status (408 at its expiry), so no
timer ever races a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# Status codes the server ends a pull request with (no message body).
_ENDED = {"404", "408", "409"}


class BatchPuller:
    def __init__(self, nc: Client, stream: str, durable: str, batch: int, wait_s: float) -> None:
        self.nc, self.batch, self.wait_ns = nc, batch, int(wait_s * 1e9)
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self.got: list[Msg] = []
        self.number = 0
        self.ended = asyncio.Event()
        self.sub: Subscription | None = None

    async def start(self) -> None:
        self.sub = await self.nc.subscribe(f"{self.inbox}.*", cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self.got.append(msg)  # whichever request it answers: nothing is dropped
            if len(self.got) >= self.batch:
                self.ended.set()
        elif status in _ENDED and msg.subject == f"{self.inbox}.{self.number}":
            self.ended.set()  # the current request is over (an older one's end means nothing now)

    async def next_batch(self) -> list[Msg]:
        """The messages of one pull request (waiting at most ``wait_s`` for
        it to fill), and any that came late for an earlier one."""
        self.number += 1
        self.ended.clear()
        request = {"batch": max(1, self.batch - len(self.got)), "expires": self.wait_ns}
        await self.nc.publish(self.api, json.dumps(request).encode(), reply=f"{self.inbox}.{self.number}")
        # The server ends the request by its expiry; this bound only guards a lost answer.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), self.wait_ns / 1e9 + 5.0)
        got, self.got = self.got, []
        return got

    async def stop(self) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()
