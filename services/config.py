"""The gateway's config file (TOML), and the control-plane records it seeds."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec

from schemas.alerts import AlertRule, Webhook
from schemas.control import (
    ID_PATTERN,
    NO_TENANT,
    TENANT_ID_PATTERN,
    ApiKey,
    Budget,
    CachePolicy,
    Limits,
    ModelRoute,
    Period,
    PrivacyRules,
    RedactionRule,
    Role,
    Secret,
    Tenant,
    TenantModeration,
)
from schemas.errors import InvalidRequest, ModelNotFound
from schemas.mcp import McpSafety, McpServer
from schemas.prompts import ChainStep, PromptApi, PromptMessage, PromptParams, PromptVersion, Variable
from schemas.rest import RestService
from services import call_logs, mcp_config, pricing, rest_config
from services.breaker import BreakerConfig
from services.config_error import ConfigError
from services.keys import hash_key
from services.mcp_config import McpServerConfig
from services.model_config import ModelConfig, deployment, model_groups
from services.people import settings as portal_settings
from services.rest_config import RestServiceConfig


class GatewaySettings(msgspec.Struct, forbid_unknown_fields=True):
    # The ingress answers 504 when no reply arrived by then.
    request_timeout_s: float = 60.0
    # Longest silence allowed between two streamed replies.
    stream_idle_timeout_s: float = 60.0
    max_body_bytes: int = 4 * 1024 * 1024
    # The whole request body must arrive within this: a client sending a byte
    # every few seconds must not hold a connection and its memory for ever.
    body_timeout_s: float = 30.0
    # The files of one multipart request (an audio upload, an image edit's
    # images) in all: kept in the object store as they stream in, never in
    # memory, so this bounds storage, not memory. OpenAI's audio limit.
    max_upload_bytes: int = 25 * 1024 * 1024
    # Token limits and budgets admit a request that sets no max_tokens as if
    # it asked for this many (capped by the model's own output limit).
    default_max_output_tokens: int = 4096
    # When a deployment's circuit breaker opens, half-opens and closes.
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    # The "latency" strategy's memory: an average with no sample this recent
    # is forgotten and its deployment measured again.
    latency_window_s: float = 60.0
    # HTTP model and prompt-API requests one ingress process holds at once;
    # past this it answers 503 gateway_busy with Retry-After at once rather
    # than queue without bound (memory, and answers too late to matter).
    max_in_flight: int = 4096
    # One WebSocket connection (/v1/ws): requests it may have in flight, and
    # the bytes that may wait for a slow reader before its oldest request is ended.
    ws_max_in_flight: int = 256
    ws_max_waiting_bytes: int = 4 * 1024 * 1024
    # Durable jobs: how many of one tenant's run at once in each ingress
    # process, and how many jobs one process holds (running or waiting).
    jobs_per_tenant: int = 8
    jobs_held: int = 256
    # A tenant's batch lines running at once across every ingress process
    # (its ``batch_concurrency`` overrides it), apart from its jobs.
    batches_per_tenant: int = 16
    # A tenant's batches not yet ended (validating, in progress, finishing):
    # past this a create is refused 429 too_many_open_batches.
    max_open_batches: int = 100
    # How often a batch run as a provider's own batch (``native_batch``) asks
    # the upstream how far it got.
    native_batch_poll_s: float = 30.0
    # How long ClickHouse keeps raw rows (events, requests, attempts, ...) and
    # the rollups made from them, in days; 0 keeps them for ever.
    analytics_raw_ttl_days: int = 90
    analytics_rollup_ttl_days: int = 800
    # How long call logs (the bodies of opted-in tenants' calls) are kept; 0: for ever.
    call_log_ttl_days: int = 30
    # How long the redaction stage may take to pass a request on before it
    # fails closed (503 redaction_unavailable; nothing reaches the upstream).
    redaction_budget_s: float = 2.0
    # How often the analytics sink evaluates the alert rules ([[alerts]]).
    alert_interval_s: float = 15.0
    # On SIGTERM a process stops taking work and lets what it holds finish for
    # at most this long (a stream to its end, a row to the stream), then ends
    # the rest; a supervisor waits this plus a little before it kills.
    drain_s: float = 10.0
    # How long the Responses API keeps an answer for ``previous_response_id``
    # and GET /v1/responses/{id} (OpenAI: 30 days); set when its bucket is made.
    responses_ttl_s: float = 30 * 86400.0
    # An MCP session no request used for this long is forgotten; set when its bucket is made.
    mcp_session_ttl_s: float = 24 * 3600.0
    # How long the media store (OBJ_MEDIA) keeps an upload (an audio file, an
    # image to edit) and an image made, for its URL: its max_age, set when the
    # bootstrap makes it and changed at the next start when this changes.
    media_ttl_s: float = 3600.0
    # How long the URL of an image made (``response_format: url``) serves it,
    # from when it was made (OpenAI's URLs: 60 minutes); the media store keeps
    # it no longer than media_ttl_s, whatever this says.
    image_url_ttl_s: float = 3600.0
    # The Files API: the largest file a tenant may upload unless the tenant
    # says otherwise (OpenAI's limit), and how long a batch's input and
    # output files are kept unless the upload says (``expires_after``);
    # 0 keeps them until deleted. Other purposes are kept until deleted.
    files_max_bytes: int = 512 * 1024 * 1024
    # All of a tenant's files together, batch output and error files
    # included, unless the tenant says otherwise: bytes and files kept
    # (0: no total). OpenAI's own is per organisation (100 GB, later 2.5 TB
    # a project); a gateway's disk is smaller.
    files_total_bytes: int = 10 * 1024**3
    files_max_count: int = 10_000
    files_retention_s: float = 30 * 86400.0
    # A file's upload or download that moves no byte for this long is
    # ended (a whole-body limit would refuse large files on slow links).
    files_idle_timeout_s: float = 60.0


class BudgetConfig(msgspec.Struct, forbid_unknown_fields=True):
    # Exact decimal dollars, e.g. "25.00".
    usd: str
    period: Period = "monthly"


class TenantConfig(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    redaction_rules: list[RedactionRule] = []
    limits: Limits = msgspec.field(default_factory=Limits)
    budget: BudgetConfig | None = None
    # Opt in to the shared response cache, e.g. { max_age_s = 3600 }.
    cache: CachePolicy | None = None
    # Its durable jobs running at once, across every ingress process (0: gateway.jobs_per_tenant).
    job_concurrency: int = 0
    # Its batch lines running at once, across every ingress process (0: gateway.batches_per_tenant).
    batch_concurrency: int = 0
    # The largest file its keys may upload (0: gateway.files_max_bytes).
    files_max_bytes: int = 0
    # All its files together, bytes and number (0: gateway.files_total_bytes, gateway.files_max_count).
    files_total_bytes: int = 0
    files_max_count: int = 0
    # Opt in to call logs: each call's bodies (after redaction), each cut at this many bytes.
    call_log_max_bytes: int = 0
    # Detectors and their actions, e.g. { detectors = { email = "mask", card = "block" } }.
    privacy: PrivacyRules | None = None
    # MCP tools its keys may list and call: fnmatch patterns of "<server>__<tool>" (none by default).
    mcp_tools: list[str] = []
    # "any", "non_destructive" or "read_only": by the tools' annotations.
    mcp_safety: McpSafety = "any"
    # A moderation model run on its chat requests first, e.g.
    # { model = "omni-moderation", action = "block" } ("flag" lets flagged ones through, recorded).
    moderation: TenantModeration | None = None


class KeyConfig(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    tenant: str
    # Either the key's sha256 digest, or the name of an env var holding the key.
    sha256: str | None = None
    key_env: str | None = None
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    role: Role = "caller"
    limits: Limits = msgspec.field(default_factory=Limits)
    budget: BudgetConfig | None = None
    metadata: dict[str, str] = {}
    may_pin: bool = False
    # Narrows its tenant's mcp_tools; unset: all of them.
    mcp_tools: list[str] | None = None


class PromptConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A prompt the config file owns: when its content changes, the next seed
    makes a new version and points "production" at it."""

    name: str
    # The model group (or alias) that answers it; a chain has steps instead.
    model: str = ""
    messages: list[PromptMessage] = []
    steps: list[ChainStep] = []
    variables: list[Variable] = []
    params: PromptParams = msgspec.field(default_factory=PromptParams)
    output_schema: dict[str, Any] | None = None
    # Published as POST /apis/<slug>, e.g. { slug = "summarize", state = "published" }.
    api: PromptApi | None = None


