"""The model catalog and exact cost arithmetic.

Catalog prices are decimal USD per million tokens. One micro-USD per million
tokens is one pico-USD per token, so every price becomes an integer number of
pico-USD per token and a request's cost is an exact integer: no floats, no
rounding, and sums in ClickHouse stay exact.
"""

from __future__ import annotations

import functools
import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec

from schemas.chat import Cost, Unit, Usage

PICO_PER_USD = 10**12
DEFAULT_CATALOG = Path(__file__).parent / "catalog" / "models.toml"
Capability = Literal["tools", "vision", "json", "reasoning", "embeddings"]
Tokenizer = Literal["o200k_base", "cl100k_base", "estimate"]
# What a model does: the endpoint it is called on follows (``routing.check_mode``).
Mode = Literal["chat", "embedding", "image", "audio_transcription", "speech", "moderation", "rerank"]


class CatalogPrices(msgspec.Struct, forbid_unknown_fields=True):
    """USD per million tokens, as exact decimal strings."""

    input: str
    output: str
    cached_input: str | None = None
    cache_write: str | None = None
    # Image tokens read (an image edit's input images: gpt-image-1 bills them
    # dearer than text); unset: the input price.
    image_input: str | None = None


class CatalogModel(msgspec.Struct, forbid_unknown_fields=True):
    provider: str
    mode: Mode
    usd_per_mtok: CatalogPrices
    context_window: int
    max_output_tokens: int
    tokenizer: Tokenizer
    caps: list[Capability]
    source: str
    as_of: str
    # Prices per unit, for what is not priced per token (exact decimal USD):
    # per image by "<size>/<quality>" (or "<size>", or "*" for any), per
    # minute of audio heard, per million characters spoken, per thousand
    # rerank search units.
    usd_per_image: dict[str, str] = {}
    usd_per_minute: str | None = None
    usd_per_mchar: str | None = None
    usd_per_ksearch: str | None = None


class _CatalogFile(msgspec.Struct):
    models: dict[str, CatalogModel]


class Price(msgspec.Struct, frozen=True):
    """Integer pico-USD per token."""

    input: int
    cached_input: int
    cache_write: int
    output: int

    @property
    def is_free(self) -> bool:
        return not (self.input or self.cached_input or self.cache_write or self.output)


class PricingError(ValueError):
    pass


def pico_per_token(usd_per_mtok: str) -> int:
    """'2.50' USD per Mtok -> 2_500_000 pico-USD per token, refusing sub-pico prices."""
    value = Decimal(usd_per_mtok) * 1_000_000
    if value != value.to_integral_value() or value < 0:
        raise PricingError(f"price {usd_per_mtok!r} is not a whole number of micro-USD per Mtok")
    return int(value)


def usd_to_pico(usd: str) -> int:
    """'1.25' USD -> pico-USD, exactly; refuses negatives, fractions of a pico
    and anything that is not a plain decimal number."""
    try:
        value = Decimal(usd)
    except (ArithmeticError, ValueError, TypeError):
        raise PricingError(f"{usd!r} is not a decimal number of USD") from None
    if not value.is_finite() or value < 0:
        raise PricingError(f"{usd!r} must be a finite, non-negative amount of USD")
    pico = value * PICO_PER_USD
    if pico != pico.to_integral_value():
        raise PricingError(f"{usd!r} is finer than 1e-12 USD")
    if pico >= 2**63:
        raise PricingError(f"{usd!r} is too large")
    return int(pico)


def price_of(entry: CatalogModel) -> Price:
    p = entry.usd_per_mtok
    uncached = pico_per_token(p.input)
    return Price(
        input=uncached,
        cached_input=pico_per_token(p.cached_input) if p.cached_input is not None else uncached,
        cache_write=pico_per_token(p.cache_write) if p.cache_write is not None else uncached,
        output=pico_per_token(p.output),
    )


def image_input_of(entry: CatalogModel) -> int:
    """Pico-USD per image token a model reads (``CatalogPrices.image_input``)."""
    p = entry.usd_per_mtok
    return pico_per_token(p.image_input if p.image_input is not None else p.input)


@functools.cache
def image_input_price(model: str) -> int:
    """``image_input_of`` a catalog model; 0 for a model the catalog lacks."""
    entry = load_catalog().get(model)
    return image_input_of(entry) if entry is not None else 0


def catalog_path() -> Path:
    """The catalog in use: SLUICE_CATALOG names a corrected copy, else the one shipped."""
    named = os.environ.get("SLUICE_CATALOG")
    return Path(named) if named else DEFAULT_CATALOG


