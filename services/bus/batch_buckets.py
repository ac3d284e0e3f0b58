"""The Batch API's buckets (``ingress.batch_store`` reads and writes them):
``subjects.KV_BATCHES``, each batch's record, and ``subjects.KV_BATCH_LINES``,
each line's outcome until its batch's files are written."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from schemas import subjects
from services.bus.kv import ensure_kv

# Records are kept a month after their last change (a batch ends within its
# 24 h window); its lines' outcomes a week (until its files are written).
RECORDS_TTL_S = 30 * 86400
LINES_TTL_S = 7 * 86400


async def ensure_buckets(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_kv(
        js,
        KeyValueConfig(
            bucket=subjects.KV_BATCHES, history=1, ttl=RECORDS_TTL_S, storage=StorageType.FILE, replicas=replicas
        ),
        KeyValueConfig(
            bucket=subjects.KV_BATCH_LINES, history=1, ttl=LINES_TTL_S, storage=StorageType.FILE, replicas=replicas
        ),
    )
