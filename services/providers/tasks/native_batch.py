"""Stub: the upstream steps of a native batch (built by a helper)."""

from __future__ import annotations

from schemas.envelope import Deployment
from schemas.tasks import NativeBatchRequest
from services.providers.call import CallOutcome, CallProgress
from services.providers.http import Upstream
from services.providers.tasks import BlobAccess


async def call(
    client: Upstream, dep: Deployment, task: NativeBatchRequest, progress: CallProgress, blobs: BlobAccess
) -> CallOutcome:
    raise NotImplementedError
