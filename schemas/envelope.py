"""The request envelope and its routing slip (DESIGN.md §2)."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from schemas.base import BusMessage
from schemas.chat import ChatBody, EmbeddingsBody
from schemas.mcp import McpCall, tool_name
from schemas.reservation import Reservation
from schemas.rest import RestCall, service_model
from schemas.tasks import SpeechRequest, TaskRequest, TranscriptionRequest

# How a request reached the gateway: HTTP, a WebSocket connection (both
# through the ingress), a service publishing on NATS, or a durable job.
Origin = Literal["http", "ws", "nats", "job"]
# Which client API the request came in on ("messages": Anthropic's shape;
# "count_tokens": Anthropic's token count of a Messages request, answered
# with a count, never with a completion; "mcp": a call to an upstream MCP
# server, a tool's, a prompt's or a resource's; "rest": a call to a REST
# service published through the gateway; the rest are ``schemas.tasks``'
# kinds, by the endpoint they came in on).
Api = Literal[
    "chat",
    "messages",
    "embeddings",
    "responses",
    "count_tokens",
    "mcp",
    "rest",
    "images",
    "image_edits",
    "transcriptions",
    "translations",
    "speech",
    "moderations",
    "rerank",
    # A step of a batch run as a provider's own batch (``schemas.tasks.NativeBatchRequest``).
    "native_batch",
]
# The stages after the ingress, in the order a request visits them (it skips
# those its slip leaves out): each a worker that ``workers/runner.py`` runs, in
# a process alone or hosted with others (``workers/pipeline.py``).
WorkerStage = Literal["policy", "redact", "route", "cache", "provider"]
# Everything that holds a request and records a span.
StageName = Literal["ingress", WorkerStage]
# What a span may time: a stage's hold of the request, or a part of one told
# apart within it ("moderation": the provider's call to the tenant's
# moderation guardrail, inside the provider's own span).
SpanName = Literal[StageName, "moderation"]
# The one list of stages: every table of them (processes, NATS roles, what
# /readyz waits for) is built from it.
WORKER_STAGES: tuple[WorkerStage, ...] = get_args(WorkerStage)


class Span(msgspec.Struct, array_like=True):
    """Wall-clock time a stage held the request (or a part of that hold a
    ``SpanName`` names), in ns since the epoch."""

    stage: SpanName
    start_ns: int
    end_ns: int


class Deployment(msgspec.Struct, omit_defaults=True):
    """One upstream that can serve a model group: where and how to call it,
    and what its group's strategy weighs. Its ``name`` is unique across the
    gateway: health (the circuit breaker, latency) is kept per name."""

    name: str
    provider: str
    base_url: str
    upstream_model: str
    # Name of the environment variable that holds the upstream key; the key
    # itself never rides on the bus.
    api_key_env: str | None = None
    timeout_s: float = 60.0
    # Azure OpenAI's ``api-version`` query parameter.
    api_version: str = ""
    # Catalog entry used for pricing and token counting.
    catalog_model: str | None = None
    # Share of a "weighted" group's traffic, and rank in a "priority" group (lowest first).
    weight: float = 1.0
    priority: int = 0
    # The upstream's own limits for this deployment, if any: routing puts it
    # last once its minute is used up (the upstream would answer 429).
    rpm: int | None = None
    tpm: int | None = None
    # Batches of this model run as one batch of the provider's own batch API
    # (OpenAI's, Azure's, Anthropic's Message Batches), at its batch price.
    native_batch: bool = False


class PromptRef(msgspec.Struct, omit_defaults=True):
    """Which prompt a request was made from: recorded on its row."""

    name: str
    version: int
    label: str = ""
    # The API call it belongs to (the parent row), when made by one.
    parent_id: str = ""


class Privacy(msgspec.Struct, omit_defaults=True):
    """What the answer needs from the redaction stage's work on the request."""

    # placeholder -> original of the values it masked, so the answer is
    # restored for the caller. Never copied into events, logs or rows.
    vault: dict[str, str] = {}
    # The tenant's output checks: detector -> mask, redact or flag.
    output: dict[str, str] = {}
    # The rules' version, for the output checks' audit rows.
    version: int = 0
    # How national phone numbers are read in the answer (as in the prompt).
    phone_region: str = "US"


# What a tenant's moderation guardrail does with a request it flags: refuse
# it (nothing reaches the model), or let it through and record the flags.
GuardrailAction = Literal["block", "flag"]


class ModerationCheck(msgspec.Struct, omit_defaults=True):
    """The tenant's moderation guardrail on one chat request: stamped by
    policy from the tenant's setting, then replaced whole by routing with
    the moderation group's deployments to try; the provider calls them
    on the request's text before the chat call."""

    # The moderation model group, as the tenant's setting names it.
    model: str
    action: GuardrailAction = "block"
    # Routing's: the group, its deployments in order (none: no group serves
    # the name, which fails the check) and its retry rounds.
    group: str = ""
    candidates: list[Deployment] = []
    retries: int = 0