@functools.cache
def load_catalog(path: Path | None = None) -> dict[str, CatalogModel]:
    return read_catalog(path or catalog_path())


def read_catalog(path: Path) -> dict[str, CatalogModel]:
    """The catalog as the file says now (``load_catalog`` keeps what it read first)."""
    try:
        catalog = msgspec.toml.decode(path.read_bytes(), type=_CatalogFile).models
    except msgspec.ValidationError as exc:
        raise PricingError(f"{path}: {exc}") from exc
    for name, entry in catalog.items():
        try:
            price_of(entry)
            image_input_of(entry)
            unit_prices(entry)
        except (PricingError, ArithmeticError) as exc:
            raise PricingError(f"catalog entry {name!r}: {exc}") from exc
    return catalog


def unit_prices(entry: CatalogModel) -> dict[str, int]:
    """Every price per unit of ``entry`` in pico-USD, by what it prices
    ("image:<variant>", "audio_ms", "character", "search_unit"): each must
    be a whole number of pico-USD per unit, so that units times price is the
    exact cost (a price per minute that is not a whole pico-USD per ms is
    refused here, at load, rather than rounded on every request)."""
    out = {f"image:{variant}": usd_to_pico(usd) for variant, usd in entry.usd_per_image.items()}
    for unit, usd, per in (
        ("audio_ms", entry.usd_per_minute, 60_000),
        ("character", entry.usd_per_mchar, 1_000_000),
        ("search_unit", entry.usd_per_ksearch, 1_000),
    ):
        if usd is not None:
            out[unit] = _exact(usd_to_pico_fraction(usd, per), usd)
    return out


def dearest_image_price(catalog_model: str, size: str | None) -> int | None:
    """The most one image of ``size`` may cost, whatever its quality (a
    request that leaves quality to the model may get the dearest); of any
    size when ``size`` is unset or "auto"; None when the model has no
    price per image."""
    prices = unit_prices_of(catalog_model)
    if prices is None or not any(key.startswith("image:") for key in prices):
        return None
    if size and size != "auto":
        fitting = [p for key, p in prices.items() if key.startswith("image:") and _image_size(key) == size]
        if fitting:
            return max(fitting)
    return max(p for key, p in prices.items() if key.startswith("image:"))


def _image_size(key: str) -> str:
    return key.removeprefix("image:").partition("/")[0]


@functools.cache
def price_for(model: str) -> Price | None:
    """The price of a catalog model, or None for a model the catalog lacks."""
    entry = load_catalog().get(model)
    return price_of(entry) if entry is not None else None


def unit_price(catalog_model: str, unit: Unit, variant: str = "") -> int | None:
    """Pico-USD per unit (an image, a ms of audio, a character, a search
    unit) of a catalog model; None when the catalog prices it otherwise or
    lacks it. ``variant``: an image's "<size>/<quality>" (its size alone,
    then "*", are tried next)."""
    prices = unit_prices_of(catalog_model)
    if prices is None:
        return None
    if unit != "image":
        return prices.get(unit)
    size = variant.partition("/")[0]
    for key in (variant, size, "*"):
        found = prices.get(f"image:{key}")
        if found is not None:
            return found
    return None


@functools.cache
def unit_prices_of(catalog_model: str) -> dict[str, int] | None:
    """``unit_prices`` of a catalog model (worked out once: a request's cost
    looks them up), or None for a model the catalog lacks."""
    entry = load_catalog().get(catalog_model)
    return unit_prices(entry) if entry is not None else None


def usd_to_pico_fraction(usd: str, per: int) -> Decimal:
    """Pico-USD of ``usd`` divided over ``per`` units (per minute -> per ms)."""
    return Decimal(usd_to_pico(usd)) / per


def _exact(pico: Decimal, usd: str) -> int:
    if pico != pico.to_integral_value():
        raise PricingError(f"{usd!r} per unit is finer than 1e-12 USD")
    return int(pico)


def cost(usage: Usage, price: Price) -> Cost:
    uncached = max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens)
    return Cost(
        input=uncached * price.input + usage.cache_write_tokens * price.cache_write,
        cached_input=usage.cached_tokens * price.cached_input,
        output=usage.completion_tokens * price.output,
    )


def pico_to_usd(pico: int) -> Decimal:
    return Decimal(pico) / PICO_PER_USD


def usd_per_mtok(pico_per_tok: int) -> str:
    """Integer pico-USD per token back to USD per Mtok, for display: '2.5', '10'."""
    return format((Decimal(pico_per_tok) / 1_000_000).normalize(), "f")
