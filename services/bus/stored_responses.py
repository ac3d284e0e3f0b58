"""The Responses API's answers, kept per tenant in a KV bucket so that a
later request continues one (``previous_response_id``), and ``GET``/``DELETE
/v1/responses/{id}`` find it.

Each entry holds its whole conversation (every input item it answered, and
its output), so continuing one is one read however long the conversation,
and an entry never depends on an older one that expired or was deleted
first. The key is ``<tenant>.<response id>``: a tenant reads only its own.
Entries age out with the bucket's ``max_age`` (``responses_ttl_s``); a large
conversation is compressed (the gateway's NATS takes messages up to 8 MB).
"""

from __future__ import annotations

import zlib

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import bus, subjects
from schemas.errors import InternalError
from schemas.stored_response import StoredResponse
from services.bus.kv import ensure_kv

# Entries above this many bytes are kept compressed (a leading 0x01 says so).
COMPRESS_ABOVE = 4096
_PLAIN, _ZLIB = b"\x00", b"\x01"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(StoredResponse).decode


async def ensure_bucket(js: JetStreamContext, ttl_s: float, replicas: int = 1) -> None:
    await ensure_kv(
        js,
        KeyValueConfig(
            bucket=subjects.KV_RESPONSES,
            history=1,
            ttl=ttl_s or None,
            storage=StorageType.FILE,
            replicas=replicas,
            max_value_size=-1,
        ),
    )


def _key(tenant_id: str, response_id: str) -> str:
    # A key of no tenant (a gateway admin's) is "-": a KV key has no empty token.
    return f"{tenant_id or '-'}.{response_id}"


def pack(record: StoredResponse) -> bytes:
    try:
        data = _encode(record)
    except OverflowError:  # an integer past 64 bits in a free-form part (a tool's schema, a kept item)
        data = _encode(bus.widen_huge_ints(msgspec.to_builtins(record)))
    if len(data) > COMPRESS_ABOVE:
        return _ZLIB + zlib.compress(data, 1)
    return _PLAIN + data


def unpack(data: bytes) -> StoredResponse:
    body = zlib.decompress(data[1:]) if data[:1] == _ZLIB else data[1:]
    return _decode(body)


class StoredResponses:
    def __init__(self) -> None:
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None

    async def start(self, js: JetStreamContext) -> None:
        self._js = js

    async def _bucket(self) -> KeyValue:
        # Looked up at first use: the bootstrap makes the bucket, and a
        # process may start before it did.
        if self._kv is None:
            assert self._js is not None, "not started"
            try:
                self._kv = await self._js.key_value(subjects.KV_RESPONSES)
            except (BucketNotFoundError, nats.errors.Error) as exc:
                raise InternalError(f"Stored responses are not available ({exc}).", status=503) from exc
        return self._kv

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        return (await self.get_with_revision(tenant_id, response_id))[0]

    async def put(self, record: StoredResponse) -> int:
        """Store ``record``; its revision."""
        kv = await self._bucket()
        try:
            return await kv.put(_key(record.tenant_id, record.response.id), pack(record))
        except nats.errors.Error as exc:
            raise InternalError(f"The response could not be stored ({exc}).", status=503) from exc

    async def get_with_revision(self, tenant_id: str, response_id: str) -> tuple[StoredResponse | None, int]:
        kv = await self._bucket()
        try:
            entry = await kv.get(_key(tenant_id, response_id))
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        except nats.errors.Error as exc:
            raise InternalError(f"Stored responses could not be read ({exc}); try again.", status=503) from exc
        return (unpack(entry.value) if entry.value else None), entry.revision or 0

    async def replace(self, record: StoredResponse, revision: int) -> bool:
        """Store ``record`` if its entry is still at ``revision`` (no one
        wrote it since); False if someone did."""
        kv = await self._bucket()
        try:
            await kv.update(_key(record.tenant_id, record.response.id), pack(record), last=revision)
        except KeyWrongLastSequenceError:
            return False
        except nats.errors.Error as exc:
            raise InternalError(f"The response could not be stored ({exc}).", status=503) from exc
        return True

    async def delete(self, tenant_id: str, response_id: str) -> bool:
        """False if there was no such response."""
        if await self.get(tenant_id, response_id) is None:
            return False
        await (await self._bucket()).purge(_key(tenant_id, response_id))
        return True