class Envelope(BusMessage, tag="chat.request"):
    # The subject that receives the replies (an inbox of the caller's).
    reply: str
    # Exactly one of the bodies: a chat request (``api`` "chat", or
    # "messages" when it came in Anthropic's shape), an embeddings request,
    # a call to an MCP server (``api`` "mcp"), to a REST service (``api``
    # "rest"), or an image, audio, moderation or rerank request (``task``).
    body: ChatBody | None = None
    embeddings: EmbeddingsBody | None = None
    tool: McpCall | None = None
    rest: RestCall | None = None
    task: TaskRequest | None = None
    # Left empty by a direct NATS caller, the policy stage stamps these.
    id: str = ""
    received_at_ns: int = 0
    deadline_ns: int = 0
    slip: list[str] = []
    api: Api = "chat"
    origin: Origin = "nats"
    key_id: str = ""
    tenant_id: str = ""
    spans: list[Span] = []
    # Set by routing alone (policy clears whatever a caller put here): the
    # group that serves the request, the deployments to try in order, the
    # larger-context ones to move to on a context-length error, and the A/B
    # arm the request fell in.
    group: str = ""
    candidates: list[Deployment] = []
    context_candidates: list[Deployment] = []
    arm: str = ""
    # Retry rounds over the candidates after each failed once.
    retries: int = 0
    # A deployment the caller asks for by name (``x-sluice-deployment``);
    # policy refuses it unless the caller's key may pin.
    pin: str = ""
    # The caller's Cache-Control (e.g. "max-age=300", "no-store"), as given.
    cache_control: str = ""
    # Set by policy alone from that and the tenant's cache policy: how long
    # the answer may be kept (0: not at all) and whether to look it up first;
    # then by the cache stage on a miss: the key to store the answer under.
    cache_ttl_s: int = 0
    cache_lookup: bool = False
    cache_key: str = ""
    # The client's own JSON body, kept by the ingress (only) when it holds
    # what the unified body cannot, for a deployment of the same API family.
    raw: bytes = b""
    # What the unified body leaves out of the client's (field names,
    # "tools[3]:web_search_20250305", "content:thinking"): what a deployment
    # of another family does not get. Set by the ingress; at most 32 names.
    dropped: list[str] = []
    # The caller's ``anthropic-beta`` header (a messages request over HTTP),
    # beta names separated by commas: an Anthropic deployment gets it as it
    # is. The ingress refuses any other value; the adapter leaves one out.
    anthropic_beta: str = ""
    # Set by policy alone (it clears whatever a caller put here): what it took
    # from the shared limit and budget counters, settled by whoever ends the request.
    quota: Reservation | None = None
    # The prompt this request was made from, and the prompt-API call it is a
    # step of: set by the gateway's own prompt APIs only (policy clears it
    # for anyone else), and recorded on the request's row.
    prompt: PromptRef | None = None
    # Set by policy alone from the tenant's opt-in: keep this call's bodies
    # in the call logs, each cut at this many bytes (0: keep none).
    call_log_max_bytes: int = 0
    # Set by the redaction stage alone (policy clears whatever a caller put
    # here), for tenants whose answers need work: see ``Privacy``.
    privacy: Privacy | None = None
    # The requester reads ``Chunk.more``: the deltas of one upstream read
    # come in one message (fewer messages, same deltas). The gateway's own
    # ingress asks for it; a bus caller may.
    batch_chunks: bool = False
    # The requester paces a REST answer's body (``schemas.replies.Credit``):
    # the provider sends at most this many bytes past what it was granted,
    # then waits, and its upstream with it (TCP backpressure). 0: it sends
    # as it reads. The gateway's own ingress sets it; a bus caller may, and
    # grants on ``sluice.v1.in.credit``.
    flow_window: int = 0
    # The requester wants progress replies (``Accepted``, ``Admitted``,
    # ``Redacted``) and may send the request again under the fence protocol
    # (``schemas.replies.Fence``). The gateway's own sessions set it, whatever
    # the door: stages read this, never ``origin``.
    progress: bool = False
    # Which send of the request this is: 0 the first, higher for a copy sent
    # again after a fence (``Fence.copy``). Policy clears it for bus callers.
    copy: int = 0
    # Set by policy alone when redaction is on the slip: the version of the
    # tenant's privacy rules it routed with. The redaction stage refuses a
    # request whose rules it does not hold yet (fails closed).
    rules_version: int = 0
    # Set by policy alone, from a valid ``traceparent`` header on the request
    # (the ingress passes the HTTP caller's on): recorded on the request's row.
    trace_id: str = ""
    # The caller's span in that trace: the parent of the request's own spans
    # (OpenTelemetry, when an exporter is configured). Set by policy alone too.
    parent_span_id: str = ""
    # The batch this request is a line of (``schemas.batches``): set by the
    # gateway's job runner alone (policy clears it for any other origin), and
    # recorded on the request's row.
    batch_id: str = ""
    # Set by policy alone (cleared for callers), from the tenant's moderation
    # guardrail, on a chat request it covers; its deployments by routing.
    moderation: ModerationCheck | None = None

    @property
    def model(self) -> str:
        """What the request calls: a model, or a server's tool as callers name it."""
        if self.body is not None:
            return self.body.model
        if self.tool is not None:
            return tool_name(self.tool.server, self.tool.name)
        if self.rest is not None:
            return service_model(self.rest.service, self.rest.version)
        if self.task is not None:
            return self.task.model
        return self.embeddings.model if self.embeddings is not None else ""

    @property
    def stream(self) -> bool:
        """The answer comes as events (SSE): a chat's, a transcript's or speech's when asked."""
        task = self.task
        if isinstance(task, TranscriptionRequest):
            return task.stream
        if isinstance(task, SpeechRequest):
            return task.stream_format == "sse"
        return self.body is not None and bool(self.body.stream)
