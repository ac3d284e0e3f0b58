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
from services.providers.tasks import rerank as rerank_call

AUDIO = BlobRef(name="t1/upload/abcdefghijklmnopqrstuvwx", size=480_000)
O200K = tokens.encoding("o200k_base")


def count(text: str) -> int:
    return tokens.count_text(text, O200K)


def test_images_reserve_n_at_the_dearest_quality_of_their_size_when_quality_is_unset() -> None:
    asked = ImageRequest(model="m", prompt="a red fox", n=3, size="1024x1024")
    # gpt-image-1 bills its prompt's tokens beside the images ($5 a million).
    prompt = count("a red fox") * 5_000_000
    assert task_usage.worst_case(asked, "gpt-image-1") == (count("a red fox"), 3 * 167_000_000_000 + prompt)
    # A quality named is its price; no size, the dearest of any size.
    low = ImageRequest(model="m", prompt="a red fox", n=2, size="1024x1024", quality="low")
    assert task_usage.worst_case(low, "gpt-image-1")[1] == 2 * 11_000_000_000 + prompt
    assert task_usage.worst_case(ImageRequest(model="m", prompt="x"), "gpt-image-1")[1] == 250_000_000_000 + 5_000_000
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
    assert task_usage.search_units(rerank, "rerank-v3.5") == 2
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
    # An audio length nobody read is its size at 32 kbit/s: 480,000 bytes, 120 s.
    got = usage.task_cut_short(TranscriptionRequest(model="m", audio=AUDIO), progress, "whisper-1")
    assert got is not None and got[0].units == 120_000 and got[1].total == 120_000 * 100_000
    got = usage.task_cut_short(TranscriptionRequest(model="m", audio=AUDIO, duration_ms=2000), progress, "whisper-1")
    assert got is not None and got[1].total == 2000 * 100_000
    # What the upstream reported wins.
    progress.reported = Usage(units=1, unit="image")
    got = usage.task_cut_short(image, progress, "dall-e-3")
    assert got is not None and got[1] == Cost(units=80_000_000_000)


def test_speech_priced_by_tokens_that_reports_none_bills_an_estimate_of_them() -> None:
    """gpt-4o-mini-tts answering raw audio says no usage: its texts' tokens in (instructions too), ten
    times its input's out, as reserved; never $0."""
    price = pricing.price_for("gpt-4o-mini-tts")
    assert price is not None
    speech = SpeechRequest(model="m", input="Hello there, friend.", voice="alloy", instructions="Speak warmly.")
    got = task_usage.speech_usage(speech, "gpt-4o-mini-tts")
    tokens_in, tokens_out = count("Hello there, friend.") + count("Speak warmly."), 10 * count("Hello there, friend.")
    assert got == Usage(
        prompt_tokens=tokens_in, completion_tokens=tokens_out, units=20, unit="character", source="estimated"
    )
    cost = usage.cost_of(got, "gpt-4o-mini-tts")
    assert cost.total == tokens_in * price.input + tokens_out * price.output > 0
    assert cost.total == task_usage.worst_case(speech, "gpt-4o-mini-tts")[1]
    # Cut short, or its provider gone: the same.
    cut = usage.task_cut_short(speech, CallProgress(), "gpt-4o-mini-tts")
    assert cut is not None and cut[1] == cost
    # A model priced per character bills its characters, counted.
    assert task_usage.speech_usage(speech, "tts-1") == Usage(units=20, unit="character", source="counted")


def test_a_transcription_priced_by_tokens_that_reports_none_bills_an_estimate_of_them() -> None:
    """gpt-4o-transcribe answering response_format text says no usage: its prompt and a token every 50 ms
    in, the transcript's tokens out; cut short, a token every 200 ms of audio out. Never past the reservation."""
    price = pricing.price_for("gpt-4o-transcribe")
    assert price is not None
    task = TranscriptionRequest(model="m", audio=AUDIO, prompt="names: Zoë")
    got = task_usage.transcription_usage(task, "gpt-4o-transcribe", 30_000, "Hello from the recording.")
    assert got == Usage(
        prompt_tokens=count("names: Zoë") + 600,
        completion_tokens=count("Hello from the recording."),
        units=30_000,
        unit="audio_ms",
        source="estimated",
    )
    assert usage.cost_of(got, "gpt-4o-transcribe").total > 0
    cut = usage.task_cut_short(task, CallProgress(), "gpt-4o-transcribe")
    assert cut is not None
    # 480,000 bytes of unknown audio at 32 kbit/s: 120 s, 2,400 tokens heard, 600 written.
    assert (cut[0].prompt_tokens, cut[0].completion_tokens) == (count("names: Zoë") + 2400, 600)
    assert 0 < cut[1].total <= task_usage.worst_case(task, "gpt-4o-transcribe")[1]
    # The model's output limit (2,000) caps what is written.
    long = task_usage.transcription_usage(task, "gpt-4o-transcribe", 3_600_000, None)
    assert long.completion_tokens == 2000


def test_rerank_reserves_the_search_units_its_long_documents_take() -> None:
    """Cohere counts a document of more than 500 tokens (query included) as several: a hundred documents of
    ~3,000 tokens are 7 search units, not 1. The reservation is what the call's estimate bills."""
    long_doc = "word " * 3000
    rerank = RerankRequest(model="m", query="which", documents=[long_doc] * 100)
    units = task_usage.search_units(rerank, "rerank-v3.5")
    assert units == 7
    assert task_usage.worst_case(rerank, "rerank-v3.5")[1] == units * 2_000_000_000
    estimate = rerank_call.estimate_usage(rerank, "rerank-v3.5", search_units=True)
    assert usage.cost_of(estimate, "rerank-v3.5").total == task_usage.worst_case(rerank, "rerank-v3.5")[1]
    # Cut to max_tokens_per_doc first: a short cap, a unit again.
    capped = RerankRequest(model="m", query="which", documents=[long_doc] * 100, max_tokens_per_doc=400)
    assert task_usage.search_units(capped, "rerank-v3.5") == 1
