"""Prices per unit (images, audio, characters, search units): validated at
load, exact per unit, looked up by variant, shown in the catalog view, and
what the issue-28 catalog entries say."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from schemas.chat import Cost, Usage
from services import catalog_view, pricing, usage

ENTRY = (
    '"m" = {{ provider = "openai", mode = "{mode}", usd_per_mtok = {{ input = "0", output = "0" }}, {price}, '
    'context_window = 1, max_output_tokens = 0, tokenizer = "estimate", caps = [], source = "https://x", '
    'as_of = "2025-01-01" }}\n'
)


def catalog_with(tmp_path: Path, mode: str, price: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text("[models]\n" + ENTRY.format(mode=mode, price=price))
    return path


@pytest.mark.parametrize(
    ("mode", "price"),
    [
        # $0.00185 a minute is 30,833.3 pico-USD a ms: no whole number, so refused, not rounded per request.
        ("audio_transcription", 'usd_per_minute = "0.00185"'),
        ("speech", 'usd_per_mchar = "0.0000001"'),  # 0.1 pico-USD a character
        ("rerank", 'usd_per_ksearch = "0.0000000001"'),
        ("image", 'usd_per_image = { "1024x1024/hd" = "0.0000000000001" }'),  # a tenth of a pico-USD
        ("image", 'usd_per_image = { "*" = "-0.04" }'),
        ("image", 'usd_per_image = { "*" = "free" }'),
    ],
)
def test_a_unit_price_finer_than_a_pico_usd_per_unit_is_refused_at_load(tmp_path: Path, mode: str, price: str) -> None:
    with pytest.raises(pricing.PricingError, match="catalog entry 'm'"):
        pricing.read_catalog(catalog_with(tmp_path, mode, price))


def test_whole_pico_unit_prices_load(tmp_path: Path) -> None:
    path = catalog_with(tmp_path, "audio_transcription", 'usd_per_minute = "0.00185004"')
    entry = pricing.read_catalog(path)["m"]
    assert pricing.unit_prices(entry) == {"audio_ms": 30_834}


def test_the_shipped_catalog_prices_each_unit_exactly() -> None:
    assert pricing.unit_price("whisper-1", "audio_ms") == 100_000  # $0.006 a minute
    assert pricing.unit_price("tts-1", "character") == 15_000_000  # $15 per million characters
    assert pricing.unit_price("tts-1-hd", "character") == 30_000_000
    assert pricing.unit_price("rerank-v3.5", "search_unit") == 2_000_000_000  # $2 per thousand
    # Groq's $0.111 and $0.04 an hour, rounded up to whole pico-USD a ms.
    assert pricing.unit_price("groq/whisper-large-v3", "audio_ms") == 30_834
    assert pricing.unit_price("groq/whisper-large-v3-turbo", "audio_ms") == 11_112
    # Token-priced models have no unit price: they bill tokens.
    assert pricing.unit_price("gpt-4o-transcribe", "audio_ms") is None
    assert pricing.unit_price("gpt-4o-mini-tts", "character") is None
    assert pricing.unit_price("omni-moderation-latest", "image") is None
    assert pricing.unit_price("no-such-model", "image") is None


def test_an_image_is_priced_by_size_and_quality_then_size_then_any() -> None:
    assert pricing.unit_price("dall-e-3", "image", "1024x1024/standard") == 40_000_000_000
    assert pricing.unit_price("dall-e-3", "image", "1792x1024/hd") == 120_000_000_000
    assert pricing.unit_price("dall-e-3", "image", "512x512/hd") is None
    assert pricing.unit_price("gpt-image-1", "image", "1536x1024/high") == 250_000_000_000
    assert pricing.unit_price("dall-e-2", "image", "512x512/standard") == 18_000_000_000  # by size alone
    assert pricing.unit_price("imagen-4.0-generate-001", "image", "1:1/") == 40_000_000_000  # "*"
    assert pricing.unit_price("azure/dall-e-3", "image", "1024x1792/standard") == 80_000_000_000


def test_the_dearest_image_is_the_dearest_quality_of_its_size_or_of_any_size() -> None:
    assert pricing.dearest_image_price("gpt-image-1", "1024x1024") == 167_000_000_000
    assert pricing.dearest_image_price("gpt-image-1", None) == 250_000_000_000
    assert pricing.dearest_image_price("gpt-image-1", "auto") == 250_000_000_000
    assert pricing.dearest_image_price("dall-e-3", "1024x1024") == 80_000_000_000
    # A size the table lacks may be the dearest there is.
    assert pricing.dearest_image_price("dall-e-2", "4096x4096") == 20_000_000_000
    assert pricing.dearest_image_price("imagen-4.0-generate-001", "1024x1024") == 40_000_000_000
    assert pricing.dearest_image_price("gpt-4o", "1024x1024") is None


def test_units_cost_units_times_the_price_exactly() -> None:
    images = usage.cost_of(Usage(units=3, unit="image"), "dall-e-3", "1024x1792/hd")
    assert images == Cost(units=3 * 120_000_000_000)
    assert pricing.pico_to_usd(images.total) == Decimal("0.36")
    heard = usage.cost_of(Usage(units=90_500, unit="audio_ms"), "whisper-1")
    assert pricing.pico_to_usd(heard.total) == Decimal("0.00905")  # 90.5 s at $0.006 a minute
    # A unit-priced model bills its units, whatever tokens it reported.
    both = usage.cost_of(Usage(prompt_tokens=1000, completion_tokens=4000, units=1, unit="image"), "gpt-image-1",
                         "1024x1024/low")  # fmt: skip
    assert both == Cost(units=11_000_000_000)


def test_a_unit_priced_model_that_billed_nothing_is_suspicious_and_a_free_one_is_not() -> None:
    assert usage.is_suspiciously_free(Cost(), "dall-e-3")  # its token prices are 0, its image prices are not
    assert not usage.is_suspiciously_free(Cost(units=1), "dall-e-3")
    assert not usage.is_suspiciously_free(Cost(), "omni-moderation-latest")


def test_the_catalog_view_shows_unit_prices_as_exact_decimals() -> None:
    view = catalog_view.describe("dall-e-3")
    assert view is not None and view["mode"] == "image"
    assert view["unit_pricing"]["image"]["1792x1024/hd"] == "0.12"
    whisper = catalog_view.describe("whisper-1")
    assert whisper is not None and whisper["unit_pricing"] == {"currency": "USD", "minute": "0.006"}
    assert catalog_view.describe("rerank-v3.5")["unit_pricing"]["1K searches"] == "2"  # type: ignore[index]
    assert "unit_pricing" not in (catalog_view.describe("gpt-4o") or {})


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        ("dall-e-2", "image"),
        ("dall-e-3", "image"),
        ("gpt-image-1", "image"),
        ("azure/dall-e-3", "image"),
        ("imagen-4.0-generate-001", "image"),
        ("whisper-1", "audio_transcription"),
        ("gpt-4o-transcribe", "audio_transcription"),
        ("gpt-4o-mini-transcribe", "audio_transcription"),
        ("groq/whisper-large-v3", "audio_transcription"),
        ("groq/whisper-large-v3-turbo", "audio_transcription"),
        ("tts-1", "speech"),
        ("tts-1-hd", "speech"),
        ("gpt-4o-mini-tts", "speech"),
        ("omni-moderation-latest", "moderation"),
        ("text-moderation-latest", "moderation"),
        ("rerank-v3.5", "rerank"),
        ("jina-reranker-v2-base-multilingual", "rerank"),
        ("rerank-2", "rerank"),
        ("rerank-2-lite", "rerank"),
    ],
)
def test_issue_28_models_are_in_the_catalog_with_their_mode_and_source(model: str, mode: str) -> None:
    entry = pricing.load_catalog()[model]
    assert entry.mode == mode and entry.source.startswith("https://") and len(entry.as_of) == 10
    # Priced one way or the other (moderation is free by design).
    priced = any(pricing.unit_prices(entry).values()) or not pricing.price_of(entry).is_free
    assert priced or mode == "moderation"


def test_an_image_input_price_is_checked_at_load_and_defaults_to_the_input_price(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    bad = ENTRY.format(mode="image", price='usd_per_image = { "*" = "0.04" }').replace(
        'input = "0", output', 'input = "0", image_input = "0.0000001", output'
    )
    path.write_text("[models]\n" + bad)
    with pytest.raises(pricing.PricingError, match="catalog entry 'm'"):
        pricing.read_catalog(path)
    entry = pricing.read_catalog(catalog_with(tmp_path, "image", 'usd_per_image = { "*" = "0.04" }'))["m"]
    assert pricing.image_input_of(entry) == pricing.price_of(entry).input
    # gpt-image-1 reads images at $10 a million tokens, text at $5 (OpenAI's model page).
    assert pricing.image_input_price("gpt-image-1") == 10_000_000
    assert pricing.price_for("gpt-image-1") == pricing.Price(
        input=5_000_000, cached_input=1_250_000, cache_write=5_000_000, output=40_000_000
    )
