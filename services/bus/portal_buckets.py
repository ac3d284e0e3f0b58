"""The buckets of REST services and of the developer portal's people.

Services are control records like models and MCP servers (history kept).
Users and apps are records too; an invitation is used once and a session
is current state: one revision each, and sessions age out with the bucket's
TTL (a browser that never signed out leaves nothing behind).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from schemas import subjects
from services.bus.kv import ensure_kv

# The longest a portal session lives, signed in or not (each also has its own expiry).
SESSION_TTL_S = 12 * 3600.0
# An invitation link is good for a week.
INVITATION_TTL_S = 7 * 24 * 3600.0


async def ensure_buckets(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_kv(
        js,
        KeyValueConfig(bucket=subjects.KV_SERVICES, history=5, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket=subjects.KV_USERS, history=5, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket=subjects.KV_APPS, history=5, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(
            bucket=subjects.KV_INVITATIONS,
            history=1,
            ttl=INVITATION_TTL_S,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
        KeyValueConfig(
            bucket=subjects.KV_PORTAL_SESSIONS,
            history=1,
            ttl=SESSION_TTL_S,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    )
