"""The gateway's config file (TOML), and the control-plane records it seeds."""

from __future__ import annotations

import os
import re
from pathlib import Path

import msgspec

from schemas.control import ID_PATTERN, ApiKey, Budget, Limits, ModelRoute, Period, RedactionRule, Role, Secret, Tenant
from schemas.envelope import Deployment
from services import pricing
from services.keys import hash_key
from services.providers.registry import PROVIDERS


class GatewaySettings(msgspec.Struct, forbid_unknown_fields=True):
    # The ingress answers 504 when no reply arrived by then.
    request_timeout_s: float = 60.0
    # Longest silence allowed between two streamed replies.
    stream_idle_timeout_s: float = 60.0
    max_body_bytes: int = 4 * 1024 * 1024
    # The whole request body must arrive within this: a client sending a byte
    # every few seconds must not hold a connection and its memory for ever.
    body_timeout_s: float = 30.0
    # Token limits and budgets admit a request that sets no max_tokens as if
    # it asked for this many (capped by the model's own output limit).
    default_max_output_tokens: int = 4096


class BudgetConfig(msgspec.Struct, forbid_unknown_fields=True):
    # Exact decimal dollars, e.g. "25.00".
    usd: str
    period: Period = "monthly"


class TenantConfig(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    redaction_rules: list[RedactionRule] = []
    limits: Limits = msgspec.field(default_factory=Limits)
    budget: BudgetConfig | None = None


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


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    provider: str
    upstream_model: str
    # Default: the provider's public endpoint (services/providers/registry.py).
    base_url: str | None = None
    requires_approval: bool = False
    # Default: "<provider>/<upstream model>" or else the upstream model, if the catalog has it.
    catalog_model: str | None = None
    # Default: the provider's usual variable, e.g. ANTHROPIC_API_KEY; "" sends no key.
    api_key_env: str | None = None
    api_version: str = ""
    timeout_s: float = 60.0
    owned_by: str = "sluice"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    tenants: list[TenantConfig] = []
    keys: list[KeyConfig] = []
    models: list[ModelConfig] = []


class ConfigError(Exception):
    pass


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
        return msgspec.toml.decode(expand_env(Path(path).read_text()), type=Config)
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def settings_from_env() -> GatewaySettings:
    """The gateway settings of the config file named by SLUICE_CONFIG, if any."""
    path = os.environ.get("SLUICE_CONFIG")
    return load(path).gateway if path else GatewaySettings()


class ControlRecords(msgspec.Struct):
    """What the config puts in the KV buckets, keyed as stored (keys by id)."""

    keys: dict[str, ApiKey]
    tenants: dict[str, Tenant]
    routes: dict[str, ModelRoute]


def usd_to_pico(usd: str, what: str) -> int:
    try:
        return pricing.usd_to_pico(usd)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _budget(b: BudgetConfig | None, what: str) -> Budget | None:
    return None if b is None else Budget(limit_pico_usd=usd_to_pico(b.usd, what), period=b.period)


def _check_id(kind: str, value: str) -> None:
    if not ID_PATTERN.fullmatch(value):
        raise ConfigError(f"{kind} id {value!r}: use 1-64 letters, digits, '_' or '-'")


def control_records(config: Config, extra_keys: dict[str, ApiKey] | None = None) -> ControlRecords:
    """Config -> KV records. ``extra_keys`` maps plain keys (e.g. the demo key) to records."""
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
        )
    for plain, record in (extra_keys or {}).items():
        keys[record.id] = msgspec.structs.replace(record, secrets=[Secret(sha256=hash_key(plain))])
    tenants = {}
    for t in config.tenants:
        _check_id("tenant", t.id)
        tenants[t.id] = Tenant(
            id=t.id, redaction_rules=t.redaction_rules, limits=t.limits, budget=_budget(t.budget, f"tenant {t.id!r}")
        )
    for record in keys.values():
        if record.role == "gateway_admin" and not record.tenant_id:
            continue  # a gateway admin belongs to no tenant
        if record.tenant_id not in tenants:
            raise ConfigError(f"key {record.id!r} names unknown tenant {record.tenant_id!r}")
    routes = {
        m.name: ModelRoute(
            name=m.name, owned_by=m.owned_by, deployment=deployment(m), requires_approval=m.requires_approval
        )
        for m in config.models
    }
    return ControlRecords(keys=keys, tenants=tenants, routes=routes)


def unset_key_variables(config: Config) -> list[str]:
    """One line per model whose provider key variable is not set: the
    gateway still serves it, and its provider will refuse every call."""
    out = []
    for m in config.models:
        dep = deployment(m)
        if dep.api_key_env and not os.environ.get(dep.api_key_env):
            out.append(
                f"model {m.name!r} ({m.provider}): ${dep.api_key_env} is not set, so calls to it carry no key "
                f'and its provider will refuse them; set it, or api_key_env = "" for a server that needs none'
            )
    return out


def deployment(m: ModelConfig) -> Deployment:
    """A model's config with the provider's defaults filled in, checked
    against the provider registry and the catalog."""
    known = PROVIDERS.get(m.provider)
    if known is None:
        raise ConfigError(f"model {m.name!r}: unknown provider {m.provider!r}; known: {', '.join(sorted(PROVIDERS))}")
    base_url = m.base_url or known.base_url
    if not base_url:
        raise ConfigError(f"model {m.name!r}: provider {m.provider!r} needs a base_url")
    catalog = pricing.load_catalog()
    catalog_model = m.catalog_model
    if catalog_model is None:
        # The host's own entry first: hosts price the same weights differently.
        catalog_model = next((c for c in (f"{m.provider}/{m.upstream_model}", m.upstream_model) if c in catalog), None)
    elif catalog_model not in catalog:
        raise ConfigError(f"model {m.name!r}: catalog_model {catalog_model!r} is not in the catalog")
    return Deployment(
        name=m.name,
        provider=m.provider,
        base_url=base_url.rstrip("/"),
        upstream_model=m.upstream_model,
        api_key_env=(m.api_key_env if m.api_key_env is not None else known.api_key_env) or None,
        timeout_s=m.timeout_s,
        catalog_model=catalog_model,
        api_version=m.api_version,
    )
