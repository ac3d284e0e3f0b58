"""The MCP gateway's KV buckets: upstream servers (control records, seeded
from config and the admin API), their catalogs (what each offers, written by
the provider stage) and the ingress's MCP sessions.

A catalog and a session are current state, not an audit trail: one
revision each. Sessions age out with the bucket's TTL, so a client that
never said goodbye leaves nothing behind.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from schemas import subjects
from services.bus.kv import ensure_kv

# An MCP session no request used for this long is gone (its client starts a new one).
SESSION_TTL_S = 24 * 3600.0


async def ensure_buckets(js: JetStreamContext, replicas: int = 1, session_ttl_s: float = SESSION_TTL_S) -> None:
    await ensure_kv(
        js,
        # Servers keep history like the other control records (models, tenants).
        KeyValueConfig(bucket=subjects.KV_MCP_SERVERS, history=5, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket=subjects.KV_MCP_CATALOG, history=1, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(
            bucket=subjects.KV_MCP_SESSIONS,
            history=1,
            ttl=session_ttl_s or None,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    )
