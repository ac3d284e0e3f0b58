"""Client APIs for services on the bus, in their own JSON shapes:
``sluice.v1.in.<api>`` takes the body its HTTP path takes (the key in the
``Authorization`` header) and answers with the JSON an HTTP caller would
get, its status in a ``Sluice-Status`` header. Served by every ingress
process (queue group "client-apis") with the same session, the same stored
conversations and the same background jobs as HTTP. Answers are whole:
``stream`` is ignored here (a service wanting deltas uses
``sluice.v1.in.chat`` and its reply inbox).

On the bus: ``responses``, ``moderations``, ``rerank`` (Cohere's and
Jina's v1 shape, ``/v1/rerank``) and ``images`` (generations; an image
comes back as ``b64_json``, or as a URL at the gateway's public address,
``[portal] base_url``, when one is set). Not on the bus: the multipart
uploads (image edits, transcriptions, translations), whose files only the
HTTP door may store and name (``ingress.uploads``), and speech, whose
answer is audio, not JSON, and can be larger than one NATS message. Any
answer larger than one message is refused with 413 rather than lost."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from nats.aio.msg import Msg

from ingress import conversations, http_relay, responses_background, task_answers
from ingress.gateway import Gateway
from ingress.session import BusSession
from ingress.uploads import refuse_refs
from schemas import subjects
from schemas.errors import GatewayBusy, GatewayError, InternalError, InvalidRequest, RequestTooLarge
from schemas.ids import new_id
from schemas.replies import Failure, Final
from schemas.tasks import ImageRequest, TaskRequest
from services.admission import valid_reply_subject
from services.apis.base import ClientApi, RequestView
from services.apis.table import APIS

log = logging.getLogger("sluice.ingress.client_apis")

# The client APIs served on the bus by name (``sluice.v1.in.<name>``): those
# answered in JSON, from a JSON body. Where two paths share a name (rerank's
# /v1 and /v2), the first in the table.
BUS_APIS = subjects.CLIENT_APIS_ON_THE_BUS


def _on_the_bus() -> dict[str, ClientApi]:
    served: dict[str, ClientApi] = {}
    for api in APIS:
        if api.name in BUS_APIS and api.parse_form is None:
            served.setdefault(api.name, api)
    return served


ON_THE_BUS = _on_the_bus()
# What an answer's message holds besides its body (headers).
HEADER_ROOM = 4096
# Requests one ingress process runs at once for bus callers; past this, 503 at once.
MAX_IN_FLIGHT = 2048
STATUS_HEADER = "Sluice-Status"
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def whole(raw: bytes) -> bytes:
    """The body with ``stream`` false (the answer comes back in one message).
    Only for an API that streams: another's body may not name ``stream``."""
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
            parsed = api.parse(whole(msg.data) if api.streams else msg.data)
            refuse_refs(parsed.task)
            if http_relay.answer_kind(api.media_type(parsed), False) != "json":
                raise InvalidRequest(f"This request's answer is not JSON; ask for it over HTTP at {api.path}.")
            base = _public_base(gw, parsed.task)
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
                task=parsed.task,
            )
            renderer = api.renderer(RequestView(session.id, session.created, session.model, parsed))
            reply = await session.collect()
            if isinstance(reply, Final):
                finish = task_answers.finisher(gw, parsed.task, (lambda: base) if base else None)
                if finish is not None:
                    await finish(reply)
                body = renderer.final(reply)
                if len(body) > gw.nc.max_payload - HEADER_ROOM:
                    return _too_large(api, request_id, len(body))
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


def _too_large(api: ClientApi, request_id: str, size: int) -> tuple[int, bytes]:
    """An answer that cannot go back in one message. The request's row
    (made by the stage that answered) stands: it was served and billed."""
    log.warning("bus request %s: its answer of %d bytes does not fit in one message", request_id, size)
    error = RequestTooLarge(
        f"The answer ({size} bytes) is larger than one NATS message; ask for less (fewer images, "
        f"fewer documents), or over HTTP at {api.path}."
    )
    return error.status, api.error_body(Failure.from_error(request_id, error))


def _public_base(gw: Gateway, task: TaskRequest | None) -> str:
    """Where an image's URL points for a bus caller: the gateway's public
    address, when the config names one ("" when it does not: an image then
    comes back as ``b64_json``, and one asked for as a URL is refused
    before anything is spent)."""
    if not isinstance(task, ImageRequest):
        return ""
    base = gw.people.config.base_url.rstrip("/")
    if not base and task.response_format == "url":
        raise InvalidRequest(
            "On the bus an image comes back as 'b64_json': set 'response_format' to 'b64_json' (a URL needs "
            "the gateway's public address, [portal] base_url, which this gateway's config does not set)."
        )
    return base
