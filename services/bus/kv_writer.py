"""The one writer of control-plane records: every change is checked against
the revision it was based on (two admins cannot overwrite each other) and
leaves an audit event.

Stages never write records; they follow them with ``KvMirror``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas.control import ApiKey, kv_encode
from schemas.events import AuditEvent
from schemas.ids import new_id
from schemas.people import User
from schemas.rest import RestService
from services.bus.kv import kv_key

T = TypeVar("T")
_json = msgspec.json.Encoder()


class Conflict(Exception):
    """The record exists already (on create), or changed since it was read."""


def audit_view(record: Any) -> str:
    """A record as JSON for the audit trail, with no secret digests."""
    if record is None:
        return ""
    data = msgspec.to_builtins(record)
    if isinstance(record, ApiKey):
        data.pop("secrets", None)
    if isinstance(record, User):  # the portal's store audits its own writes so; any other writer too
        data.pop("password_hash", None)
    if isinstance(record, RestService) and record.openapi:
        # A service's OpenAPI document may be megabytes: copied into both
        # sides of every change, a few would outgrow an event batch.
        digest = hashlib.sha256(record.openapi).hexdigest()[:16]
        data["openapi"] = f"{len(record.openapi)} bytes, sha256 {digest}..."
    return _json.encode(data).decode()


class KvWriter:
    def __init__(self, js: JetStreamContext, audit: Callable[[AuditEvent], None]) -> None:
        self.js = js
        self.audit = audit
        self._buckets: dict[str, KeyValue] = {}

    async def _kv(self, bucket: str) -> KeyValue:
        kv = self._buckets.get(bucket)
        if kv is None:
            kv = self._buckets[bucket] = await self.js.key_value(bucket)
        return kv

    async def read(self, bucket: str, name: str, decode: Callable[[bytes], T]) -> tuple[T | None, int]:
        """The record and its revision; (None, 0) when there is none."""
        kv = await self._kv(bucket)
        try:
            entry = await kv.get(kv_key(name))
        except (KeyNotFoundError, KeyDeletedError):  # a deleted record is no record
            return None, 0
        if entry.value is None:
            return None, 0
        return decode(entry.value), entry.revision or 0

    async def write(
        self,
        bucket: str,
        name: str,
        record: Any,
        *,
        revision: int,
        actor: str,
        action: str,
        record_type: str,
        before: Any = None,
    ) -> int:
        """Create (``revision`` 0) or replace the revision read; the new revision."""
        kv = await self._kv(bucket)
        try:
            if revision:
                new = await kv.update(kv_key(name), kv_encode(record), last=revision)
            else:
                new = await kv.create(kv_key(name), kv_encode(record))
        except KeyWrongLastSequenceError:
            raise Conflict(name) from None
        self._audit(actor, action, record_type, name, before, record)
        return new

    async def delete(self, bucket: str, name: str, *, revision: int, actor: str, record_type: str, before: Any) -> None:
        kv = await self._kv(bucket)
        try:
            await kv.delete(kv_key(name), last=revision)
        except KeyWrongLastSequenceError:
            raise Conflict(name) from None
        self._audit(actor, "delete", record_type, name, before, None)

    def _audit(self, actor: str, action: str, record_type: str, name: str, before: Any, after: Any) -> None:
        either = after if after is not None else before
        tenant = getattr(either, "tenant_id", None) or (name if record_type == "tenant" else "")
        self.audit(
            AuditEvent(
                event_id=new_id(),
                at_ns=time.time_ns(),
                actor=actor,
                action=action,
                record_type=record_type,
                record_id=name,
                tenant_id=tenant,
                before=audit_view(before),
                after=audit_view(after),
            )
        )
