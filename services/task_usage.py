"""What an image, audio, moderation or rerank request (``schemas.tasks``)
bills: as asked (``as_asked``: an answer the upstream made but never said
the size of, the call cut short, its provider process gone) and at most
(``worst_case``: what a budget reserves before the call).

Pure: the catalog's prices, our own token counts, and the request. What
the upstream itself reports (an image count, seconds of audio, search
units) is the adapters' to read; this is for when it has not said. Where
this estimates (speech and transcription tokens, search units), it counts
as ``worst_case`` reserves, so an estimate never bills past the reservation.
"""

from __future__ import annotations

import math

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
from services import audio_duration, pricing, tokens
from services.usage import tokenizer_for

# A transcription whose length the ingress could not read from the file's
# header is reserved for as if it were coded at 8 kbit/s (one byte a ms):
# below what speech codecs use in practice (Opus voice ~16-24 kbit/s, MP3
# from 32), so the reservation is a ceiling (``audio_duration`` believes no
# header that says longer).
AUDIO_BYTES_PER_MS = 1
# A model that bills audio as tokens (gpt-4o-transcribe) hears about ten a
# second by OpenAI's own per-minute estimate; reserved at twice that.
AUDIO_MS_PER_TOKEN = 50
# What such a model writes of audio that was cut short before its text came:
# speech runs near 150 words (200 tokens) a minute, a token every 300 ms;
# counted at one every 200 ms (and never past the model's output limit).
SPOKEN_MS_PER_TOKEN = 200
# Speech billed as tokens (gpt-4o-mini-tts): measured near six audio tokens
# out per text token in; reserved at ten.
SPEECH_TOKENS_PER_TEXT_TOKEN = 10
# Cohere's search unit: one query with up to 100 documents, a document
# being each piece of at most CHUNK_TOKENS (query included) of a longer one,
# after Cohere truncates it to max_tokens_per_doc (4,096 unless asked).
DOCUMENTS_PER_SEARCH_UNIT = 100
CHUNK_TOKENS = 500
DEFAULT_MAX_TOKENS_PER_DOC = 4096


def texts(task: TaskRequest) -> list[str]:
    """Every text the request sends upstream (what tokens are counted of,
    and what a tenant's detectors read)."""
    match task:
        case ImageRequest():
            return [task.prompt]
        case SpeechRequest():
            return [task.input, task.instructions] if task.instructions else [task.input]
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
    here: the images asked for, the characters to speak (or the tokens a
    model priced by them would take), the audio's length (as the ingress
    read it, else guessed from its size: ``audio_duration.estimated_ms``),
    the search units its documents take, or its tokens."""
    _, source = tokenizer_for(catalog_model)
    match task:
        case ImageRequest():
            return Usage(
                prompt_tokens=counted_tokens(task, catalog_model), units=task.n or 1, unit="image", source=source
            )
        case SpeechRequest():
            return speech_usage(task, catalog_model)
        case TranscriptionRequest():
            heard_ms = task.duration_ms if task.duration_ms > 0 else audio_duration.estimated_ms(task.audio.size)
            return transcription_usage(task, catalog_model, heard_ms, None)
        case RerankRequest() if _unit_priced(catalog_model, "search_unit"):
            return Usage(units=search_units(task, catalog_model), unit="search_unit", source=source)
        case RerankRequest():
            return Usage(prompt_tokens=rerank_tokens(task, catalog_model), source=source)
    return Usage(prompt_tokens=counted_tokens(task, catalog_model), source=source)


def speech_usage(task: SpeechRequest, catalog_model: str | None) -> Usage:
    """Speech as we count it: its characters (what tts-1 is priced by);
    for a model priced by tokens (gpt-4o-mini-tts) whose upstream said
    none, its texts' tokens in and ``SPEECH_TOKENS_PER_TEXT_TOKEN`` times
    its input's out, as reserved, labelled "estimated"."""
    if _unit_priced(catalog_model, "character") or pricing.price_for(catalog_model or "") is None:
        return Usage(units=len(task.input), unit="character", source="counted")
    tokens_in, tokens_out = speech_tokens(task, catalog_model)
    return Usage(
        prompt_tokens=tokens_in,
        completion_tokens=tokens_out,
        units=len(task.input),
        unit="character",
        source="estimated",
    )


def speech_tokens(task: SpeechRequest, catalog_model: str | None) -> tuple[int, int]:
    """(tokens in: the input and the instructions, tokens out: ten per
    token of the input spoken)."""
    name, _ = tokenizer_for(catalog_model)
    spoken = tokens.count_text(task.input, tokens.encoding(name))
    return counted_tokens(task, catalog_model), spoken * SPEECH_TOKENS_PER_TEXT_TOKEN


