"""Client APIs for services on the bus, in their own JSON shapes:
``sluice.v1.in.responses`` takes the body ``POST /v1/responses`` takes (the
key in the ``Authorization`` header) and answers with the JSON an HTTP
caller would get, its status in a ``Sluice-Status`` header. Served by every
ingress process (queue group "client-apis") with the same session, the
same stored conversations and the same background jobs as HTTP. Answers
are whole: ``stream`` is ignored here (a service wanting deltas uses
``sluice.v1.in.chat`` and its reply inbox)."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from nats.aio.msg import Msg

from ingress import conversations, responses_background
from ingress.gateway import Gateway
from ingress.session import BusSession
from schemas import subjects
from schemas.errors import GatewayBusy, GatewayError, InternalError
from schemas.ids import new_id
from schemas.replies import Failure, Final
from services.admission import valid_reply_subject
from services.apis.base import ClientApi, RequestView
from services.apis.table import APIS

log = logging.getLogger("sluice.ingress.client_apis")

# The client APIs served on the bus by name (``sluice.v1.in.<name>``).
ON_THE_BUS = {api.name: api for api in APIS if api.name == "responses"}
# Requests one ingress process runs at once for bus callers; past this, 503 at once.
MAX_IN_FLIGHT = 2048
STATUS_HEADER = "Sluice-Status"
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def whole(raw: bytes) -> bytes:
    """The body with ``stream`` false (the answer comes back in one message)."""
    try:
        doc = _fields(raw)
    except msgspec.DecodeError:
        return raw  # the API's own parse says what is wrong with it
    doc["stream"] = msgspec.Raw(b"false")
    return msgspec.json.encode(doc)


class ApiBus:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list = []

    async def start(self) -> None:
        for name in ON_THE_BUS:
            sub = await self.gw.nc.subscribe(
                subjects.in_client_api(name), queue="client-apis", cb=self._on_request, pending_msgs_limit=100_000
            )
            self._subs.append(sub)

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()

    async def _on_request(self, msg: Msg) -> None:
        if not valid_reply_subject(msg.reply or ""):
            return  # nowhere to answer: running it would only spend money
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        received_ns = time.time_ns()
        request_id = new_id(received_ns)
        api = ON_THE_BUS[msg.subject.rsplit(".", 1)[1]]
        try:
            status, body = await self._answer(api, msg, request_id, received_ns)
        except Exception:  # a bug: the caller still gets an answer with the id
            log.exception("bus request %s failed", request_id)
            error = InternalError(f"The gateway failed on this request; its id is {request_id}.")
            status, body = error.status, api.error_body(Failure.from_error(request_id, error))
        headers = {STATUS_HEADER: str(status), "x-request-id": request_id}
        await self.gw.nc.publish(msg.reply, body, headers=headers)

    async def _answer(self, api: ClientApi, msg: Msg, request_id: str, received_ns: int) -> tuple[int, bytes]:
        gw, headers = self.gw, msg.headers or {}
        key_header = headers.get(subjects.API_KEY_HEADER)
        traceparent = headers.get(subjects.TRACEPARENT_HEADER, "")
        session: BusSession | None = None
        try:
            if len(self._tasks) > MAX_IN_FLIGHT:
                raise GatewayBusy("This gateway process has too many bus requests in flight; retry shortly.")
            parsed = api.parse(whole(msg.data))
            session = BusSession(gw, api.name, parsed.model, False, received_ns, request_id, origin="nats")
            parsed, caller = await conversations.resume(gw, api, parsed, key_header)
            if caller is not None and parsed.responses is not None and parsed.responses.background:
                return 200, await responses_background.submit(
                    gw, parsed, caller, request_id, session.created, traceparent
                )
            await session.publish(
                key_header,
                parsed.body,
                parsed.embeddings,
                raw=parsed.raw,
                traceparent=traceparent,
                dropped=parsed.dropped,
            )
            renderer = api.renderer(RequestView(session.id, session.created, session.model, parsed))
            reply = await session.collect()
            if isinstance(reply, Final):
                body = renderer.final(reply)
                await conversations.keep(gw, api, parsed, renderer, caller)
                return 200, body
            if reply is None:  # only a client can leave, and this one waits on its inbox
                raise InternalError("The request ended without an answer.")
            return reply.status, renderer.error(reply)
        except GatewayError as exc:
            failure = Failure.from_error(request_id, exc)
            gw.record(request_id, received_ns, api.name, session.model if session else "", False, failure, [])
            return exc.status, api.error_body(failure)
        finally:
            if session is not None:
                session.close()
