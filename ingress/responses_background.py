"""Background responses (``"background": true``): the request runs as a
durable job (``ingress.jobs``, so it survives the ingress process that took
it), the client gets the response at once with status "queued", and
``GET /v1/responses/{id}`` shows it so until the job stores its answer
under the same id. ``POST /v1/responses/{id}/cancel`` stops it: the job is
told as a client that left (the provider stops the upstream call, or never
makes it), and its answer never replaces "cancelled".

Entries are written with the bucket's revisions, so of a cancel and the
job's answer the first to land stays.
"""

from __future__ import annotations

import msgspec

from ingress.gateway import Gateway
from schemas import bus, subjects
from schemas.control import ApiKey
from schemas.errors import InvalidRequest
from schemas.replies import Cancel, Failure, Final
from schemas.responses import Response, ResponseError
from schemas.stored_response import StoredResponse
from services.apis import responses_shapes as shapes
from services.apis.base import Parsed, RequestView
from services.apis.responses import ResponsesRenderer, request_id_of, response_id

# Still running: may be cancelled.
RUNNING = ("queued", "in_progress")


async def submit(
    gw: Gateway, parsed: Parsed, caller: ApiKey, request_id: str, created_s: int, traceparent: str
) -> bytes:
    """Queue the request as a job; the queued response, as the client gets it."""
    request = parsed.responses
    assert request is not None and gw.queue_job is not None
    if request.store is False:
        raise InvalidRequest("A background response is fetched by its id: 'background' needs 'store' not false.")
    if request.stream:
        raise InvalidRequest(
            "Streaming a background response is not supported here; poll GET /v1/responses/{id}.",
            code="unsupported_parameter",
        )
    rid = response_id(request_id)
    queued = shapes.response(rid, created_s, parsed.model, request, None, None, None, status="queued")
    record = StoredResponse(caller.tenant_id, caller.id, queued, parsed.conversation)
    revision = await gw.responses.put(record)
    # The body with the conversation written in (no previous_response_id): the job needs no lookup.
    job = b'{"body":' + parsed.raw + b"}"
    seq = await gw.queue_job(job, caller.tenant_id, caller.id, "responses", rid, traceparent)
    # Lost to the job's own answer if that came first: then the id is no longer needed.
    await gw.responses.replace(msgspec.structs.replace(record, job_id=str(seq)), revision)
    return shapes.encode_response(queued, request)


async def started(gw: Gateway, tenant_id: str, rid: str) -> bool:
    """The job begins: "in_progress", or False if it was cancelled (it must not run)."""
    stored, revision = await gw.responses.get_with_revision(tenant_id, rid)
    if stored is None or stored.response.status not in RUNNING:
        return False
    if stored.response.status == "queued":
        running = msgspec.structs.replace(stored.response, status="in_progress")
        await gw.responses.replace(msgspec.structs.replace(stored, response=running), revision)
    return True


async def finish(gw: Gateway, tenant_id: str, rid: str, parsed: Parsed, result: Final | Failure) -> None:
    """Store the job's answer under the response's id, unless it was cancelled meanwhile."""
    stored, revision = await gw.responses.get_with_revision(tenant_id, rid)
    inner = request_id_of(rid)
    if stored is None or stored.response.status not in RUNNING or inner is None or parsed.responses is None:
        return
    if isinstance(result, Final) and result.message is not None:
        renderer = ResponsesRenderer(RequestView(inner, stored.response.created_at, parsed.model, parsed))
        renderer.final(result)
        answered = renderer.answered
    else:
        error = ResponseError(code=shapes.error_code(result.type, result.code), message=result.message)
        answered = shapes.response(
            rid, stored.response.created_at, parsed.model, parsed.responses, None, None, None, "failed", error=error
        )
    assert answered is not None
    await gw.responses.replace(msgspec.structs.replace(stored, response=answered), revision)


async def cancel(gw: Gateway, tenant_id: str, stored: StoredResponse, revision: int) -> Response:
    """Cancel a background response still running; one that ended is answered as it is."""
    if not stored.response.background:
        raise InvalidRequest("Only responses created with 'background': true can be cancelled.", code="not_cancellable")
    if stored.response.status not in RUNNING:
        return stored.response
    cancelled = msgspec.structs.replace(stored.response, status="cancelled")
    if not await gw.responses.replace(msgspec.structs.replace(stored, response=cancelled), revision):
        now = await gw.responses.get(tenant_id, stored.response.id)  # its answer came first
        return now.response if now is not None else stored.response
    if stored.job_id:
        await gw.nc.publish(subjects.CONTROL_CANCEL, bus.encode(Cancel(id=f"job-{stored.job_id}")))
    return cancelled