def transcription_usage(
    task: TranscriptionRequest, catalog_model: str | None, heard_ms: int, transcript: str | None
) -> Usage:
    """A transcription as we count it: ``heard_ms`` of audio (what whisper-1
    is priced by); for a model priced by tokens (gpt-4o-transcribe) whose
    upstream said none (``response_format`` text, a call cut short), its
    prompt and a token every ``AUDIO_MS_PER_TOKEN`` of audio in, and the
    ``transcript``'s tokens out (unknown: one every ``SPOKEN_MS_PER_TOKEN``),
    never past the model's output limit. Labelled "estimated"."""
    prompt = counted_tokens(task, catalog_model)
    entry = pricing.load_catalog().get(catalog_model or "")
    if entry is None or _unit_priced(catalog_model, "audio_ms"):
        return Usage(prompt_tokens=prompt, units=heard_ms, unit="audio_ms", source="estimated")
    if transcript is None:
        written = math.ceil(heard_ms / SPOKEN_MS_PER_TOKEN)
    else:
        written = tokens.count_text(transcript, tokens.encoding(tokenizer_for(catalog_model)[0]))
    if entry.max_output_tokens:
        written = min(written, entry.max_output_tokens)
    return Usage(
        prompt_tokens=prompt + math.ceil(heard_ms / AUDIO_MS_PER_TOKEN),
        completion_tokens=written,
        units=heard_ms,
        unit="audio_ms",
        source="estimated",
    )


def search_units(task: RerankRequest, catalog_model: str | None) -> int:
    """Cohere's search units of the request: its documents in chunks of
    ``CHUNK_TOKENS`` (query included), a hundred chunks a unit. Each document
    is a chunk at least, so this is never less than a unit per hundred
    documents; the call's estimate and the reservation are both this."""
    query, documents = _rerank_counts(task, catalog_model)
    return _search_units(task, query, documents)


def _search_units(task: RerankRequest, query: int, documents: list[int]) -> int:
    cap = task.max_tokens_per_doc or DEFAULT_MAX_TOKENS_PER_DOC
    chunks = sum(max(1, math.ceil((query + min(d, cap)) / CHUNK_TOKENS)) for d in documents)
    return max(1, math.ceil(chunks / DOCUMENTS_PER_SEARCH_UNIT))


def rerank_tokens(task: RerankRequest, catalog_model: str | None) -> int:
    """Tokens as the token-priced rerankers bill them (Voyage says so, Jina
    alike): the query once per document, and every document."""
    query, documents = _rerank_counts(task, catalog_model)
    return query * len(documents) + sum(documents)


def _rerank_counts(task: RerankRequest, catalog_model: str | None) -> tuple[int, list[int]]:
    """The query's tokens and each document's, by the model's tokenizer (or the stand-in)."""
    name, _ = tokenizer_for(catalog_model)
    enc = tokens.encoding(name)
    return tokens.count_text(task.query, enc), [tokens.count_text(text, enc) for text in document_texts(task)]


def worst_case(task: TaskRequest, catalog_model: str | None) -> tuple[int, int]:
    """(tokens a per-minute limit counts, the most the request may cost in
    pico-USD) before the call: images n at the dearest price their size may
    take, and their prompt's tokens; speech's characters (or its tokens in
    and ten times as many out); a transcription's length (as read, else
    ``AUDIO_BYTES_PER_MS`` of its upload); rerank's search units or tokens;
    moderation its text's tokens (OpenAI's models are free)."""
    price_of = pricing.price_for(catalog_model or "")
    if isinstance(task, RerankRequest):
        return _rerank_worst_case(task, catalog_model)
    counted = counted_tokens(task, catalog_model)
    match task:
        case ImageRequest():
            per_image = image_price(task, catalog_model)
            if per_image is not None:
                # Input images' tokens (an edit's) are known once the upstream says; the prompt's are counted.
                prompt = counted * price_of.input if price_of is not None else 0
                return counted, (task.n or 1) * per_image + prompt
        case SpeechRequest():
            per_char = pricing.unit_price(catalog_model or "", "character")
            if per_char is not None:
                return counted, len(task.input) * per_char
            if price_of is not None:
                tokens_in, tokens_out = speech_tokens(task, catalog_model)
                return counted, tokens_in * price_of.input + tokens_out * price_of.output
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
    # Moderation (free at OpenAI) and the rest: the text's tokens at the input price, as their calls bill.
    return counted, counted * price_of.input if price_of is not None else 0


def _rerank_worst_case(task: RerankRequest, catalog_model: str | None) -> tuple[int, int]:
    """Rerank's: its texts counted once for all three figures (a request
    may hold 4 million characters)."""
    query, documents = _rerank_counts(task, catalog_model)
    counted = query + sum(documents)
    per_unit = pricing.unit_price(catalog_model or "", "search_unit")
    if per_unit is not None:
        return counted, _search_units(task, query, documents) * per_unit
    price_of = pricing.price_for(catalog_model or "")
    if price_of is None:
        return counted, 0
    return counted, (query * len(documents) + sum(documents)) * price_of.input
