"""The model catalog and exact cost arithmetic.

Catalog prices are decimal USD per million tokens. One micro-USD per million
tokens is one pico-USD per token, so every price becomes an integer number of
pico-USD per token and a request's cost is an exact integer: no floats, no
rounding, and sums in ClickHouse stay exact.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path

import msgspec

from schemas.chat import Usage

PICO_PER_USD = 10**12
DEFAULT_CATALOG = Path(__file__).parent / "catalog" / "models.toml"


class CatalogModel(msgspec.Struct, forbid_unknown_fields=True):
    provider: str
    input_usd_per_mtok: str
    output_usd_per_mtok: str
    context_window: int
    max_output_tokens: int
    encoding: str
    source: str
    as_of: str
    cached_input_usd_per_mtok: str | None = None


class _CatalogFile(msgspec.Struct):
    models: dict[str, CatalogModel]


class Price(msgspec.Struct, frozen=True):
    input_pico_per_token: int
    output_pico_per_token: int


class PricingError(ValueError):
    pass


def pico_per_token(usd_per_mtok: str) -> int:
    """'2.50' USD per Mtok -> 2_500_000 pico-USD per token, refusing sub-pico prices."""
    value = Decimal(usd_per_mtok) * 1_000_000
    if value != value.to_integral_value() or value < 0:
        raise PricingError(f"price {usd_per_mtok!r} is not a whole number of micro-USD per Mtok")
    return int(value)


@functools.cache
def load_catalog(path: Path = DEFAULT_CATALOG) -> dict[str, CatalogModel]:
    catalog = msgspec.toml.decode(path.read_bytes(), type=_CatalogFile).models
    for name, entry in catalog.items():
        try:
            price_of(entry)
        except (PricingError, ArithmeticError) as exc:
            raise PricingError(f"catalog entry {name!r}: {exc}") from exc
    return catalog


@functools.cache
def price_for(model: str) -> Price | None:
    """The price of a catalog model, or None for a model the catalog lacks."""
    entry = load_catalog().get(model)
    return price_of(entry) if entry is not None else None


def price_of(entry: CatalogModel) -> Price:
    return Price(
        input_pico_per_token=pico_per_token(entry.input_usd_per_mtok),
        output_pico_per_token=pico_per_token(entry.output_usd_per_mtok),
    )


def cost_pico_usd(usage: Usage, price: Price) -> int:
    return usage.prompt_tokens * price.input_pico_per_token + usage.completion_tokens * price.output_pico_per_token


def pico_to_usd(pico: int) -> Decimal:
    return Decimal(pico) / PICO_PER_USD
