"""What an image, audio, moderation or rerank request (``schemas.tasks``)
bills: as asked (``as_asked``: an answer the upstream made but never said
the size of, the call cut short, its provider process gone) and at most
(``worst_case``: what a budget reserves before the call).

Pure: the catalog's prices, our own token counts, and the request. What
the upstream itself reports (an image count, seconds of audio, search
units) is the adapters' to read; this is for when it has not said.
"""

from __future__ import annotations

from schemas.chat import Usage
from schemas.tasks import (
    ImageRequest,
    ModerationPart,
    ModerationRequest,
    RerankDocument,
    RerankRequest,
    SpeechRequest,
    TaskRequest,
    TranscriptionRequest,
)
from services import pricing, tokens
from services.usage import tokenizer_for

# A transcription whose length the ingress could not read from the file's
# header is reserved for as if it were coded at 8 kbit/s (one byte a ms):
# below what speech codecs use in practice (Opus voice ~16-24 kbit/s, MP3
# from 32), so the reservation is a ceiling.
AUDIO_BYTES_PER_MS = 1
# A model that bills audio as tokens (gpt-4o-transcribe) hears about ten a
# second by OpenAI's own per-minute estimate; reserved at twice that.
AUDIO_MS_PER_TOKEN = 50
# Speech billed as tokens (gpt-4o-mini-tts): measured near six audio tokens
# out per text token in; reserved at ten.
SPEECH_TOKENS_PER_TEXT_TOKEN = 10
# Cohere's search unit: one query with up to 100 documents.
DOCUMENTS_PER_SEARCH_UNIT = 100


def texts(task: TaskRequest) -> list[str]:
    """Every text the request sends upstream (what tokens are counted of,
    and what a tenant's detectors read)."""
    match task:
        case ImageRequest():
            return [task.prompt]
        case SpeechRequest():
            return [task.input]
        case TranscriptionRequest():
            return [task.prompt] if task.prompt else []
        case ModerationRequest():
            return moderation_texts(task)
        case RerankRequest():
            return [task.query, *document_texts(task)]
    return []


def moderation_texts(task: ModerationRequest) -> list[str]:
    if isinstance(task.input, str):
        return [task.input]
    out = []
    for item in task.input:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, ModerationPart) and item.text is not None:
            out.append(item.text)
    return out


def document_texts(task: RerankRequest) -> list[str]:
    return [d.text if isinstance(d, RerankDocument) else d for d in task.documents]


def counted_tokens(task: TaskRequest, catalog_model: str | None) -> int:
    """The tokens of the request's texts, by the model's tokenizer (or the
    stand-in): what a tokens-per-minute limit counts."""
    name, _ = tokenizer_for(catalog_model)
    enc = tokens.encoding(name)
    return sum(tokens.count_text(text, enc) for text in texts(task) if text)


def image_variant(task: ImageRequest) -> str:
    """The "<size>/<quality>" an image is priced by (``pricing.unit_price``)."""
    return f"{task.size or ''}/{task.quality or ''}"


def image_price(task: ImageRequest, catalog_model: str | None) -> int | None:
    """What one image of the request costs: its size and quality's price;
    when the model chooses the quality (unset, "auto"), the dearest of its
    size's (of any size when that is unset too)."""
    model = catalog_model or ""
    if task.quality and task.quality != "auto" and task.size and task.size != "auto":
        found = pricing.unit_price(model, "image", image_variant(task))
        if found is not None:
            return found
    return pricing.dearest_image_price(model, task.size)


def _unit_priced(catalog_model: str | None, unit: str) -> bool:
    prices = pricing.unit_prices_of(catalog_model or "")
    return prices is not None and any(key == unit or key.startswith(f"{unit}:") for key in prices)


def as_asked(task: TaskRequest, catalog_model: str | None) -> Usage:
    """What the request bills if the upstream did what it asked, counted
    here: the images asked for, the characters to speak, the audio's length
    when the ingress read it (else none: an unknown length is not guessed
    into a bill), the search units its documents take, or its tokens."""
    _, source = tokenizer_for(catalog_model)
    counted = counted_tokens(task, catalog_model)
    match task:
        case ImageRequest():
            return Usage(prompt_tokens=counted, units=task.n or 1, unit="image", source=source)
        case SpeechRequest() if _unit_priced(catalog_model, "character"):
            return Usage(units=len(task.input), unit="character", source="counted")
        case TranscriptionRequest() if task.duration_ms > 0:
            return Usage(prompt_tokens=counted, units=task.duration_ms, unit="audio_ms", source="estimated")
        case RerankRequest() if _unit_priced(catalog_model, "search_unit"):
            return Usage(units=search_units(task), unit="search_unit", source="counted")
        case RerankRequest():
            return Usage(prompt_tokens=rerank_tokens(task, catalog_model), source=source)
    return Usage(prompt_tokens=counted, source=source)


def search_units(task: RerankRequest) -> int:
    return max(1, -(-len(task.documents) // DOCUMENTS_PER_SEARCH_UNIT))


def rerank_tokens(task: RerankRequest, catalog_model: str | None) -> int:
    """Tokens as the token-priced rerankers bill them (Voyage says so, Jina
    alike): the query once per document, and every document."""
    name, _ = tokenizer_for(catalog_model)
    enc = tokens.encoding(name)
    query = tokens.count_text(task.query, enc)
    return sum(query + tokens.count_text(text, enc) for text in document_texts(task))


def worst_case(task: TaskRequest, catalog_model: str | None) -> tuple[int, int]:
    """(tokens a per-minute limit counts, the most the request may cost in
    pico-USD) before the call: images n at the dearest price their size may
    take; speech's characters (or its tokens in and ten times as many out);
    a transcription's length (as read, else ``AUDIO_BYTES_PER_MS`` of its
    upload); rerank's search units or tokens; moderation nothing."""
    counted = counted_tokens(task, catalog_model)
    price_of = pricing.price_for(catalog_model or "")
    match task:
        case ImageRequest():
            per_image = image_price(task, catalog_model)
            if per_image is not None:
                return counted, (task.n or 1) * per_image
        case SpeechRequest():
            per_char = pricing.unit_price(catalog_model or "", "character")
            if per_char is not None:
                return counted, len(task.input) * per_char
            if price_of is not None:
                return counted, counted * price_of.input + counted * SPEECH_TOKENS_PER_TEXT_TOKEN * price_of.output
        case TranscriptionRequest():
            heard_ms = task.duration_ms if task.duration_ms > 0 else task.audio.size // AUDIO_BYTES_PER_MS
            per_ms = pricing.unit_price(catalog_model or "", "audio_ms")
            if per_ms is not None:
                return counted, heard_ms * per_ms
            if price_of is not None:
                entry = pricing.load_catalog().get(catalog_model or "")
                out = entry.max_output_tokens if entry is not None else 0
                heard = -(-heard_ms // AUDIO_MS_PER_TOKEN)
                return counted, (counted + heard) * price_of.input + out * price_of.output
        case RerankRequest():
            per_unit = pricing.unit_price(catalog_model or "", "search_unit")
            if per_unit is not None:
                return counted, search_units(task) * per_unit
            if price_of is not None:
                return counted, rerank_tokens(task, catalog_model) * price_of.input
        case ModerationRequest():
            return counted, 0
    return counted, counted * price_of.input if price_of is not None else 0
