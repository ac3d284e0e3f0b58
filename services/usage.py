"""Settling a request's usage and cost: the upstream's word when it gave one,
else our own count, labelled "counted" when the tokenizer is the model's own
and "estimated" when it is a stand-in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.chat import ChatBody, Cost, EmbeddingsBody, Usage, UsageSource
from schemas.tasks import ImageRequest, TaskRequest
from services import pricing, tokens
from services.providers.base import embedding_inputs

if TYPE_CHECKING:  # the call imports this module
    from services.providers.call import CallProgress

# Models of other families, and models missing from the catalog, are counted
# with this: a count from the wrong tokenizer is far better than zero, and
# the row says it is an estimate.
ESTIMATE_ENCODING = "o200k_base"


def tokenizer_for(catalog_model: str | None) -> tuple[str, UsageSource]:
    entry = pricing.load_catalog().get(catalog_model or "")
    if entry is None or entry.tokenizer == "estimate":
        return ESTIMATE_ENCODING, "estimated"
    return entry.tokenizer, "counted"


def settle(reported: Usage | None, body: ChatBody, completion_text: str, catalog_model: str | None) -> Usage:
    if reported is not None:
        return reported
    name, source = tokenizer_for(catalog_model)
    enc = tokens.encoding(name)
    return Usage(
        prompt_tokens=tokens.count_prompt(body.messages, enc),
        completion_tokens=tokens.count_text(completion_text, enc) if completion_text else 0,
        source=source,
    )


def settle_cut_short(reported: Usage | None, body: ChatBody, streamed_text: str, catalog_model: str | None) -> Usage:
    """A call that ended before its answer did (the client went away): the
    prompt, and what was generated so far. A provider that reported usage
    early (Anthropic's message_start) may under-report the output: the larger
    of its word and our count of the streamed text wins."""
    counted = settle(None, body, streamed_text, catalog_model)
    if reported is None:
        return counted
    if counted.completion_tokens <= reported.completion_tokens:
        return reported
    return Usage(
        prompt_tokens=reported.prompt_tokens or counted.prompt_tokens,
        completion_tokens=counted.completion_tokens,
        cached_tokens=reported.cached_tokens,
        cache_write_tokens=reported.cache_write_tokens,
        reasoning_tokens=reported.reasoning_tokens,
        source=counted.source,
    )


def settle_embeddings(reported: Usage | None, body: EmbeddingsBody, catalog_model: str | None) -> Usage:
    if reported is not None:
        return reported
    name, source = tokenizer_for(catalog_model)
    enc = tokens.encoding(name)
    count = 0
    for item in embedding_inputs(body):
        count += tokens.count_text(item, enc) if isinstance(item, str) else len(item)
    return Usage(prompt_tokens=count, source=source)


def cost_of(usage: Usage, catalog_model: str | None, variant: str = "") -> Cost:
    """Tokens at the model's token prices, and units (``usage.units``) at its
    price per unit (``variant``: an image's "<size>/<quality>"). A model
    priced per unit bills its units alone, whatever tokens it reported."""
    if usage.unit:
        per_unit = pricing.unit_price(catalog_model or "", usage.unit, variant)
        if per_unit is not None:
            return Cost(units=usage.units * per_unit)
    price = pricing.price_for(catalog_model or "")
    return pricing.cost(usage, price) if price is not None else Cost()


def is_suspiciously_free(cost: Cost, catalog_model: str | None) -> bool:
    """A successful request that cost nothing although its model has a price:
    usage went missing somewhere, and the bill will be wrong."""
    price = pricing.price_for(catalog_model or "")
    if price is None or cost.total:
        return False
    return not price.is_free or any((pricing.unit_prices_of(catalog_model or "") or {}).values())


def task_cut_short(task: TaskRequest, progress: CallProgress, catalog_model: str | None) -> tuple[Usage, Cost] | None:
    """What an image, audio, moderation or rerank call that ended early is
    billed, once its request reached the upstream: what the call already
    priced (``progress.cost``: images made but not kept), else what the
    upstream said it used, if it said (``progress.reported``), else what was
    asked (``task_usage.as_asked``: an upstream that took the request makes
    the images and speaks the text whether or not the answer comes back)."""
    from services import task_usage  # it counts with this module's tokenizer choice

    if progress.reported is not None and progress.cost is not None:
        return progress.reported, progress.cost
    usage = progress.reported if progress.reported is not None else task_usage.as_asked(task, catalog_model)
    return usage, task_cost(task, usage, catalog_model)


def task_cost(task: TaskRequest, usage: Usage, catalog_model: str | None) -> Cost:
    """``cost_of`` for a task's usage: an image at its size and quality's
    price (the dearest its size may take when the model chose the quality),
    and its prompt's tokens (``image_cost``)."""
    from services import task_usage

    if isinstance(task, ImageRequest) and usage.unit == "image":
        per_image = task_usage.image_price(task, catalog_model)
        if per_image is not None:
            return image_cost(usage, per_image, catalog_model)
    return cost_of(usage, catalog_model)


def image_cost(usage: Usage, per_image: int, catalog_model: str | None, input_image_tokens: int = 0) -> Cost:
    """Images made at ``per_image`` each, and the tokens read at the
    model's token prices: text at its input price, input images (an edit's:
    ``input_image_tokens`` of ``usage.prompt_tokens``) at its image input
    price. OpenAI's per-image prices for gpt-image-1 are its image tokens
    out; it bills what it reads beside them (text $5, images $10 a million).
    A model whose input is free (DALL-E) bills its images alone."""
    price = pricing.price_for(catalog_model or "")
    if price is None:
        return Cost(units=usage.units * per_image)
    images_read = min(max(0, input_image_tokens), usage.prompt_tokens)
    text_read = usage.prompt_tokens - images_read
    read = text_read * price.input + images_read * pricing.image_input_price(catalog_model or "")
    return Cost(input=read, units=usage.units * per_image)
