"""Control-plane records kept in NATS KV buckets and watched by stages.

Every record says who owns it: ``config`` records follow the config file (a
re-seed updates and deletes them); ``api`` records were made through the admin
API and a re-seed never touches them.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from schemas.envelope import Deployment, GuardrailAction
from schemas.mcp import McpSafety

Owner = Literal["config", "api"]
Role = Literal["caller", "tenant_admin", "gateway_admin"]
Period = Literal["daily", "monthly", "total"]
SubscriptionState = Literal["pending", "approved", "rejected", "revoked"]
# How a model group orders its deployments for a request (services/strategies.py).
Strategy = Literal["weighted", "priority", "latency", "cost", "least_busy"]
# Tenant and key ids appear in NATS subjects (the limit counters), so no dots,
# wildcards or spaces.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Where a key of no tenant (a gateway admin's) is named in a KV key or a
# stored blob's name, which have no empty token. No tenant may be called so:
# it would own the admin's files, and the admin its.
NO_TENANT = "-"
# A tenant's id: ``ID_PATTERN``, but never ``NO_TENANT``.
TENANT_ID_PATTERN = re.compile(r"(?!-$)[A-Za-z0-9_-]{1,64}")


class Limits(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """Rate limits; ``None`` is no limit. A minute window starts at the record's
    creation time, so windows of different keys do not all reset at once."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None

    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_parallel is not None


class Budget(msgspec.Struct, forbid_unknown_fields=True):
    """A spending cap in pico-USD over a UTC period."""

    limit_pico_usd: int
    period: Period = "monthly"


class Secret(msgspec.Struct, omit_defaults=True):
    """One accepted secret of a key, as its sha256 digest. A rotated-out
    secret keeps working until ``expires_at_ms`` (its grace period)."""

    sha256: str
    expires_at_ms: int = 0


class ApiKey(msgspec.Struct, omit_defaults=True):
    """Stored under its public ``id``; the secret itself is never kept."""

    id: str
    tenant_id: str
    secrets: list[Secret] = []
    role: Role = "caller"
    # fnmatch patterns of model names this key may call.
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    limits: Limits = msgspec.field(default_factory=Limits)
    budget: Budget | None = None
    metadata: dict[str, str] = {}
    disabled: bool = False
    # 0: never expires.
    expires_at_ms: int = 0
    created_at_ms: int = 0
    owner: Owner = "config"
    name: str = ""
    # May choose the deployment itself (``x-sluice-deployment``), e.g. to test one.
    may_pin: bool = False
    # fnmatch patterns of MCP tools (as callers name them, "<server>__<tool>")
    # this key may call, within its tenant's; None: all of its tenant's.
    mcp_tools: list[str] | None = None
    # The portal app (schemas.people.App) the key belongs to: a developer's
    # keys are made in an app; "" for keys made by admins and config.
    app_id: str = ""