class Config(msgspec.Struct, forbid_unknown_fields=True):
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    tenants: list[TenantConfig] = []
    keys: list[KeyConfig] = []
    models: list[ModelConfig] = []
    prompts: list[PromptConfig] = []
    alerts: list[AlertRule] = []
    webhooks: list[Webhook] = []
    mcp_servers: list[McpServerConfig] = []
    services: list[RestServiceConfig] = []
    # The developer portal: links, sessions, the login limiter, OIDC, SMTP.
    portal: portal_settings.PortalConfig = msgspec.field(default_factory=portal_settings.PortalConfig)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """``${NAME}`` and ``${NAME:-default}`` from the environment; unset without default is an error."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1), m.group(2))
        if value is None:
            raise ConfigError(f"${{{m.group(1)}}} is not set")
        return value

    return _VAR.sub(sub, text)


def load(path: str | Path) -> Config:
    try:
        config = msgspec.toml.decode(expand_env(Path(path).read_text()), type=Config)
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    g = config.gateway
    raw, rollup = g.analytics_raw_ttl_days, g.analytics_rollup_ttl_days
    if raw < 0 or rollup < 0 or (rollup and not 0 < raw <= rollup):
        raise ConfigError(
            f"{path}: analytics_raw_ttl_days ({raw}) must be kept no longer than analytics_rollup_ttl_days "
            f"({rollup}): rollups are made from raw rows (0 keeps them for ever)"
        )
    if g.call_log_ttl_days < 0:
        raise ConfigError(f"{path}: call_log_ttl_days must be 0 (for ever) or more")
    if not g.mcp_session_ttl_s > 0:
        raise ConfigError(f"{path}: mcp_session_ttl_s must be more than 0")
    if not g.media_ttl_s >= 60:
        raise ConfigError(f"{path}: media_ttl_s must be at least 60 (an upload must outlive its request)")
    if not g.image_url_ttl_s > 0:
        raise ConfigError(f"{path}: image_url_ttl_s must be more than 0")
    check_alerts(config, str(path))
    if problem := portal_settings.problem(config.portal):
        raise ConfigError(f"{path}: [portal] {problem}")
    try:
        rest_config.read_openapi_files(config.services, Path(path).parent)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_alerts(config: Config, path: str) -> None:
    hooks = {h.name for h in config.webhooks}
    if len(hooks) != len(config.webhooks):
        raise ConfigError(f"{path}: two [[webhooks]] share a name")
    for h in config.webhooks:
        if not _ID.match(h.name) or not h.url.startswith(("http://", "https://")) or not 0 < h.timeout_s <= 60:
            raise ConfigError(
                f"{path}: webhook {h.name!r}: a name of letters, digits, _ or -, an http(s) url, "
                "and timeout_s between 0 and 60"
            )
    names = set()
    for r in config.alerts:
        where = f"{path}: alert {r.name!r}"
        if not _ID.match(r.name) or r.name in names:
            raise ConfigError(f"{where}: names are unique, of letters, digits, _ or -")
        names.add(r.name)
        if unknown := [w for w in r.webhooks if w not in hooks]:
            raise ConfigError(f"{where}: no [[webhooks]] named {', '.join(unknown)}")
        if not 1 <= r.window_minutes <= 1440 or not 1 <= r.trailing_hours <= 24 * 30 or r.min_requests < 0:
            raise ConfigError(f"{where}: window_minutes 1-1440, trailing_hours 1-720, min_requests 0 or more")
        share = r.kind in ("error_rate", "tool_error_rate", "rest_error_rate", "budget")
        if r.threshold < 0 or (share and r.threshold > 1):
            raise ConfigError(f"{where}: threshold must be 0 or more" + (" and at most 1 (a share)" if share else ""))


def config_from_env() -> Config:
    """The config file named by SLUICE_CONFIG, if any."""
    path = os.environ.get("SLUICE_CONFIG")
    return load(path) if path else Config()


def settings_from_env() -> GatewaySettings:
    """The gateway settings of the config file named by SLUICE_CONFIG, if any."""
    return config_from_env().gateway


class ControlRecords(msgspec.Struct):
    """What the config puts in the KV buckets, keyed as stored (keys by id)."""

    keys: dict[str, ApiKey]
    tenants: dict[str, Tenant]
    routes: dict[str, ModelRoute]
    # name -> (the content of its next version, its API)
    prompts: dict[str, tuple[PromptVersion, PromptApi | None]] = {}
    # The gateway's defaults, read off an instance: on a Struct class the
    # field's name gives its descriptor, not its default.
    responses_ttl_s: float = GatewaySettings().responses_ttl_s
    mcp_servers: dict[str, McpServer] = {}
    mcp_session_ttl_s: float = GatewaySettings().mcp_session_ttl_s
    media_ttl_s: float = GatewaySettings().media_ttl_s
    # REST services by KV key (``<slug>.v<N>``).
    services: dict[str, RestService] = {}


def usd_to_pico(usd: str, what: str) -> int:
    try:
        return pricing.usd_to_pico(usd)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _budget(b: BudgetConfig | None, what: str) -> Budget | None:
    return None if b is None else Budget(limit_pico_usd=usd_to_pico(b.usd, what), period=b.period)


def _check_id(kind: str, value: str) -> None:
    if not (TENANT_ID_PATTERN if kind == "tenant" else ID_PATTERN).fullmatch(value):
        refused = f" (not {NO_TENANT!r} alone: it names no tenant)" if kind == "tenant" else ""
        raise ConfigError(f"{kind} id {value!r}: use 1-64 letters, digits, '_' or '-'{refused}")


def control_records(config: Config, extra_keys: dict[str, ApiKey] | None = None) -> ControlRecords:
    """Config -> KV records. ``extra_keys`` maps plain keys (e.g. the demo key) to records."""
    # The checks' modules (detectors, RE2, phone metadata) are imported by
    # whoever seeds the records, not by every process that reads its settings.
    from services import privacy
    from services.detectors.custom import check_pattern

    keys: dict[str, ApiKey] = {}
    for k in config.keys:
        _check_id("key", k.id)
        if k.sha256:
            digest = k.sha256
        elif k.key_env and os.environ.get(k.key_env):
            digest = hash_key(os.environ[k.key_env])
        else:
            raise ConfigError(f"key {k.id!r}: set sha256, or key_env to a variable that is set")
        keys[k.id] = ApiKey(
            id=k.id,
            tenant_id=k.tenant,
            secrets=[Secret(sha256=digest)],
            role=k.role,
            models=k.models,
            limits=k.limits,
            budget=_budget(k.budget, f"key {k.id!r} budget"),
            metadata=k.metadata,
            may_pin=k.may_pin,
            mcp_tools=k.mcp_tools,
        )
        if k.mcp_tools is not None and (problem := mcp_config.patterns_problem(k.mcp_tools)):
            raise ConfigError(f"key {k.id!r}: {problem}")
    for plain, record in (extra_keys or {}).items():
        keys[record.id] = msgspec.structs.replace(record, secrets=[Secret(sha256=hash_key(plain))])
    tenants = {}
    for t in config.tenants:
        _check_id("tenant", t.id)
        if t.privacy is not None:
            problem = privacy.problem(t.privacy)
            if problem:
                raise ConfigError(f"tenant {t.id!r}: privacy: {problem}")
        if not 0 <= t.call_log_max_bytes <= call_logs.MAX_CAP_BYTES:
            raise ConfigError(f"tenant {t.id!r}: call_log_max_bytes must be between 0 and {call_logs.MAX_CAP_BYTES}")
        for field in ("files_max_bytes", "files_total_bytes", "files_max_count"):
            if getattr(t, field) < 0:
                raise ConfigError(f"tenant {t.id!r}: {field} must be 0 (the gateway's) or more")
        if t.cache is not None and not 0 <= t.cache.default_max_age_s <= t.cache.max_age_s:
            raise ConfigError(f"tenant {t.id!r}: cache.default_max_age_s must be between 0 and max_age_s")
        tenants[t.id] = Tenant(
            id=t.id,
            redaction_rules=t.redaction_rules,
            limits=t.limits,
            budget=_budget(t.budget, f"tenant {t.id!r}"),
            cache=t.cache,
            job_concurrency=t.job_concurrency,
            batch_concurrency=t.batch_concurrency,
            files_max_bytes=t.files_max_bytes,
            files_total_bytes=t.files_total_bytes,
            files_max_count=t.files_max_count,
            call_log_max_bytes=t.call_log_max_bytes,
            privacy=t.privacy,
            mcp_tools=t.mcp_tools,
            mcp_safety=t.mcp_safety,
            moderation=t.moderation,
        )
        if problem := mcp_config.patterns_problem(t.mcp_tools):
            raise ConfigError(f"tenant {t.id!r}: {problem}")
        # First-form rules run as custom detectors, on RE2 (privacy.problem checked the others).
        for c in t.redaction_rules:
            try:
                check_pattern(c.name, c.pattern)
            except InvalidRequest as exc:
                raise ConfigError(f"tenant {t.id!r}: {exc.message}") from None
    for record in keys.values():
        if record.role == "gateway_admin" and not record.tenant_id:
            continue  # a gateway admin belongs to no tenant
        if record.tenant_id not in tenants:
            raise ConfigError(f"key {record.id!r} names unknown tenant {record.tenant_id!r}")
    routes = model_groups(config.models)
    for tenant in tenants.values():
        if tenant.moderation is not None and (problem := moderation_problem(tenant.moderation, routes)):
            raise ConfigError(f"tenant {tenant.id!r}: {problem}")
    prompts = prompt_records(config.prompts, routes)
    try:
        servers = mcp_config.server_records(config.mcp_servers)
        services = rest_config.service_records(config.services)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    g = config.gateway
    return ControlRecords(
        keys=keys,
        tenants=tenants,
        routes=routes,
        prompts=prompts,
        responses_ttl_s=g.responses_ttl_s,
        mcp_servers=servers,
        mcp_session_ttl_s=g.mcp_session_ttl_s,
        media_ttl_s=g.media_ttl_s,
        services=services,
    )


def moderation_problem(setting: TenantModeration, routes: dict[str, ModelRoute]) -> str | None:
    """Why a tenant's moderation guardrail cannot run: its shape, or a model
    that no group of mode "moderation" serves (every request it covers would
    be refused, or go unchecked)."""
    from services import moderation_guardrail, routing  # see ``control_records``

    if problem := moderation_guardrail.problem(setting):
        return problem
    try:
        routing.resolve(routing.routes_by_name(routes), setting.model, "moderations")
    except (ModelNotFound, InvalidRequest):
        return f"moderation.model {setting.model!r} is not a configured model of mode moderation"
    return None


def prompt_records(
    configured: list[PromptConfig], routes: dict[str, ModelRoute]
) -> dict[str, tuple[PromptVersion, PromptApi | None]]:
    from services import prompts  # see ``control_records``

    names = set(routes) | {alias for r in routes.values() for alias in r.aliases}
    out: dict[str, tuple[PromptVersion, PromptApi | None]] = {}
    slugs: dict[str, str] = {}
    for p in configured:
        if not ID_PATTERN.fullmatch(p.name):
            raise ConfigError(f"prompt {p.name!r}: use 1-64 letters, digits, '_' or '-'")
        if p.name in out:
            raise ConfigError(f"prompt {p.name!r} is defined twice")
        if p.model and p.model not in names:
            raise ConfigError(f"prompt {p.name!r}: model {p.model!r} is not a configured model")
        version = PromptVersion(
            prompt=p.name,
            version=0,
            messages=p.messages,
            model=p.model,
            steps=p.steps,
            variables=p.variables,
            params=p.params,
            output_schema=p.output_schema,
        )
        try:
            prompts.check(version)
        except InvalidRequest as exc:
            raise ConfigError(f"prompt {p.name!r}: {exc.message}") from None
        if p.api is not None and (
            not ID_PATTERN.fullmatch(p.api.slug) or slugs.setdefault(p.api.slug, p.name) != p.name
        ):
            raise ConfigError(f"prompt {p.name!r}: API slug {p.api.slug!r} is invalid or already taken")
        out[p.name] = (version, p.api)
    for name, (version, _) in out.items():
        for step in version.steps:
            if step.prompt not in out or out[step.prompt][0].steps:
                raise ConfigError(f"prompt {name!r}: step {step.prompt!r} is not a configured prompt with messages")
    return out


def unset_key_variables(config: Config) -> list[str]:
    """One line per deployment whose provider key variable is not set: the
    gateway still serves it, and its provider will refuse every call."""
    out = []
    for m in config.models:
        for d in m.members():
            dep = deployment(m.name, d)
            if dep.api_key_env and not os.environ.get(dep.api_key_env):
                out.append(
                    f"model {m.name!r} deployment {dep.name!r} ({dep.provider}): ${dep.api_key_env} is not set, "
                    f"so calls to it carry no key and its provider will refuse them; set it, or "
                    f'api_key_env = "" for a server that needs none'
                )
    return out
