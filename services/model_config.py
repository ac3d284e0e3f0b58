"""The config's model groups (``[[models]]``): each one deployment written
inline or several, checked against the provider registry and the model
catalog, and as a whole (deployment names, aliases, splits, fallbacks)."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.control import ModelRoute, Strategy
from schemas.envelope import Deployment
from services import native_batch, pricing
from services.config_error import ConfigError
from services.providers.registry import PROVIDERS


class DeploymentConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One upstream of a model group."""

    # Unique across the config (health is kept per name). Default: the
    # group's name for a group of one, else "<group>-<n>".
    name: str = ""
    provider: str = ""
    upstream_model: str = ""
    # Default: the provider's public endpoint (services/providers/registry.py).
    base_url: str | None = None
    # Default: "<provider>/<upstream model>" or else the upstream model, if the catalog has it.
    catalog_model: str | None = None
    # Default: the provider's usual variable, e.g. ANTHROPIC_API_KEY; "" sends no key.
    api_key_env: str | None = None
    api_version: str = ""
    timeout_s: float = 60.0
    weight: float = 1.0
    priority: int = 0
    rpm: int | None = None
    tpm: int | None = None
    # Batches of this model run as one batch of the provider's own batch API
    # (``services.native_batch``: openai, azure, anthropic), at its batch price.
    native_batch: bool = False


class ModelConfig(DeploymentConfig, kw_only=True):
    """A model group: either one deployment written inline (``provider`` and
    ``upstream_model`` here) or several under ``deployments``."""

    deployments: list[DeploymentConfig] = []
    strategy: Strategy = "weighted"
    aliases: list[str] = []
    split: dict[str, float] = {}
    sticky: Literal["key", "user"] = "user"
    context_fallback: str = ""
    retries: int = 0
    requires_approval: bool = False
    owned_by: str = "sluice"

    def members(self) -> list[DeploymentConfig]:
        if self.deployments:
            if self.provider or self.upstream_model:
                raise ConfigError(f"model {self.name!r}: set provider/upstream_model or deployments, not both")
            return [
                d if d.name else msgspec.structs.replace(d, name=f"{self.name}-{i + 1}")
                for i, d in enumerate(self.deployments)
            ]
        return [msgspec.structs.replace(self, name=self.name, deployments=[])]


def model_groups(models: list[ModelConfig]) -> dict[str, ModelRoute]:
    """The config's models as group records, checked as a whole: deployment
    names unique (the same name twice must be the same upstream: they share
    health), aliases unambiguous, splits and fallbacks naming what exists."""
    groups: dict[str, ModelRoute] = {}
    seen: dict[str, Deployment] = {}
    for m in models:
        if m.name in groups:
            raise ConfigError(f"model {m.name!r} is defined twice")
        deployments = []
        for d in m.members():
            if not d.name.isprintable() or len(d.name) > 200:
                raise ConfigError(f"model {m.name!r}: deployment name {d.name!r}: at most 200 printable characters")
            dep = deployment(m.name, d)
            if seen.setdefault(dep.name, dep) != dep:
                raise ConfigError(f"deployment {dep.name!r} is defined twice, differently")
            deployments.append(dep)
        names = {d.name for d in deployments}
        for arm, share in m.split.items():
            if arm not in names:
                raise ConfigError(f"model {m.name!r}: split names {arm!r}, which is not one of its deployments")
            if share < 0:
                raise ConfigError(f"model {m.name!r}: split share of {arm!r} is negative")
        if m.split and sum(m.split.values()) <= 0:
            raise ConfigError(f"model {m.name!r}: a split needs a positive share")
        if m.retries < 0:
            raise ConfigError(f"model {m.name!r}: retries must be >= 0")
        groups[m.name] = ModelRoute(
            name=m.name,
            deployments=deployments,
            strategy=m.strategy,
            aliases=m.aliases,
            split=m.split,
            sticky=m.sticky,
            context_fallback=m.context_fallback,
            retries=m.retries,
            owned_by=m.owned_by,
            requires_approval=m.requires_approval,
        )
    aliases: dict[str, str] = {}
    for g in groups.values():
        for alias in g.aliases:
            if alias in groups or aliases.setdefault(alias, g.name) != g.name:
                raise ConfigError(f"alias {alias!r} of model {g.name!r} is already a model name or another alias")
        if g.context_fallback and g.context_fallback not in groups:
            raise ConfigError(f"model {g.name!r}: context_fallback {g.context_fallback!r} is not a model")
        modes = {_mode(d) for d in g.deployments} - {None}
        if len(modes) > 1:
            raise ConfigError(f"model {g.name!r} mixes chat and embeddings deployments")
    return groups


def _mode(dep: Deployment) -> str | None:
    entry = pricing.load_catalog().get(dep.catalog_model or "")
    return entry.mode if entry is not None else None


def deployment(group: str, m: DeploymentConfig) -> Deployment:
    """A deployment's config with the provider's defaults filled in, checked
    against the provider registry and the catalog."""
    where = f"model {group!r}" + (f" deployment {m.name!r}" if m.name != group else "")
    if not m.provider or not m.upstream_model:
        raise ConfigError(f"{where}: set provider and upstream_model")
    known = PROVIDERS.get(m.provider)
    if known is None:
        raise ConfigError(f"{where}: unknown provider {m.provider!r}; known: {', '.join(sorted(PROVIDERS))}")
    base_url = m.base_url or known.base_url
    if not base_url:
        raise ConfigError(f"{where}: provider {m.provider!r} needs a base_url")
    if m.weight < 0:
        raise ConfigError(f"{where}: weight must be >= 0")
    if m.native_batch and m.provider not in native_batch.ENDPOINTS:
        families = ", ".join(sorted(native_batch.ENDPOINTS))
        raise ConfigError(f"{where}: native_batch needs a provider with a batch API ({families}), not {m.provider!r}")
    catalog = pricing.load_catalog()
    catalog_model = m.catalog_model
    if catalog_model is None:
        # The host's own entry first: hosts price the same weights differently.
        catalog_model = next((c for c in (f"{m.provider}/{m.upstream_model}", m.upstream_model) if c in catalog), None)
    elif catalog_model not in catalog:
        raise ConfigError(f"{where}: catalog_model {catalog_model!r} is not in the catalog")
    return Deployment(
        name=m.name,
        provider=m.provider,
        base_url=base_url.rstrip("/"),
        upstream_model=m.upstream_model,
        api_key_env=(m.api_key_env if m.api_key_env is not None else known.api_key_env) or None,
        timeout_s=m.timeout_s,
        catalog_model=catalog_model,
        api_version=m.api_version,
        weight=m.weight,
        priority=m.priority,
        rpm=m.rpm,
        tpm=m.tpm,
        native_batch=m.native_batch,
    )
