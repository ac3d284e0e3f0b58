"""One step of a batch run as one batch of a provider's own batch API
(``schemas.tasks.NativeBatchRequest``) at one deployment: submit its lines,
poll it, cancel it, or fetch its results into the blob store.

Each family's steps are their own module (``native_openai``: OpenAI and
Azure; ``native_anthropic``), over the same pieces: the lines translated by
the family's own adapters (``native_lines``), the calls (``native_batch_io``),
and each results line ended as a request (``native_ends``). A step itself
bills nothing: its lines' answers are billed, at the batch price, by the
driver (``ingress.batch_native``) from the results.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from schemas.chat import Cost, Usage
from schemas.control import NO_TENANT
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InvalidRequest
from schemas.tasks import BlobRef, NativeBatchRequest, NativeBatchResult
from services import batches
from services.bus.blobs import new_name
from services.providers.anthropic.batch import AnthropicBatches
from services.providers.anthropic.chat import AnthropicChat
from services.providers.azure.batch import AzureBatches
from services.providers.call import CallOutcome, CallProgress, _api_key, _failed
from services.providers.http import Upstream
from services.providers.openai.batch import LineKind, OpenAIBatches
from services.providers.openai.chat import OpenAIChat
from services.providers.registry import provider
from services.providers.tasks import BlobAccess, task_outcome
from services.providers.tasks.batch_types import BatchState
from services.providers.tasks.native_anthropic import AnthropicSteps
from services.providers.tasks.native_batch_io import BatchHttp
from services.providers.tasks.native_ends import EndsWriter
from services.providers.tasks.native_lines import kind_of, translated_lines
from services.providers.tasks.native_openai import OpenAISteps

# How long the results blob is asked to be kept: the driver reads it at once,
# or, taking over from one that died, within minutes.
RESULTS_TTL_S = 7 * 24 * 3600.0
RESULTS_TYPE = "application/x-msgpack"


class Steps(Protocol):
    async def submit(
        self, task: NativeBatchRequest, kind: LineKind, lines: AsyncIterator[tuple[str, bytes]]
    ) -> BatchState: ...

    async def poll(self, upstream_id: str) -> BatchState: ...

    async def cancel(self, upstream_id: str) -> BatchState: ...

    async def results(self, upstream_id: str, ends: EndsWriter) -> BatchState: ...

    def may_have_made(self) -> bool: ...


async def call(
    client: Upstream,
    dep: Deployment,
    task: NativeBatchRequest,
    progress: CallProgress,
    blobs: BlobAccess,
    tenant_id: str = "",
) -> CallOutcome:
    """One try of the step ``task`` at ``dep``."""
    start_ns = time.time_ns()
    # A step cut short bills nothing either (not the as-asked guess of other tasks).
    progress.reported, progress.cost = Usage(), Cost()
    known = provider(dep.provider)
    http = BatchHttp(client, dep, known.chat.map_error, progress)
    steps: Steps | None = None
    try:
        steps = steps_for(http, dep)
        result = await _step(steps, dep, task, blobs, tenant_id)
    except (GatewayError, httpx.TransportError) as exc:
        failed = _failed(exc, start_ns, http.first_byte_ns)
        failed.repeatable = steps is None or not steps.may_have_made()
        raise failed from exc
    return task_outcome(dep.upstream_model, Usage(), Cost(), result, start_ns, http.first_byte_ns or time.time_ns())


def steps_for(http: BatchHttp, dep: Deployment) -> Steps:
    """The steps of ``dep``'s family; ``InvalidRequest`` for a family without a batch API spoken here."""
    chat, key = provider(dep.provider).chat, _api_key(dep)
    if dep.provider == "azure" and isinstance(chat, OpenAIChat):
        return OpenAISteps(http, AzureBatches(chat), key)
    if dep.provider == "openai" and isinstance(chat, OpenAIChat):
        return OpenAISteps(http, OpenAIBatches(chat), key)
    if dep.provider == "anthropic" and isinstance(chat, AnthropicChat):
        return AnthropicSteps(http, AnthropicBatches(chat), key)
    raise InvalidRequest(f"Model deployment {dep.name!r} ({dep.provider}) has no batch API the gateway speaks.")


async def _step(
    steps: Steps, dep: Deployment, task: NativeBatchRequest, blobs: BlobAccess, tenant_id: str
) -> NativeBatchResult:
    results: BlobRef | None = None
    if task.op == "submit":
        if task.lines is None:
            raise InvalidRequest("A native batch's submit carries its lines.")
        kind = kind_of(task.endpoint)
        state = await steps.submit(task, kind, translated_lines(blobs, task.lines, dep, kind, _api_key(dep)))
    elif not task.upstream_id:
        raise InvalidRequest(f"A native batch's {task.op} names its upstream batch.")
    elif task.op == "poll":
        state = await steps.poll(task.upstream_id)
    elif task.op == "cancel":
        state = await steps.cancel(task.upstream_id)
    else:
        ends = EndsWriter(dep, task.line_count or batches.MAX_LINES)
        state = await steps.results(task.upstream_id, ends)
        if state.ended:
            # The writer's buffer as it is: the store slices it (a copy could be a GB).
            data = ends.data()
            name = new_name(tenant_id or NO_TENANT, "upload")
            results = await blobs.write(name, data, RESULTS_TYPE, RESULTS_TTL_S)  # type: ignore[arg-type]
    return NativeBatchResult(
        upstream_id=state.id,
        deployment=dep.name,
        state="ended" if state.ended else "running",
        upstream_status=state.status,
        completed=state.completed,
        failed=state.failed,
        results=results,
        error=state.error,
    )
