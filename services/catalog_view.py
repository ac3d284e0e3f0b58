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
    }
