"""The ingress process's shared state: its NATS connection and helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from ingress.admin.store import ControlStore
from ingress.portal.people_store import PeopleStore
from ingress.replies import ReplyRouter
from schemas import subjects
from schemas.control import (
    ModelRoute,
    decode_approval_rule,
    decode_route,
    decode_subscription,
    decode_tenant,
)
from schemas.envelope import Origin, PromptRef, Span
from schemas.events import add_rest_call, add_tool_call
from schemas.lifecycle import decode_beat
from schemas.mcp import McpCall, McpServer, ServerCatalog, decode_catalog, decode_server
from schemas.people import App, User, decode_app, decode_user
from schemas.prompts import decode_prompt, decode_version
from schemas.replies import Failure, Final
from schemas.rest import RestCall, RestService, decode_service
from services import records, routing
from services.bus import metrics, process, tracing
from services.bus.blobs import BlobStore
from services.bus.events import EventPublisher
from services.bus.file_records import FileRecords
from services.bus.kv import KeyIndex, KvMirror
from services.bus.kv_writer import KvWriter
from services.bus.quota_ledger import Counters
from services.bus.stored_responses import StoredResponses
from services.config import GatewaySettings, config_from_env
from services.fence import ProviderRoster
from services.prompt_api import PromptBook
from services.readiness import Readiness, needed_here


class Gateway:
    def __init__(self, nc: Client, settings: GatewaySettings) -> None:
        self.nc = nc
        self.settings = settings
        # Which provider processes must answer a fence before a request is sent again.
        self.providers = ProviderRoster()
        self.replies = ReplyRouter(nc, self.providers)
        self.events = EventPublisher(nc.jetstream(), "ingress")
        self.table = routing.RouteTable()
        self.routes: KvMirror[ModelRoute] = KvMirror(subjects.KV_MODELS, decode_route, self.table.changed)
        self.keys = KeyIndex()
        # The admin API's copies of the other control records.
        self.mirrors: dict[str, KvMirror] = {
            subjects.KV_KEYS: self.keys.mirror,
            subjects.KV_TENANTS: KvMirror(subjects.KV_TENANTS, decode_tenant),
            subjects.KV_SUBSCRIPTIONS: KvMirror(subjects.KV_SUBSCRIPTIONS, decode_subscription),
            subjects.KV_APPROVAL_RULES: KvMirror(subjects.KV_APPROVAL_RULES, decode_approval_rule),
            subjects.KV_KEY_USAGE: KvMirror(subjects.KV_KEY_USAGE, int),
            subjects.KV_PROMPTS: KvMirror(subjects.KV_PROMPTS, decode_prompt),
            subjects.KV_PROMPT_VERSIONS: KvMirror(subjects.KV_PROMPT_VERSIONS, decode_version),
            subjects.KV_MCP_SERVERS: KvMirror(subjects.KV_MCP_SERVERS, decode_server),
            subjects.KV_MCP_CATALOG: KvMirror(subjects.KV_MCP_CATALOG, decode_catalog),
            subjects.KV_SERVICES: KvMirror(subjects.KV_SERVICES, decode_service),
            subjects.KV_USERS: KvMirror(subjects.KV_USERS, decode_user),
            subjects.KV_APPS: KvMirror(subjects.KV_APPS, decode_app),
        }
        # The MCP servers callers may reach, and what each offers (its
        # catalog, kept by the provider stage): what /mcp lists and checks.
        self.mcp_servers: KvMirror[McpServer] = self.mirrors[subjects.KV_MCP_SERVERS]
        self.mcp_catalog: KvMirror[ServerCatalog] = self.mirrors[subjects.KV_MCP_CATALOG]
        # The REST services callers reach at /services/<slug>/..., by ``service_key``.
        self.rest_services: KvMirror[RestService] = self.mirrors[subjects.KV_SERVICES]
        self.prompt_book = PromptBook(
            self.mirrors[subjects.KV_PROMPTS].items, self.mirrors[subjects.KV_PROMPT_VERSIONS].items
        )
        self.store = ControlStore(
            KvWriter(nc.jetstream(), self.events.emit),
            self.mirrors,
            nc,
            model_known=lambda model: self.table.find(model) is not None,
        )
        # Settles what policy reserved for a request whose provider died.
        self.counters = Counters(nc.jetstream(), self.events)
        # The portal's people and their apps; accounts, invitations, sessions.
        self.users: KvMirror[User] = self.mirrors[subjects.KV_USERS]
        self.apps: KvMirror[App] = self.mirrors[subjects.KV_APPS]
        self.people = PeopleStore(
            nc.jetstream(), self.users, self.mirrors[subjects.KV_TENANTS], self.events.emit, config_from_env().portal
        )
        # Requests this process holds, told by the app (model calls, prompt APIs).
        self.in_flight: Callable[[], int] = lambda: 0
        self.heartbeat = process.Heartbeat(nc, process.instance_name("ingress"), in_flight=lambda: self.in_flight())
        # Which stages have a live process, from every process's heartbeat.
        self.readiness = Readiness(needed_here())
        # The Responses API's answers, for ``previous_response_id`` and GET /v1/responses/{id}.
        self.responses = StoredResponses()
        # The Files API's records (their bytes are in the object store).
        self.files = FileRecords(nc.jetstream())
        # The object stores: files, uploads and the images made (``services.bus.blobs``).
        self.blobs = BlobStore(nc.jetstream())
        # Queues a job the gateway made (a background response): the job
        # intake's ``queue``, set by the app once the job runner started.
        self.queue_job: Callable[[bytes, str, str, str, str, str], Awaitable[int]] | None = None
        self._metrics: asyncio.Task[None] | None = None

    async def start(self) -> None:
        js = self.nc.jetstream()
        await self.routes.start(js)
        for mirror in self.mirrors.values():
            await mirror.start(js)
        await self.replies.start()
        await self.responses.start(js)
        await self.blobs.start()
        await self.nc.subscribe(f"{subjects.CONTROL_HEARTBEAT}.*", cb=self._on_beat)
        self.events.start()
        self._metrics = asyncio.create_task(metrics.run_flusher(), name="metrics")
        tracing.setup(process.instance_name("ingress"))

    async def serving(self) -> None:
        """Tell the supervisor this process takes connections: called once
        its port listens, so a rolling restart waits for that before it
        stops the next replica of the port."""
        self.heartbeat.start()
        await process.announce_ready(self.nc, process.instance_name("ingress"))

    async def _on_beat(self, msg: Msg) -> None:
        # Only the names of known stages count (a beat is anyone's who may publish it).
        try:
            beat = decode_beat(msg.data)
        except msgspec.DecodeError:
            return
        now = time.monotonic()
        self.readiness.saw(beat.serves, now)
        self.providers.saw(msg.subject.rsplit(".", 1)[1], beat.serves, now)

    def ready(self) -> tuple[bool, dict]:
        return self.readiness.report(time.monotonic(), self.nc.is_connected)

    async def stop(self) -> None:
        self.heartbeat.stop()
        if self._metrics is not None:
            self._metrics.cancel()
        await self.routes.stop()
        for mirror in self.mirrors.values():
            await mirror.stop()
        await self.counters.close()
        await self.events.close()
        await asyncio.to_thread(tracing.shutdown)
        await self.nc.drain()

    def record(
        self,
        request_id: str,
        received_ns: int,
        api: str,
        model: str,
        stream: bool,
        reply: Final | Failure,
        spans: list[Span],
        *,
        ttft_ns: int = 0,
        client_disconnected: bool = False,
        status: int | None = None,
        origin: Origin = "http",
        prompt: PromptRef | None = None,
        trace_id: str = "",
        parent_span_id: str = "",
        tool: McpCall | None = None,
        rest: RestCall | None = None,
        batch_id: str = "",
    ) -> None:
        row = records.request_event(
            request_id=request_id,
            received_at_ns=received_ns,
            origin=origin,
            api=api,
            model=model,
            stream=stream,
            done_ns=time.time_ns(),
            reply=reply,
            ttft_ns=ttft_ns,
            extra_spans=spans,
            client_disconnected=client_disconnected,
            status=status,
            prompt=prompt,
            trace_id=trace_id,
            batch_id=batch_id,
        )
        if tool is not None:
            add_tool_call(row, tool, reply)
        if rest is not None:
            add_rest_call(row, rest, reply)
        self.events.emit(row)
        metrics.request_ended(row)
        tracing.request_ended(row, parent_span_id)
