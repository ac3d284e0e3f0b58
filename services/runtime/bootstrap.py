"""Creating the event stream and KV buckets, and seeding them from config."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

from schemas import subjects
from schemas.control import kv_encode
from services.config import ControlRecords
from services.runtime.kv import kv_key

# Events wait here while ClickHouse is down: keep a week or 2 GiB.
EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 2 * 1024**3


async def ensure_stream(nc: Client) -> None:
    js = nc.jetstream()
    config = StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.EVENTS_ALL],
        storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S,
        max_bytes=EVENTS_MAX_BYTES,
        duplicate_window=120,
    )
    try:
        await js.stream_info(subjects.EVENTS_STREAM)
        await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)


async def prepare(nc: Client, records: ControlRecords) -> None:
    """Everything a fresh or existing NATS needs before stages start."""
    await ensure_stream(nc)
    await seed(nc, records)


async def seed(nc: Client, records: ControlRecords) -> None:
    """Make the buckets hold exactly what the config says."""
    js = nc.jetstream()
    wanted = {
        subjects.KV_KEYS: {kv_key(k): kv_encode(v) for k, v in records.keys.items()},
        subjects.KV_TENANTS: {kv_key(k): kv_encode(v) for k, v in records.tenants.items()},
        subjects.KV_MODELS: {kv_key(k): kv_encode(v) for k, v in records.routes.items()},
    }
    for bucket, items in wanted.items():
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=5, storage=StorageType.FILE))
        try:
            existing = set(await kv.keys())
        except Exception:  # NoKeysError on an empty bucket
            existing = set()
        for key, value in items.items():
            await kv.put(key, value)
        for key in existing - set(items):
            await kv.delete(key)
