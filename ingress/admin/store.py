"""Control records for the admin API: read with their revision, written
through the one ``KvWriter`` (revision-checked, audited), listed from the
ingress's own watched copies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from schemas import subjects
from schemas.analytics import QueryRequest, QueryResult
from schemas.control import (
    ApiKey,
    ApprovalRule,
    Subscription,
    Tenant,
    decode_approval_rule,
    decode_key,
    decode_subscription,
    decode_tenant,
)
from schemas.errors import AnalyticsUnavailable, RecordConflict, RecordNotFound
from schemas.mcp import McpServer, ServerCatalog, decode_server
from schemas.prompts import Prompt, PromptVersion, decode_prompt, decode_version
from schemas.rest import RestService, decode_service
from services.bus.kv import KvMirror
from services.bus.kv_writer import Conflict, KvWriter
from services.control import Actor

T = TypeVar("T")


class Records(Generic[T]):
    """One kind of record: its bucket, its watched copy, its writes."""

    def __init__(self, writer: KvWriter, kind: str, bucket: str, decode: Callable[[bytes], T], mirror: KvMirror[T]):
        self.writer = writer
        self.kind = kind
        self.bucket = bucket
        self.decode = decode
        self.mirror = mirror

    def all(self) -> list[T]:
        return list(self.mirror.items.values())

    async def get(self, name: str) -> tuple[T, int]:
        record, revision = await self.writer.read(self.bucket, name, self.decode)
        if record is None:
            raise RecordNotFound(f"No {self.kind} {name!r}.")
        return record, revision

    async def create(self, name: str, record: T, actor: Actor) -> None:
        try:
            await self.writer.write(
                self.bucket, name, record, revision=0, actor=actor.key_id, action="create", record_type=self.kind
            )
        except Conflict:
            raise RecordConflict(f"A {self.kind} {name!r} exists already.") from None
        self.mirror.apply(name, record)

    async def replace(self, name: str, record: T, revision: int, actor: Actor, action: str, before: T) -> None:
        try:
            await self.writer.write(
                self.bucket,
                name,
                record,
                revision=revision,
                actor=actor.key_id,
                action=action,
                record_type=self.kind,
                before=before,
            )
        except Conflict:
            raise RecordConflict(f"{self.kind} {name!r} changed meanwhile; read it again and retry.") from None
        self.mirror.apply(name, record)

    async def delete(self, name: str, revision: int, actor: Actor, before: T) -> None:
        try:
            await self.writer.delete(
                self.bucket, name, revision=revision, actor=actor.key_id, record_type=self.kind, before=before
            )
        except Conflict:
            raise RecordConflict(f"{self.kind} {name!r} changed meanwhile; read it again and retry.") from None
        self.mirror.apply(name, None)


class ControlStore:
    def __init__(
        self,
        writer: KvWriter,
        mirrors: dict[str, KvMirror[Any]],
        nc: Client | None = None,
        model_known: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self.nc = nc
        # Whether a model (group or alias) is served here: a prompt must name one.
        self.model_known = model_known
        self.tenants: Records[Tenant] = Records(
            writer, "tenant", subjects.KV_TENANTS, decode_tenant, mirrors[subjects.KV_TENANTS]
        )
        self.keys: Records[ApiKey] = Records(writer, "key", subjects.KV_KEYS, decode_key, mirrors[subjects.KV_KEYS])
        self.subscriptions: Records[Subscription] = Records(
            writer, "subscription", subjects.KV_SUBSCRIPTIONS, decode_subscription, mirrors[subjects.KV_SUBSCRIPTIONS]
        )
        self.approval_rules: Records[ApprovalRule] = Records(
            writer,
            "approval_rule",
            subjects.KV_APPROVAL_RULES,
            decode_approval_rule,
            mirrors[subjects.KV_APPROVAL_RULES],
        )
        self.key_usage: KvMirror[int] = mirrors[subjects.KV_KEY_USAGE]
        self.prompts: Records[Prompt] = Records(
            writer, "prompt", subjects.KV_PROMPTS, decode_prompt, mirrors[subjects.KV_PROMPTS]
        )
        self.prompt_versions: Records[PromptVersion] = Records(
            writer, "prompt_version", subjects.KV_PROMPT_VERSIONS, decode_version, mirrors[subjects.KV_PROMPT_VERSIONS]
        )
        self.mcp_servers: Records[McpServer] = Records(
            writer, "mcp_server", subjects.KV_MCP_SERVERS, decode_server, mirrors[subjects.KV_MCP_SERVERS]
        )
        # Kept by the provider stage; the admin API only shows it.
        self.mcp_catalog: KvMirror[ServerCatalog] = mirrors[subjects.KV_MCP_CATALOG]
        # By ``service_key`` (``<slug>.v<N>``).
        self.services: Records[RestService] = Records(
            writer, "service", subjects.KV_SERVICES, decode_service, mirrors[subjects.KV_SERVICES]
        )

    async def recorded_spend(self, since_ns: int, tenant_id: str) -> list[dict[str, Any]]:
        """Requests, tokens and cost per key since a time, from ClickHouse."""
        result = await self.named_query("spend", {"since_ns": since_ns, "tenant_id": tenant_id})
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]

    async def named_query(self, name: str, params: dict[str, int | str]) -> QueryResult:
        """A named analytics query, asked of the analytics sink over NATS, as every tool does."""
        assert self.nc is not None
        ask = msgspec.json.encode(QueryRequest(name=name, params=params))
        try:
            msg = await self.nc.request(subjects.ANALYTICS_QUERY, ask, timeout=30)
        except (TimeoutError, nats.errors.Error) as exc:
            raise AnalyticsUnavailable(f"The analytics sink did not answer ({exc!r}); try again.") from None
        result = msgspec.json.decode(msg.data, type=QueryResult)
        if result.error:
            raise AnalyticsUnavailable(f"The {name} query failed: {result.error}")
        return result

    async def committed(self, subject: str) -> int:
        """A budget counter's value: what was spent, plus what requests in
        flight reserved and what policy replicas hold leased."""
        assert self.nc is not None
        try:
            msg = await self.nc.jetstream().get_last_msg(subjects.SPEND_STREAM, subject, direct=True)
        except nats.js.errors.NotFoundError:
            return 0
        return int(msgspec.json.decode(msg.data)["val"])
