"""Creating the streams and KV buckets, and seeding them from config.

The config file owns only the records it made: a seed creates and updates
those and deletes the ones the file no longer names, and never touches a
record the admin API made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from analytics import alerting, lease
from schemas import subjects
from schemas.control import decode_key, decode_route, decode_tenant
from schemas.mcp import decode_server
from schemas.prompts import decode_prompt
from schemas.rest import RestService, decode_service
from services import rest_config
from services.bus import (
    batch_buckets,
    blobs,
    file_records,
    mcp_buckets,
    portal_buckets,
    quota_ledger,
    request_ids,
    response_cache,
    stored_responses,
)
from services.bus.events import EventPublisher
from services.bus.kv import ensure_kv, kv_key, kv_name
from services.bus.kv_writer import KvWriter
from services.cli.prompt_seed import seed_prompts
from services.config import ControlRecords

log = logging.getLogger("sluice.bootstrap")
# Events wait here while ClickHouse is down: keep a week or 2 GiB.
EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_MAX_BYTES = 2 * 1024**3
BUCKETS = (
    subjects.KV_KEYS,
    subjects.KV_TENANTS,
    subjects.KV_MODELS,
    subjects.KV_SUBSCRIPTIONS,
    subjects.KV_APPROVAL_RULES,
    subjects.KV_KEY_USAGE,
    subjects.KV_HEALTH,
    subjects.KV_PROMPTS,
    subjects.KV_PROMPT_VERSIONS,
)
# bucket -> (record type in the audit trail, decoder)
_SEEDED: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    subjects.KV_TENANTS: ("tenant", decode_tenant),
    subjects.KV_KEYS: ("key", decode_key),
    subjects.KV_MODELS: ("model", decode_route),
    subjects.KV_MCP_SERVERS: ("mcp_server", decode_server),
    subjects.KV_SERVICES: ("service", decode_service),
}


async def ensure_stream(nc: Client, replicas: int = 1) -> None:
    js = nc.jetstream()
    config = StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.EVENTS_ALL],
        storage=StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S,
        max_bytes=EVENTS_MAX_BYTES,
        duplicate_window=120,
        num_replicas=replicas,
    )
    try:
        await js.stream_info(subjects.EVENTS_STREAM)
        await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)


# A job waits at most this long to run, and its result is kept this long.
JOBS_MAX_AGE_S = 7 * 24 * 3600
JOB_RESULTS_TTL_S = 24 * 3600


async def ensure_job_streams(nc: Client, replicas: int = 1) -> None:
    """The work queue, the replies of jobs' requests, and the results bucket."""
    js = nc.jetstream()
    configs = (
        StreamConfig(
            name=subjects.JOBS_STREAM,
            # Jobs, and batches' lines (each tenant's own consumer apart from its jobs').
            subjects=[f"{subjects.JOB_QUEUE}.>", f"{subjects.BATCH_QUEUE}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=JOBS_MAX_AGE_S,
            # A publisher that sends a job again with the same Nats-Msg-Id
            # (its own retry) within a day makes no second job.
            duplicate_window=24 * 3600,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.JOB_REPLIES_STREAM,
            subjects=[f"{subjects.JOB_REPLIES}.>"],
            storage=StorageType.FILE,
            max_age=JOB_RESULTS_TTL_S,
            num_replicas=replicas,
        ),
    )
    for config in configs:
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    await ensure_kv(
        js,
        KeyValueConfig(
            bucket=subjects.KV_JOB_RESULTS, ttl=JOB_RESULTS_TTL_S, storage=StorageType.FILE, replicas=replicas
        ),
    )


async def ensure_buckets(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_kv(
        js, *(KeyValueConfig(bucket=b, history=5, storage=StorageType.FILE, replicas=replicas) for b in BUCKETS)
    )


async def prepare(nc: Client, records: ControlRecords, replicas: int = 1) -> list[str]:
    """Everything a fresh or existing NATS needs before stages start; the
    warnings of the seed."""
    await ensure_stream(nc, replicas)
    await quota_ledger.ensure_streams(nc, replicas)
    await response_cache.ensure_stream(nc, replicas)
    await ensure_job_streams(nc, replicas)
    js = nc.jetstream()
    await ensure_buckets(js, replicas)
    await request_ids.ensure_bucket(js, replicas)
    await stored_responses.ensure_bucket(js, records.responses_ttl_s, replicas)
    await mcp_buckets.ensure_buckets(js, replicas, records.mcp_session_ttl_s)
    await portal_buckets.ensure_buckets(js, replicas)
    await file_records.ensure_bucket(js, replicas)
    await blobs.ensure_stores(js, records.media_ttl_s, replicas)  # files, uploads and images
    await batch_buckets.ensure_buckets(js, replicas)
    await alerting.ensure_buckets(nc, replicas)
    await lease.ensure_bucket(nc, replicas)  # which sink replica writes
    events = EventPublisher(js, "config")
    events.start()
    try:
        return await seed(KvWriter(js, events.emit), records)
    finally:
        await events.close()


async def seed(writer: KvWriter, records: ControlRecords) -> list[str]:
    warnings: list[str] = []
    now_ms = int(time.time() * 1000)
    wanted = {
        subjects.KV_TENANTS: records.tenants,
        subjects.KV_KEYS: records.keys,
        subjects.KV_MODELS: records.routes,
        subjects.KV_MCP_SERVERS: records.mcp_servers,
        subjects.KV_SERVICES: records.services,
    }
    for bucket, items in wanted.items():
        record_type, decode = _SEEDED[bucket]
        existing = await _read_all(writer, bucket, decode)
        for name, record in items.items():
            current, revision = existing.get(name, (None, 0))
            if current is not None and current.owner != "config":
                warnings.append(f"{record_type} {name!r}: made through the admin API, so the config file's is ignored")
                continue
            record.owner = "config"
            if hasattr(record, "created_at_ms"):
                record.created_at_ms = getattr(current, "created_at_ms", 0) or now_ms
            if isinstance(record, RestService):
                record.deprecated_at_ms = rest_config.deprecated_since(record, current, now_ms)
            if current == record:
                continue
            action = "update" if revision else "create"
            await writer.write(
                bucket,
                name,
                record,
                revision=revision,
                actor="config",
                action=action,
                record_type=record_type,
                before=current,
            )
        for name, (current, revision) in existing.items():
            if name not in items and current.owner == "config":
                await writer.delete(
                    bucket, name, revision=revision, actor="config", record_type=record_type, before=current
                )
    existing_prompts = await _read_all(writer, subjects.KV_PROMPTS, decode_prompt)
    warnings += await seed_prompts(writer, records.prompts, existing_prompts)
    for line in warnings:
        log.warning("seed: %s", line)
    return warnings


async def _read_all(writer: KvWriter, bucket: str, decode: Callable[[bytes], Any]) -> dict[str, tuple[Any, int]]:
    """Every live record of a bucket with its revision. The subjects come from
    the stream's own index rather than a key watch, which can end early."""
    info = await writer.js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
    prefix = f"$KV.{bucket}."
    out = {}
    for subject in info.state.subjects or {}:
        name = kv_name(subject.removeprefix(prefix))
        try:
            record, revision = await writer.read(bucket, name, decode)
        except msgspec.DecodeError:  # an older format: the config's copy replaces it
            log.warning("seed: %s record %r does not decode; replacing it", bucket, name)
            kv = await writer.js.key_value(bucket)
            entry = await kv.get(kv_key(name))
            await kv.delete(kv_key(name), last=entry.revision)
            continue
        if record is not None:
            out[name] = (record, revision)
    return out
