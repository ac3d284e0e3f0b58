"""What a budget reserves for an image, audio, moderation or rerank request
(its worst case at the dearest deployment), what a tokens-per-minute limit
counts of it, and what it bills when cut short."""

from __future__ import annotations

from schemas.chat import Cost, Usage
from schemas.reservation import HOLD_SPEND, HOLD_TOKENS, Hold, Reservation
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationPart,
    ModerationRequest,
    RerankDocument,
    RerankRequest,
    SpeechRequest,
    TranscriptionRequest,
)
from services import pricing, quota, task_usage, tokens, usage
from services.providers.call import CallProgress

AUDIO = BlobRef(name="t1/upload/abcdefghijklmnopqrstuvwx", size=480_000)
O200K = tokens.encoding("o200k_base")


def count(text: str) -> int:
    return tokens.count_text(text, O200K)


def test_images_reserve_n_at_the_dearest_quality_of_their_size_when_quality_is_unset() -> None:
    asked = ImageRequest(model="m", prompt="a red fox", n=3, size="1024x1024")
    assert task_usage.worst_case(asked, "gpt-image-1") == (count("a red fox"), 3 * 167_000_000_000)
    # A quality named is its price; no size, the dearest of any size.
    low = ImageRequest(model="m", prompt="a red fox", n=2, size="1024x1024", quality="low")
    assert task_usage.worst_case(low, "gpt-image-1")[1] == 2 * 11_000_000_000
    assert task_usage.worst_case(ImageRequest(model="m", prompt="x"), "gpt-image-1")[1] == 250_000_000_000
    assert task_usage.worst_case(ImageRequest(model="m", prompt="x", quality="auto"), "dall-e-3")[1] == 120_000_000_000


def test_speech_reserves_its_characters_or_its_tokens_in_and_ten_times_as_many_out() -> None:
    speech = SpeechRequest(model="m", input="Hello, world.", voice="alloy")
    assert task_usage.worst_case(speech, "tts-1") == (count("Hello, world."), 13 * 15_000_000)
    n = count("Hello, world.")
    price = pricing.price_for("gpt-4o-mini-tts")
    assert price is not None
    assert task_usage.worst_case(speech, "gpt-4o-mini-tts")[1] == n * price.input + 10 * n * price.output


def test_a_transcription_reserves_its_length_else_a_byte_a_ms_of_its_upload() -> None:
    known = TranscriptionRequest(model="m", audio=AUDIO, duration_ms=61_000)
    assert task_usage.worst_case(known, "whisper-1") == (0, 61_000 * 100_000)
    # Unknown length: 480,000 bytes at 8 kbit/s is 480 s, at most.
    unknown = TranscriptionRequest(model="m", audio=AUDIO, prompt="names: Zoë")
    assert task_usage.worst_case(unknown, "whisper-1") == (count("names: Zoë"), 480_000 * 100_000)
    # Tokens: the prompt and the audio (one token per 50 ms) in, the model's output limit out.
    price = pricing.price_for("gpt-4o-transcribe")
    assert price is not None
    expected = (count("names: Zoë") + 480_000 // 50) * price.input + 2000 * price.output
    assert task_usage.worst_case(unknown, "gpt-4o-transcribe")[1] == expected


def test_rerank_reserves_search_units_or_the_tokens_each_document_is_billed() -> None:
    docs = ["alpha beta"] * 150 + [RerankDocument(text="gamma")]
    rerank = RerankRequest(model="m", query="which", documents=docs)
    assert task_usage.search_units(rerank) == 2
    assert task_usage.worst_case(rerank, "rerank-v3.5")[1] == 2 * 2_000_000_000
    per_doc = 150 * (count("which") + count("alpha beta")) + count("which") + count("gamma")
    assert task_usage.rerank_tokens(rerank, "rerank-2") == per_doc
    assert task_usage.worst_case(rerank, "rerank-2")[1] == per_doc * 50_000  # $0.05 per Mtok
    # What a tokens-per-minute limit counts: the texts once.
    assert task_usage.worst_case(rerank, "rerank-v3.5")[0] == count("which") + 150 * count("alpha beta") + count(
        "gamma"
    )


def test_moderation_reserves_nothing_but_counts_its_text() -> None:
    mod = ModerationRequest(model="m", input=["one", ModerationPart(type="text", text="two three")])
    assert task_usage.worst_case(mod, "omni-moderation-latest") == (count("one") + count("two three"), 0)


def test_a_group_reserves_at_its_dearest_deployment() -> None:
    speech = SpeechRequest(model="m", input="x" * 100, voice="alloy")
    assert quota.estimate_task(speech, ["tts-1", "tts-1-hd", "tts-1"]) == (count("x" * 100), 100 * 30_000_000)
    # A model the catalog lacks prices nothing: the group's others still count.
    assert quota.estimate_task(speech, [None, "tts-1"])[1] == 100 * 15_000_000
    assert quota.estimate_task(speech, [])[1] == 0


def test_reserved_tokens_is_the_tokens_hold() -> None:
    held = Reservation(holds=[Hold("s", HOLD_SPEND, 99, 1000), Hold("t", HOLD_TOKENS, 42, 1000)])
    assert quota.reserved_tokens(held) == 42
    assert quota.reserved_tokens(Reservation(holds=[Hold("s", HOLD_SPEND, 99, 1000)])) == 0
    assert quota.reserved_tokens(None) == 0


def test_a_task_cut_short_bills_what_was_asked_unless_the_upstream_said() -> None:
    progress = CallProgress()
    image = ImageRequest(model="m", prompt="p", n=2, size="1024x1024", quality="hd")
    got = usage.task_cut_short(image, progress, "dall-e-3")
    assert got is not None and got[0].units == 2 and got[1] == Cost(units=2 * 80_000_000_000)
    speech = SpeechRequest(model="m", input="twelve chars", voice="v")
    got = usage.task_cut_short(speech, progress, "tts-1")
    assert got is not None and (got[0].units, got[0].unit, got[1].total) == (12, "character", 12 * 15_000_000)
    # An audio length nobody read is not guessed into a bill.
    got = usage.task_cut_short(TranscriptionRequest(model="m", audio=AUDIO), progress, "whisper-1")
    assert got is not None and got[1].total == 0
    got = usage.task_cut_short(TranscriptionRequest(model="m", audio=AUDIO, duration_ms=2000), progress, "whisper-1")
    assert got is not None and got[1].total == 2000 * 100_000
    # What the upstream reported wins.
    progress.reported = Usage(units=1, unit="image")
    got = usage.task_cut_short(image, progress, "dall-e-3")
    assert got is not None and got[1] == Cost(units=80_000_000_000)
