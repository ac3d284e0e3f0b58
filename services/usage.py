"""Settling a request's usage and cost: the upstream's word when it gave one,
else our own count with the model's tokenizer, labelled as such."""

from __future__ import annotations

from schemas.chat import ChatBody, Usage
from services import pricing, tokens

# Used for models missing from the catalog: a count from the wrong tokenizer
# is still far better than zero, and the row says it was counted.
FALLBACK_ENCODING = "cl100k_base"


def _encoding_name(catalog_model: str | None) -> str:
    entry = pricing.load_catalog().get(catalog_model or "")
    if entry is None or entry.encoding not in tokens.available():
        return FALLBACK_ENCODING
    return entry.encoding


def settle(reported: Usage | None, body: ChatBody, completion_text: str, catalog_model: str | None) -> Usage:
    if reported is not None:
        return reported
    enc = tokens.encoding(_encoding_name(catalog_model))
    return Usage(
        prompt_tokens=tokens.count_prompt(body.messages, enc),
        completion_tokens=tokens.count_text(completion_text, enc) if completion_text else 0,
        source="counted",
    )


def cost_pico_usd(usage: Usage, catalog_model: str | None) -> int:
    price = pricing.price_for(catalog_model or "")
    return pricing.cost_pico_usd(usage, price) if price is not None else 0
