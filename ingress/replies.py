"""One wildcard subscription per ingress process; replies are handed to the
waiting request by id, never a subscription per request.

The router also hears the supervisor's news of processes (one died, one is
ready again) and hands it to every waiting request: each decides what it
means for itself (see ``BusSession.next_reply``).
"""

from __future__ import annotations

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from ingress.mailbox import Mailbox
from schemas import bus, subjects
from schemas.ids import new_id
from services.fence import ProviderRoster


class Disconnected:
    """Put into a request's queue by the disconnect watcher."""


DISCONNECTED = Disconnected()


class ProcessNews(msgspec.Struct):
    """A process died (``died`` is its name) or one is ready to serve again."""

    at_ns: int
    died: str = ""


Slot = Mailbox[bytes | Disconnected | ProcessNews]


class ReplyRouter:
    def __init__(self, nc: Client, providers: ProviderRoster) -> None:
        self._nc = nc
        self._providers = providers
        # Under _INBOX: stages answer only to inboxes.
        self.prefix = f"_INBOX.ingress.{new_id()}."
        self._waiting: dict[str, Slot] = {}

    async def start(self) -> None:
        await self._nc.subscribe(self.prefix + "*", cb=self._on_reply, pending_msgs_limit=1_000_000)
        # Jobs' requests answer on a subject a stream keeps (any ingress
        # process may take a job over): every process hears them all.
        await self._nc.subscribe(f"{subjects.JOB_REPLIES}.*", cb=self._on_job_reply, pending_msgs_limit=1_000_000)
        await self._nc.subscribe(subjects.CONTROL_DIED, cb=self._on_died)
        await self._nc.subscribe(f"{subjects.CONTROL_READY}.*", cb=self._on_ready)

    async def _on_reply(self, msg: Msg) -> None:
        if not msg.data:
            # NATS's "no responders" status (empty, Status 503): a fence sent
            # while no provider was up to answer it (all dead or restarting).
            # The fence's own wait covers that; it is no reply.
            return
        queue = self._waiting.get(msg.subject[len(self.prefix) :])
        if queue is not None:  # else the request already ended (timeout, disconnect)
            queue.put_nowait(msg.data)

    async def _on_job_reply(self, msg: Msg) -> None:
        queue = self._waiting.get(msg.subject[len(subjects.JOB_REPLIES) + 1 :])
        if queue is not None:
            queue.put_nowait(msg.data)

    async def _on_died(self, msg: Msg) -> None:
        try:
            died = bus.decode_died(msg.data)
        except msgspec.DecodeError:
            return
        self._providers.died(died.name)
        self._tell_all(ProcessNews(at_ns=died.at_ns, died=died.name))

    async def _on_ready(self, msg: Msg) -> None:
        self._tell_all(ProcessNews(at_ns=0))

    def _tell_all(self, news: ProcessNews) -> None:
        for queue in self._waiting.values():
            queue.put_nowait(news)

    def open(self, request_id: str, *, job: bool = False) -> tuple[str, Slot]:
        queue: Slot = Mailbox()
        self._waiting[request_id] = queue
        return (f"{subjects.JOB_REPLIES}.{request_id}" if job else self.prefix + request_id), queue

    def close(self, request_id: str) -> None:
        queue = self._waiting.pop(request_id, None)
        if queue is not None:
            queue.close()
