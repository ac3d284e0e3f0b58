"""The admin API's wire shapes: what crosses HTTP between a client (the
``sluice`` command, a script) and ``/admin/v1``.

The ingress serves them (``ingress/admin``: Litestar validates every request
against them before a handler runs, and publishes them in the API's OpenAPI
document, ``GET /admin/v1/openapi.json``); the command line builds its
requests from them (``services/cli/admin_cli.py``, ``prompts_cli.py``), so a
renamed field fails in the tests of both. They never ride on the bus, so the
bus contract (``schemas/contract.py``) leaves them out: the OpenAPI document
is their published contract.

Requests are ``Strict`` (an unknown field is refused; defaults are left out
when encoded); ``...Update`` shapes leave a field ``UNSET`` to keep it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from schemas.control import GUARDED_APIS, GuardedApi, Period, PrivacyRules, Role, SubscriptionState
from schemas.envelope import GuardrailAction
from schemas.mcp import CatalogPrompt, CatalogResource, McpSafety, McpTransport, ToolAnnotations
from schemas.prompts import ApiState, ChainStep, PromptMessage, PromptParams, Variable

# The largest call-log cap a tenant may set: a call log travels in an event
# batch. services.call_logs.MAX_CAP_BYTES (the config file's bound) is the same number.
CALL_LOG_MAX_BYTES = 262_144

Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Letters, digits, '_' or '-'; 1-64.")]
# A new tenant's id: "-" alone names no tenant (``schemas.control.NO_TENANT``).
TenantId = Annotated[
    str, Meta(pattern=r"^(?!-$)[A-Za-z0-9_-]{1,64}$", description="Letters, digits, '_' or '-'; 1-64; not '-'.")
]
Usd = Annotated[
    str, Meta(pattern=r"^\d{1,9}(\.\d{1,12})?$", description='Exact decimal USD, e.g. "25.00".', examples=["25.00"])
]
Count = Annotated[int, Meta(ge=1, le=10**12)]
Pattern = Annotated[str, Meta(min_length=1, max_length=128, description="A model name or fnmatch pattern.")]
Metadata = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=64)], Annotated[str, Meta(max_length=512)]],
    Meta(max_length=32),
]
Name = Annotated[str, Meta(max_length=128)]
Reason = Annotated[str, Meta(max_length=1000)]
CallLogBytes = Annotated[
    int, Meta(ge=0, le=CALL_LOG_MAX_BYTES, description="Each body cut at this many bytes; 0 keeps none.")
]
# A file cap: up to 1 TiB (a JetStream object store holds what its disk does).
FileBytes = Annotated[int, Meta(ge=0, le=2**40, description="The largest file, in bytes; 0: the gateway's default.")]
FilesTotal = Annotated[
    int, Meta(ge=0, le=2**50, description="All the tenant's files together, in bytes; 0: the gateway's default.")
]
FilesCount = Annotated[
    int, Meta(ge=0, le=10**9, description="How many files the tenant may keep; 0: the gateway's default.")
]
Label = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A label, e.g. production or staging.")]
Number = Annotated[int, Meta(ge=1, le=10**9)]
ToolPattern = Annotated[
    str,
    Meta(
        pattern=r"^[^\x00-\x1f\x7f]{1,200}$",
        description='An MCP tool as callers name it ("<server>__<tool>"), or a pattern: "demo-tools__*".',
    ),
]
ToolPatterns = Annotated[list[ToolPattern], Meta(max_length=256)]


# --- shared --------------------------------------------------------------------


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class LimitsIn(Strict):
    rpm: Count | None = None
    tpm: Count | None = None
    max_parallel: Count | None = None


class BudgetIn(Strict):
    usd: Usd
    period: Period = "monthly"


class BudgetOut(msgspec.Struct):
    usd: str
    period: Period


class CacheIn(Strict):
    """The tenant's opt-in to the response cache: requests may ask for up to
    ``max_age_s`` (``Cache-Control: max-age=N``); ``default_max_age_s`` caches
    them unasked."""

    max_age_s: Annotated[int, Meta(ge=1, le=86_400)]
    default_max_age_s: Annotated[int, Meta(ge=0, le=86_400)] = 0

    def __post_init__(self) -> None:
        if self.default_max_age_s > self.max_age_s:
            raise ValueError("default_max_age_s must not exceed max_age_s")


# --- tenants -------------------------------------------------------------------


class ModerationIn(Strict):
    """A moderation model run on the tenant's chat requests first: "block"
    refuses a flagged one (400 content_flagged), "flag" lets it through and
    records each flagged category as a detection."""

    model: Annotated[str, Meta(min_length=1, max_length=128, description="A model group of mode moderation.")]
    action: GuardrailAction = "block"
    apis: Annotated[list[GuardedApi], Meta(min_length=1, max_length=len(GUARDED_APIS))] = msgspec.field(
        default_factory=lambda: list(GUARDED_APIS)
    )

    def __post_init__(self) -> None:
        if len(set(self.apis)) != len(self.apis):
            raise ValueError("apis must name each API once")


class ModerationOut(msgspec.Struct):
    model: str
    action: GuardrailAction
    apis: list[GuardedApi]


class TenantCreate(Strict):
    id: TenantId
    limits: LimitsIn = msgspec.field(default_factory=LimitsIn)
    budget: BudgetIn | None = None
    metadata: Metadata = {}
    cache: CacheIn | None = None
    # Its durable jobs running at once per ingress process (0: the gateway's default).
    job_concurrency: Annotated[int, Meta(ge=0, le=10_000)] = 0
    # Its batch lines running at once across every ingress process (0: the gateway's default).
    batch_concurrency: Annotated[int, Meta(ge=0, le=10_000)] = 0
    # The largest file its keys may upload to the Files API, in bytes (0: the gateway's default).
    files_max_bytes: FileBytes = 0
    # All its files together (batch output and error files included): bytes, and how many (0: the gateway's).
    files_total_bytes: FilesTotal = 0
    files_max_count: FilesCount = 0
    # Opt in to call logs: bodies kept, each cut at this many bytes (0: none kept).
    call_log_max_bytes: CallLogBytes = 0
    # Detectors and what each does (mask, redact, block, flag), custom ones, injection checks.
    privacy: PrivacyRules | None = None
    # MCP tools its keys may list and call ("<server>__<tool>" patterns; none by default).
    mcp_tools: ToolPatterns = []
    # "any", "non_destructive" (read-only or destructiveHint false) or "read_only" (readOnlyHint).
    mcp_safety: McpSafety = "any"
    # A moderation guardrail on its chat requests (none by default).
    moderation: ModerationIn | None = None


class TenantUpdate(Strict):
    """Only the fields sent change; ``null`` removes a budget or the cache opt-in."""

    limits: LimitsIn | UnsetType = UNSET
    budget: BudgetIn | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET
    cache: CacheIn | UnsetType | None = UNSET
    job_concurrency: Annotated[int, Meta(ge=0, le=10_000)] | UnsetType = UNSET
    batch_concurrency: Annotated[int, Meta(ge=0, le=10_000)] | UnsetType = UNSET
    files_max_bytes: FileBytes | UnsetType = UNSET
    files_total_bytes: FilesTotal | UnsetType = UNSET
    files_max_count: FilesCount | UnsetType = UNSET
    call_log_max_bytes: CallLogBytes | UnsetType = UNSET
    # The whole set of rules, replacing the last (its version goes up by one); null removes them.
    privacy: PrivacyRules | UnsetType | None = UNSET
    mcp_tools: ToolPatterns | UnsetType = UNSET
    mcp_safety: McpSafety | UnsetType = UNSET
    # The whole setting, replacing the last; null removes it.
    moderation: ModerationIn | UnsetType | None = UNSET


class TenantOut(msgspec.Struct):
    id: str
    limits: LimitsIn
    budget: BudgetOut | None
    metadata: dict[str, str]
    cache: CacheIn | None
    created_at: dt.datetime | None
    owner: str
    job_concurrency: int = 0
    batch_concurrency: int = 0
    files_max_bytes: int = 0
    files_total_bytes: int = 0
    files_max_count: int = 0
    call_log_max_bytes: int = 0
    privacy: PrivacyRules | None = None
    mcp_tools: list[str] = []
    mcp_safety: McpSafety = "any"
    moderation: ModerationOut | None = None


# --- keys ----------------------------------------------------------------------


class KeyCreate(Strict):
    # Required from a gateway admin; a tenant admin's keys are its tenant's.
    tenant: Id | None = None
    name: Name = ""
    role: Role = "caller"
    models: Annotated[list[Pattern], Meta(min_length=1, max_length=64)] = msgspec.field(default_factory=lambda: ["*"])
    limits: LimitsIn = msgspec.field(default_factory=LimitsIn)
    budget: BudgetIn | None = None
    metadata: Metadata = {}
    expires_at: dt.datetime | None = None
    # May choose a deployment of a group itself (``x-sluice-deployment``).
    may_pin: bool = False
    # Narrows its tenant's MCP tools to these patterns; null: all of the tenant's.
    mcp_tools: ToolPatterns | None = None


class KeyUpdate(Strict):
    """Only the fields sent change; ``null`` removes a budget or an expiry."""

    name: Name | UnsetType = UNSET
    models: Annotated[list[Pattern], Meta(min_length=1, max_length=64)] | UnsetType = UNSET
    limits: LimitsIn | UnsetType = UNSET
    budget: BudgetIn | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET
    expires_at: dt.datetime | UnsetType | None = UNSET
    may_pin: bool | UnsetType = UNSET
    # null: all of its tenant's MCP tools again.
    mcp_tools: ToolPatterns | UnsetType | None = UNSET


class KeyRotate(Strict):
    # How long the secrets in use keep working beside the new one.
    grace_seconds: Annotated[int, Meta(ge=0, le=30 * 86_400)] = 0


class KeyOut(msgspec.Struct):
    id: str
    tenant: str
    name: str
    role: Role
    models: list[str]
    limits: LimitsIn
    budget: BudgetOut | None
    metadata: dict[str, str]
    disabled: bool
    may_pin: bool
    expires_at: dt.datetime | None
    created_at: dt.datetime | None
    # May lag a few seconds: policy writes it in batches.
    last_used_at: dt.datetime | None
    # When the previous secret stops working, while a rotation's grace lasts.
    previous_secret_expires_at: dt.datetime | None
    owner: str
    # Its MCP tool patterns within its tenant's; null: all of the tenant's.
    mcp_tools: list[str] | None


class KeyWithSecret(KeyOut):
    # Shown once, here; only its digest is stored.
    secret: str


# --- subscriptions and approval rules ------------------------------------------


class SubscriptionCreate(Strict):
    model: Pattern
    tenant: Id | None = None


class Decision(Strict):
    reason: Reason = ""


class SubscriptionOut(msgspec.Struct):
    id: str
    tenant: str
    model: str
    state: SubscriptionState
    reason: str
    requested_by: str
    decided_by: str
    created_at: dt.datetime | None
    decided_at: dt.datetime | None


class ApprovalRuleCreate(Strict):
    pattern: Pattern


class ApprovalRuleOut(msgspec.Struct):
    id: str
    pattern: str
    created_at: dt.datetime | None


# --- MCP servers ---------------------------------------------------------------

ServerName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,47}$",
        description="Letters, digits and '-' (no '_': callers see its tools as <server>__<tool>); 1-48.",
    ),
]
ToolKey = Annotated[str, Meta(min_length=1, max_length=128, description='An upstream tool name, or "*".')]
EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class ToolRuleIn(Strict):
    """What the gateway enforces on one tool: calls per minute and at once
    (across every replica), a price per call charged to budgets, and whether
    a failed call may be tried again."""

    rpm: Annotated[int, Meta(ge=0, le=10**9)] | None = None
    max_parallel: Annotated[int, Meta(ge=0, le=10**9)] | None = None
    price_pico_usd: Annotated[int, Meta(ge=0, le=10**15, description="1 USD = 10^12 pico-USD.")] = 0
    idempotent: bool = False


class McpServerIn(Strict):
    """A whole server, replacing any the admin API made under the same name.
    Over the API only Streamable HTTP servers are registered: a stdio server
    runs a command on the gateway's hosts, so it belongs in the config file."""

    transport: McpTransport = "http"
    urls: Annotated[list[Annotated[str, Meta(max_length=2048)]], Meta(min_length=1, max_length=16)] = []
    # The provider process's environment variable whose value is sent in
    # ``auth_header`` ("Bearer <value>" for Authorization); never its value.
    auth_env: EnvName | Literal[""] = ""
    auth_header: Annotated[str, Meta(min_length=1, max_length=64)] = "Authorization"
    timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    requires_approval: bool = False
    tools: Annotated[dict[ToolKey, ToolRuleIn], Meta(max_length=256)] = {}
    description: Annotated[str, Meta(max_length=1000)] = ""


