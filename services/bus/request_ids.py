"""Request ids that bus callers chose, taken once across every policy
replica: a KV ``create`` fails when the key exists, so of two requests
that name one id (at one replica or two), exactly one is served.

Only a caller-chosen id pays this round trip; ids the gateway makes are
unique by construction and never looked up. Entries age out with the
window in which a caller's id is accepted at all (``admission.ID_WINDOW_NS``).
"""

from __future__ import annotations

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.errors import InternalError
from services.admission import ID_WINDOW_NS
from services.bus.kv import ensure_kv


async def ensure_bucket(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_kv(
        js,
        KeyValueConfig(
            bucket=subjects.KV_REQUEST_IDS,
            ttl=ID_WINDOW_NS / 1e9,
            storage=StorageType.FILE,
            replicas=replicas,
        ),
    )


class RequestIds:
    def __init__(self) -> None:
        self._kv: KeyValue | None = None

    async def start(self, js: JetStreamContext) -> None:
        self._kv = await js.key_value(subjects.KV_REQUEST_IDS)

    async def take(self, request_id: str, by: str) -> bool:
        """True if no request took ``request_id`` before (it is now this one's)."""
        assert self._kv is not None
        try:
            await self._kv.create(request_id, by.encode())
        except KeyWrongLastSequenceError:
            return False
        except nats.errors.Error as exc:
            # Unchecked, a reused id could be served twice: refuse instead.
            raise InternalError(f"The request id could not be checked ({exc}); try again.", status=503) from exc
        return True
