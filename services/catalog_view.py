"""The catalog as people read it: prices in USD per million tokens, for
``GET /v1/models`` and ``sluice models``."""

from __future__ import annotations

from typing import Any

from services import pricing


def describe(catalog_model: str | None) -> dict[str, Any] | None:
    entry = pricing.load_catalog().get(catalog_model or "")
    if entry is None:
        return None
    price = pricing.price_of(entry)
    return {
        "catalog_model": catalog_model,
        "mode": entry.mode,
        "context_window": entry.context_window,
        "max_output_tokens": entry.max_output_tokens,
        "capabilities": list(entry.caps),
        "pricing": {
            "currency": "USD",
            "unit": "1M tokens",
            "input": pricing.usd_per_mtok(price.input),
            "cached_input": pricing.usd_per_mtok(price.cached_input),
            "cache_write": pricing.usd_per_mtok(price.cache_write),
            "output": pricing.usd_per_mtok(price.output),
        },
        "tokenizer": entry.tokenizer,
        "price_source": entry.source,
        "price_as_of": entry.as_of,
        **_unit_pricing(entry),
    }


def _unit_pricing(entry: pricing.CatalogModel) -> dict[str, Any]:
    """A model priced per unit (images, audio, characters, searches): those
    prices too, as exact decimal strings of USD; nothing for the others."""
    per: dict[str, Any] = {}
    if entry.usd_per_image:
        per["image"] = {variant: _usd(usd) for variant, usd in entry.usd_per_image.items()}
    for name, usd in (("minute", entry.usd_per_minute), ("1M characters", entry.usd_per_mchar),
                      ("1K searches", entry.usd_per_ksearch)):  # fmt: skip
        if usd is not None:
            per[name] = _usd(usd)
    return {"unit_pricing": {"currency": "USD", **per}} if per else {}


def _usd(usd: str) -> str:
    return format(pricing.pico_to_usd(pricing.usd_to_pico(usd)).normalize(), "f")