class McpServerOut(msgspec.Struct):
    name: str
    transport: str
    urls: list[str]
    # A stdio server's program and arguments, and the names of the variables
    # it is given (their values are not shown).
    command: list[str]
    env_names: list[str]
    auth_env: str
    auth_header: str
    timeout_s: float
    requires_approval: bool
    tools: dict[str, ToolRuleIn]
    description: str
    created_at: dt.datetime | None
    owner: str


class CatalogToolOut(msgspec.Struct):
    # As callers see it ("<server>__<tool>"), and the upstream's own name.
    name: str
    upstream_name: str
    title: str
    description: str
    input_schema: Any
    annotations: ToolAnnotations | None


class McpCatalogOut(msgspec.Struct):
    """What the server offered at its last listing (by the provider stage)."""

    server: str
    tools: list[CatalogToolOut]
    prompts: list[CatalogPrompt]
    resources: list[CatalogResource]
    # Instances that answered the last health check; why the others did not.
    healthy: list[str]
    error: str
    refreshed_at: dt.datetime | None


# --- usage ---------------------------------------------------------------------


class SpendRow(msgspec.Struct):
    tenant: str
    key: str
    requests: int
    tokens: int
    cost_usd: str


class BudgetStanding(msgspec.Struct):
    """A budget's current period. ``committed_usd`` is what the counter holds:
    spent, plus what requests in flight reserved and replicas hold leased."""

    scope: Literal["key", "tenant"]
    id: str
    period: Period
    limit_usd: str
    committed_usd: str
    remaining_usd: str
    resets_at: dt.datetime | None