class CachePolicy(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A tenant's opt-in to the shared response cache. A request asks with
    ``Cache-Control: max-age=N`` (capped at ``max_age_s``); with
    ``default_max_age_s`` the tenant's requests are cached unasked too."""

    max_age_s: int
    default_max_age_s: int = 0


class RedactionRule(msgspec.Struct):
    name: str
    pattern: str


# What happens to a value a detector finds: replaced by a placeholder and
# restored in the answer, replaced for good, the request refused, or only
# recorded.
PrivacyAction = Literal["mask", "redact", "block", "flag"]


class CustomDetector(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A tenant's own detector: a regular expression, or exact keywords
    (whole words, any case)."""

    name: str
    pattern: str = ""
    keywords: list[str] = []
    action: PrivacyAction = "redact"


class InjectionCheck(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """Prompt-injection heuristics on what users and tools wrote: at or
    above ``threshold`` (0-1) the request is flagged, or refused."""

    action: Literal["flag", "block"] = "flag"
    threshold: float = 0.6


class PrivacyRules(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A tenant's detectors and what each does: built-in ones by name
    (email, phone, card, iban, ssn, ipv4, ipv6, secret), and its own."""

    detectors: dict[str, PrivacyAction] = {}
    custom: list[CustomDetector] = []
    # Checks of the answer, for values the caller never gave (a leaked key):
    # built-in detectors by name, each mask, redact or flag.
    output: dict[str, PrivacyAction] = {}
    injection: InjectionCheck | None = None
    # The country whose way of writing national numbers (no + or 00) the
    # phone detector reads, as an ISO 3166 code: "DE" reads 030 901820.
    phone_region: str = "US"
    # Rules change as a whole; each detection records the version it was made under.
    version: int = 1


# The client APIs a tenant's moderation guardrail may cover: the chat-shaped
# ones, whose requests carry messages a model answers.
GuardedApi = Literal["chat", "messages", "responses"]
GUARDED_APIS: tuple[GuardedApi, ...] = ("chat", "messages", "responses")


class TenantModeration(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A moderation model run on the tenant's chat requests before the chat
    model sees them, as one more guardrail: "block" refuses a flagged
    request (400 ``content_flagged``), "flag" lets it through and records
    each flagged category as a detection."""

    # A model group of mode "moderation" (e.g. "omni-moderation").
    model: str
    action: GuardrailAction = "block"
    # Which of its requests are checked, by client API.
    apis: list[GuardedApi] = msgspec.field(default_factory=lambda: list(GUARDED_APIS))


class Tenant(msgspec.Struct, omit_defaults=True):
    id: str
    # The first form of rules (a pattern, redacted): read as custom detectors.
    redaction_rules: list[RedactionRule] = []
    privacy: PrivacyRules | None = None
    limits: Limits = msgspec.field(default_factory=Limits)
    budget: Budget | None = None
    metadata: dict[str, str] = {}
    created_at_ms: int = 0
    owner: Owner = "config"
    # None: this tenant's answers are never cached.
    cache: CachePolicy | None = None
    # Its durable jobs that may run at once, across every ingress process
    # (0: the gateway's ``jobs_per_tenant``).
    job_concurrency: int = 0
    # Its batches' lines that may run at once, across every ingress process
    # (0: the gateway's ``batches_per_tenant``); apart from its jobs.
    batch_concurrency: int = 0
    # The largest file its keys may upload to the Files API, in bytes (0:
    # the gateway's ``files_max_bytes``).
    files_max_bytes: int = 0
    # All its files together, batch output and error files included: bytes
    # and number kept (0: the gateway's ``files_total_bytes``, ``files_max_count``).
    files_total_bytes: int = 0
    files_max_count: int = 0
    # Call logs, opt-in: keep each call's request and answer bodies (after
    # redaction), each cut at this many bytes; 0 keeps none.
    call_log_max_bytes: int = 0
    # fnmatch patterns of the MCP tools ("<server>__<tool>") its keys may
    # list and call; none by default, so a tool a server adds later is not
    # offered until a pattern names it.
    mcp_tools: list[str] = []
    # Which of those by their annotations (``schemas.mcp.McpSafety``).
    mcp_safety: McpSafety = "any"
    # None: its chat requests are not moderated (``TenantModeration``).
    moderation: TenantModeration | None = None


class Subscription(msgspec.Struct, omit_defaults=True):
    """A tenant's request to call models that need approval."""

    id: str
    tenant_id: str
    # A model name or fnmatch pattern.
    model: str
    state: SubscriptionState = "pending"
    # The decider's reason (shown to the requester).
    reason: str = ""
    # Why the requester asks for access (the portal's subscribe form).
    request_reason: str = ""
    requested_by: str = ""
    decided_by: str = ""
    created_at_ms: int = 0
    decided_at_ms: int = 0
    owner: Owner = "api"


class ModelRoute(msgspec.Struct, omit_defaults=True):
    """A model group: a public name (and aliases) served by one or more
    deployments, ordered per request by ``strategy``."""

    name: str
    deployments: list[Deployment]
    strategy: Strategy = "weighted"
    # Further public names for this group, e.g. "fast" or "gpt-4o-latest".
    aliases: list[str] = []
    # A/B split: deployment name -> percent of callers, sticky per caller key
    # or per the request's ``user`` (a hash, not a draw). The arm's deployment
    # goes first; the others stay behind it as fallbacks.
    split: dict[str, float] = {}
    sticky: Literal["key", "user"] = "user"
    # A context-length error moves the request to this group's deployments.
    context_fallback: str = ""
    # Rounds over the candidates again (with backoff) after each failed once;
    # 0 by default: the SDKs retry on their own, and retries multiply.
    retries: int = 0
    owned_by: str = "sluice"
    # Calls need an approved subscription of the caller's tenant.
    requires_approval: bool = False
    owner: Owner = "config"


class ApprovalRule(msgspec.Struct, omit_defaults=True):
    """Models matching ``pattern`` need an approved subscription."""

    pattern: str
    created_at_ms: int = 0
    owner: Owner = "api"


kv_encode = msgspec.msgpack.encode
decode_key = msgspec.msgpack.Decoder(ApiKey).decode
decode_tenant = msgspec.msgpack.Decoder(Tenant).decode
decode_route = msgspec.msgpack.Decoder(ModelRoute).decode
decode_subscription = msgspec.msgpack.Decoder(Subscription).decode
decode_approval_rule = msgspec.msgpack.Decoder(ApprovalRule).decode
