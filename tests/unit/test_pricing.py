from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.chat import Cost, Usage
from services import pricing, usage
from services.providers.registry import PROVIDERS


def test_prices_become_exact_pico_usd_per_token() -> None:
    assert pricing.pico_per_token("2.50") == 2_500_000
    assert pricing.pico_per_token("0.075") == 75_000
    assert pricing.pico_per_token("0.000001") == 1


def test_sub_pico_price_is_refused() -> None:
    with pytest.raises(pricing.PricingError):
        pricing.pico_per_token("0.0000001")


def test_cost_is_split_and_exact() -> None:
    price = pricing.Price(input=150_000, cached_input=75_000, cache_write=187_500, output=600_000)
    u = Usage(prompt_tokens=10, cached_tokens=3, cache_write_tokens=2, completion_tokens=4)
    cost = pricing.cost(u, price)
    assert cost == Cost(input=5 * 150_000 + 2 * 187_500, cached_input=3 * 75_000, output=4 * 600_000)
    # 1,125,000 + 225,000 + 2,400,000 pico-USD = 0.00000375 USD, exactly
    assert pricing.pico_to_usd(cost.total) == Decimal("0.00000375")


@pytest.mark.parametrize(
    ("model", "usd"),
    [("gpt-4o", "12.50"), ("claude-sonnet-4-20250514", "18"), ("gemini-2.5-flash-lite", "0.50")],
)
def test_a_million_tokens_in_and_out_cost_the_list_price(model: str, usd: str) -> None:
    price = pricing.price_for(model)
    assert price is not None
    cost = pricing.cost(Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000), price)
    assert pricing.pico_to_usd(cost.total) == Decimal(usd)


def test_cached_tokens_cost_the_cached_price() -> None:
    price = pricing.price_for("gpt-4o")
    assert price is not None
    cost = pricing.cost(Usage(prompt_tokens=1_000_000, cached_tokens=1_000_000), price)
    assert cost == Cost(input=0, cached_input=1_250_000 * 1_000_000, output=0)


def test_catalog_has_100_models_across_every_family_with_full_entries() -> None:
    catalog = pricing.load_catalog()
    assert len(catalog) >= 100
    families = {PROVIDERS[e.provider].family for e in catalog.values()}
    assert {"openai", "azure", "anthropic", "gemini", "mistral", "cohere", "openai_compatible"} <= families
    for name, entry in catalog.items():
        assert entry.source.startswith("https://"), name
        assert len(entry.as_of) == 10, name
        assert entry.context_window > 0, name
        if entry.mode == "embedding":
            assert "embeddings" in entry.caps and entry.max_output_tokens == 0, name
        elif entry.mode in ("chat", "audio_transcription"):
            assert entry.max_output_tokens > 0, name
        else:  # what they answer is not text tokens
            assert entry.max_output_tokens == 0, name
        price = pricing.price_of(entry)
        assert price.cached_input <= price.input, name


def test_catalog_with_a_float_price_is_refused(tmp_path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text(
        '[models]\n"m" = { provider = "openai", mode = "chat", usd_per_mtok = { input = 2.5, output = "1" }, '
        'context_window = 1, max_output_tokens = 1, tokenizer = "estimate", caps = [], source = "s", as_of = "d" }\n'
    )
    with pytest.raises(pricing.PricingError):
        pricing.load_catalog(bad)


def test_unpriced_model_costs_zero_and_priced_one_does_not() -> None:
    u = Usage(prompt_tokens=10, completion_tokens=10)
    assert usage.cost_of(u, None).total == 0
    assert usage.cost_of(u, "gpt-3.5-turbo") == Cost(input=10 * 500_000, output=10 * 1_500_000)


def test_zero_cost_alert_rule() -> None:
    assert usage.is_suspiciously_free(Cost(), "gpt-4o")
    assert not usage.is_suspiciously_free(Cost(output=1), "gpt-4o")
    assert not usage.is_suspiciously_free(Cost(), "ollama/llama3.1:8b")  # free local model
    assert not usage.is_suspiciously_free(Cost(), None)  # unknown to the catalog: no price to miss