class UsageOut(msgspec.Struct):
    since: dt.datetime
    spend: list[SpendRow]
    budgets: list[BudgetStanding]


# --- errors and deletions ------------------------------------------------------


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    code: str
    param: str | None = None


class ErrorOut(msgspec.Struct):
    """OpenAI's error shape, as on ``/v1``."""

    error: ErrorBody


class Deleted(msgspec.Struct):
    id: str
    deleted: Literal[True] = True


# --- prompts -------------------------------------------------------------------


class PromptContent(Strict):
    """What a version says: messages sent to a model, or a chain of steps."""

    messages: Annotated[list[PromptMessage], Meta(max_length=64)] = []
    model: Annotated[str, Meta(max_length=256)] = ""
    steps: Annotated[list[ChainStep], Meta(max_length=8)] = []
    variables: Annotated[list[Variable], Meta(max_length=64)] = []
    params: PromptParams = msgspec.field(default_factory=PromptParams)
    output_schema: dict[str, Any] | None = None
    note: Annotated[str, Meta(max_length=1000)] = ""


class ApiIn(Strict):
    slug: Id
    state: ApiState = "draft"
    label: Label = "production"
    successor: Annotated[str, Meta(max_length=64)] = ""
    sunset_at_ms: Annotated[int, Meta(ge=0)] = 0
    requires_approval: bool = False


class PromptCreate(PromptContent):
    name: Id = ""
    api: ApiIn | None = None


class VersionCreate(PromptContent):
    # A label to point at the new version at once (e.g. "staging").
    label: Label | None = None


class LabelMove(Strict):
    version: Number


class DiffOut(msgspec.Struct):
    diff: str


# --- analytics -----------------------------------------------------------------


class QueryOut(msgspec.Struct):
    name: str
    columns: list[str]
    rows: list[list[Any]]


class NamedQueryInfo(msgspec.Struct):
    name: str
    description: str
    params: dict[str, str]
    per_tenant: bool
