from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.chat import Usage
from services import pricing, usage


def test_prices_become_exact_pico_usd_per_token() -> None:
    assert pricing.pico_per_token("2.50") == 2_500_000
    assert pricing.pico_per_token("0.075") == 75_000
    assert pricing.pico_per_token("0.000001") == 1


def test_sub_pico_price_is_refused() -> None:
    with pytest.raises(pricing.PricingError):
        pricing.pico_per_token("0.0000001")


def test_cost_is_exact_integer_arithmetic() -> None:
    price = pricing.Price(input_pico_per_token=150_000, output_pico_per_token=600_000)
    cost = pricing.cost_pico_usd(Usage(prompt_tokens=7, completion_tokens=3), price)
    assert cost == 7 * 150_000 + 3 * 600_000
    # 1,050,000 + 1,800,000 pico-USD = 0.00000285 USD, exactly
    assert pricing.pico_to_usd(cost) == Decimal("0.00000285")


def test_a_million_tokens_cost_the_list_price() -> None:
    entry = pricing.load_catalog()["gpt-4o"]
    cost = pricing.cost_pico_usd(Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000), pricing.price_of(entry))
    assert pricing.pico_to_usd(cost) == Decimal("12.50")


def test_catalog_entries_name_source_date_and_encoding() -> None:
    catalog = pricing.load_catalog()
    assert catalog
    for entry in catalog.values():
        assert entry.source and entry.as_of and entry.encoding
        assert entry.context_window > 0


def test_unpriced_model_costs_zero_and_priced_one_does_not() -> None:
    u = Usage(prompt_tokens=10, completion_tokens=10)
    assert usage.cost_pico_usd(u, None) == 0
    assert usage.cost_pico_usd(u, "gpt-3.5-turbo") == 10 * 500_000 + 10 * 1_500_000
