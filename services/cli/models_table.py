"""``sluice models``: the configured models (or the whole catalog) with what
each costs and can do."""

from __future__ import annotations

from typing import Any

from services import catalog_view, pricing
from services.cli.text_table import render_table
from services.config import Config
from services.model_config import deployment

HEADERS = ["model", "provider", "catalog model", "context", "max out", "in $/M", "cached $/M", "out $/M", "caps"]
CATALOG_HEADERS = [h for h in HEADERS if h != "catalog model"]


def configured(config: Config) -> list[dict[str, Any]]:
    """One row per deployment; a group of several shows as "group/deployment"."""
    out = []
    for m in config.models:
        members = m.members()
        for d in members:
            dep = deployment(m.name, d)
            out.append(
                {
                    "model": m.name if len(members) == 1 else f"{m.name}/{dep.name}",
                    "provider": dep.provider,
                    "upstream_model": dep.upstream_model,
                    "base_url": dep.base_url,
                    **(catalog_view.describe(dep.catalog_model) or {}),
                }
            )
    return out


def catalog(provider: str | None = None) -> list[dict[str, Any]]:
    return [
        {"model": name, "provider": entry.provider, **(catalog_view.describe(name) or {})}
        for name, entry in sorted(pricing.load_catalog().items())
        if provider is None or entry.provider == provider
    ]


def render(records: list[dict[str, Any]], title: str, *, whole_catalog: bool = False) -> str:
    lines = []
    for r in records:
        price = r.get("pricing")
        catalog_model = [] if whole_catalog else [r.get("catalog_model") or "(not in catalog: unpriced)"]
        lines.append(
            [
                r["model"],
                r["provider"],
                *catalog_model,
                f"{r['context_window']:,}" if "context_window" in r else "-",
                f"{r['max_output_tokens']:,}" if "max_output_tokens" in r else "-",
                price["input"] if price else "-",
                price["cached_input"] if price else "-",
                price["output"] if price else "-",
                ",".join(r.get("capabilities", [])),
            ]
        )
    headers = CATALOG_HEADERS if whole_catalog else HEADERS
    align = "l" * (len(headers) - 6) + "rrrrr" + "l"
    return "\n".join([title, *render_table(headers, lines, align)])
