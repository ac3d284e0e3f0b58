"""The upstream calls of the requests in ``schemas.tasks``: images, audio,
moderation and rerank, one module per kind, each driving the family
adapters (``services.providers.<family>``) it needs.

Like the chat call, each is a function of one try at one deployment; the
walk (``attempts.Walk``) retries and fails over around it. Bytes go in and
out through ``BlobAccess`` (the provider stage hands it the NATS object store,
``services.bus.blobs``; a unit test a dict), and a speech answer's audio
through ``on_body`` as it is read, so nothing here knows of NATS.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from schemas.chat import Cost, Usage
from schemas.envelope import Deployment
from schemas.rest import RestHead
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationRequest,
    NativeBatchRequest,
    RerankRequest,
    SpeechRequest,
    TaskRequest,
    TaskResult,
    TranscriptionRequest,
)
from services.providers.call import CallOutcome, CallProgress
from services.providers.http import Upstream

# A slice of a streamed binary answer (speech audio), on to the requester.
OnBody = Callable[[RestHead | None, bytes], Awaitable[None]]


class BlobAccess(Protocol):
    """The object store, as a call sees it."""

    def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        """The blob's bytes, a slice at a time (never all at once)."""
        ...

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        """Keep ``data`` as ``name`` (an image made: a few MB at most) for ``ttl_s``."""
        ...


def task_outcome(
    model: str, usage: Usage, cost: Cost, result: TaskResult, start_ns: int, first_byte_ns: int
) -> CallOutcome:
    """A task's answer as the walk takes it (no message, no finish reason), ended now."""
    return CallOutcome(
        model=model,
        usage=usage,
        cost=cost,
        finish_reason=None,
        message=None,
        start_ns=start_ns,
        first_byte_ns=first_byte_ns,
        end_ns=time.time_ns(),
        task_result=result,
    )


async def call_task(
    client: Upstream,
    dep: Deployment,
    task: TaskRequest,
    progress: CallProgress,
    blobs: BlobAccess,
    on_body: OnBody,
    tenant_id: str,
) -> CallOutcome:
    """One try of ``task`` at ``dep``."""
    # Imported per kind: a process that never serves images loads no image code.
    if isinstance(task, ImageRequest):
        from services.providers.tasks import images

        return await images.call(client, dep, task, progress, blobs, tenant_id)
    if isinstance(task, TranscriptionRequest | SpeechRequest):
        from services.providers.tasks import audio

        return await audio.call(client, dep, task, progress, blobs, on_body)
    if isinstance(task, ModerationRequest):
        from services.providers.tasks import moderation

        return await moderation.call(client, dep, task, progress)
    if isinstance(task, NativeBatchRequest):
        from services.providers.tasks import native_batch

        return await native_batch.call(client, dep, task, progress, blobs, tenant_id)
    assert isinstance(task, RerankRequest)
    from services.providers.tasks import rerank

    return await rerank.call(client, dep, task, progress)
