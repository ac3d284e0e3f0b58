"""Audio end to end with the official ``openai`` SDK, against the mock
upstream through the whole gateway (one Stack for the module): speech made
and streamed back as the mock sends it, the mock's own speech transcribed
back to its text in every ``response_format``, translations, streamed
transcription events, a 5 MB upload, each row's units and cost exact
against the catalog and what the mock billed, and a chat model on an audio
endpoint refused naming the endpoint it serves."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from loadtest.mock_upstream import audio_files
from tests.stack import DEMO_KEY, TASK_MODELS, Stack

EXTRA = (
    TASK_MODELS
    + """
[[models]]
name = "transcribe-4o"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-transcribe"

[[models]]
name = "speech-mini"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini-tts"
"""
)
# The catalog's prices (services/catalog/models.toml), in pico-USD.
WHISPER_PER_MS = 100_000  # whisper-1: $0.006 a minute
TTS_PER_CHAR = 15_000_000  # tts-1: $15 a million characters
GPT4O_TRANSCRIBE = (6_000_000, 10_000_000)  # $6 in, $10 out a million tokens
MINI_TTS = (600_000, 12_000_000)  # $0.60 in, $12 out a million tokens
TEXT = "Sluice speaks this sentence and then hears it back."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("audio"), extra_config=EXTRA).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=30) as c:
        yield c


def billed(stack: Stack, last: int = 1) -> list[Any]:
    """What the mock billed for its last answers (``/mock/usage``), newest first."""
    return httpx.get(f"{stack.mock_url}/mock/usage", params={"last": last}).json()


@pytest.fixture(scope="module")
def spoken(client: openai.OpenAI) -> bytes:
    """The mock's speech of TEXT, as a WAV, through the gateway."""
    return client.audio.speech.create(model="demo-speech", voice="alloy", input=TEXT, response_format="wav").content


@pytest.mark.timeout(60)
def test_speech_is_a_wav_priced_per_character(stack: Stack, client: openai.OpenAI) -> None:
    raw = client.audio.speech.with_raw_response.create(
        model="demo-speech", voice="alloy", input=TEXT, response_format="wav"
    )
    assert raw.headers["content-type"] == "audio/wav"
    audio = raw.content
    with wave.open(io.BytesIO(audio)) as w:
        assert (w.getnchannels(), w.getframerate()) == (1, 16_000)
        assert w.getnframes() == 16 * audio_files.speech_ms(TEXT)
    assert audio_files.read_own(audio) == TEXT
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["api"] == "speech" and row["status"] == 200, row
    assert billed(stack) == [{"characters": len(TEXT)}]
    assert (row["units"], row["unit"]) == (len(TEXT), "character")
    assert row["cost_pico_usd"] == row["cost_units_pico_usd"] == len(TEXT) * TTS_PER_CHAR


@pytest.mark.timeout(60)
def test_speech_streams_as_the_mock_sends_it(stack: Stack, client: openai.OpenAI) -> None:
    # A long text, paced: the mock sends 32 KB slices 30 ms apart.
    text = "A longer speech, spoken slowly, so that it arrives in pieces. " * 8 + "[mock:chunk_ms=30]"
    pieces: list[bytes] = []
    with client.audio.speech.with_streaming_response.create(
        model="demo-speech", voice="alloy", input=text, response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["x-sluice-deployment"] == "demo-speech"  # told before the audio, with its first slice
        request_id = response.headers["x-request-id"]
        pieces = [piece for piece in response.iter_bytes() if piece]
    audio = b"".join(pieces)
    expected = audio_files.wav(text)
    assert audio == expected
    # The answer came in many reads, not whole at its end (the mock sent it in len/32 KB slices).
    assert len(pieces) >= len(expected) // (32 * 1024) // 2
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnframes() == 16 * audio_files.speech_ms(text)
    row = stack.request_row(request_id)
    assert row["units"] == len(text) and row["cost_pico_usd"] == len(text) * TTS_PER_CHAR


@pytest.mark.timeout(60)
def test_speech_default_is_mp3(client: openai.OpenAI) -> None:
    raw = client.audio.speech.with_raw_response.create(model="demo-speech", voice="nova", input="Hello.")
    assert raw.headers["content-type"] == "audio/mpeg"
    assert audio_files.read_own(raw.content) == "Hello."


@pytest.mark.timeout(60)
def test_speech_events_bill_tokens(stack: Stack, client: openai.OpenAI) -> None:
    raw = client.audio.speech.with_raw_response.create(
        model="speech-mini", voice="coral", input=TEXT, response_format="wav", stream_format="sse"
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in raw.text.split("\n\n") if line.startswith("data: ")]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio_files.read_own(audio) == TEXT
    [mock] = billed(stack)
    done = events[-1]
    assert done == {
        "type": "speech.audio.done",
        "usage": {
            "input_tokens": mock["prompt_tokens"],
            "output_tokens": mock["completion_tokens"],
            "total_tokens": mock["prompt_tokens"] + mock["completion_tokens"],
        },
    }
    row = stack.request_row(raw.headers["x-request-id"])
    assert (row["prompt_tokens"], row["completion_tokens"]) == (mock["prompt_tokens"], mock["completion_tokens"])
    assert row["units"] == len(TEXT)
    assert row["cost_pico_usd"] == mock["prompt_tokens"] * MINI_TTS[0] + mock["completion_tokens"] * MINI_TTS[1]


@pytest.mark.timeout(60)
def test_the_mocks_speech_transcribes_back_priced_per_minute(
    stack: Stack, client: openai.OpenAI, spoken: bytes
) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(
        model="demo-transcribe", file=("speech.wav", spoken, "audio/wav")
    )
    transcript = raw.parse()
    assert transcript.text == TEXT
    [mock] = billed(stack)
    assert mock == {"seconds": math.ceil(audio_files.speech_ms(TEXT) / 1000)}
    assert transcript.usage is not None and transcript.usage.seconds == mock["seconds"]
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["api"] == "transcriptions" and row["status"] == 200, row
    assert (row["units"], row["unit"]) == (mock["seconds"] * 1000, "audio_ms")
    assert row["cost_pico_usd"] == row["cost_units_pico_usd"] == mock["seconds"] * 1000 * WHISPER_PER_MS


@pytest.mark.timeout(60)
def test_every_response_format(client: openai.OpenAI, spoken: bytes) -> None:
    def transcribe(fmt: str, **options: Any) -> Any:
        return client.audio.transcriptions.create(
            model="demo-transcribe", file=("speech.wav", spoken, "audio/wav"), response_format=fmt, **options
        )

    assert transcribe("json").text == TEXT
    assert transcribe("text").strip() == TEXT
    srt = transcribe("srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and TEXT.split()[0] in srt
    vtt = transcribe("vtt")
    assert vtt.startswith("WEBVTT") and "-->" in vtt
    verbose = transcribe("verbose_json", timestamp_granularities=["word", "segment"])
    assert verbose.task == "transcribe" and verbose.language == "english" and verbose.text == TEXT
    assert verbose.duration == pytest.approx(audio_files.speech_ms(TEXT) / 1000)
    assert [w.word for w in verbose.words] == TEXT.split()
    assert " ".join(s.text.strip() for s in verbose.segments) == TEXT
    assert verbose.segments[-1].end == pytest.approx(verbose.duration, abs=0.01)
    # The mock's own figures for each segment, passed on as whisper-1 gives them.
    assert (verbose.segments[0].no_speech_prob, verbose.segments[0].avg_logprob) == (0.01, -0.25)
    assert verbose.segments[0].tokens == [50364]


@pytest.mark.timeout(60)
def test_translation(stack: Stack, client: openai.OpenAI, spoken: bytes) -> None:
    with pytest.warns(DeprecationWarning):  # the SDK marks translations deprecated; OpenAI still serves them
        raw = client.audio.translations.with_raw_response.create(
            model="demo-transcribe", file=("speech.wav", spoken, "audio/wav"), response_format="verbose_json"
        )
    answer = raw.parse()
    assert answer.text == TEXT and answer.language == "english"
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["api"] == "translations" and row["units"] == billed(stack)[0]["seconds"] * 1000


@pytest.mark.timeout(60)
def test_streamed_transcription_events_bill_tokens(stack: Stack, client: openai.OpenAI, spoken: bytes) -> None:
    stream = client.audio.transcriptions.create(
        model="transcribe-4o", file=("speech.wav", spoken, "audio/wav"), stream=True
    )
    events = list(stream)
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) == len(TEXT.split(" ")) and "".join(d.delta for d in deltas) == TEXT
    done = events[-1]
    assert done.type == "transcript.text.done" and done.text == TEXT
    [mock] = billed(stack)
    assert (done.usage.input_tokens, done.usage.output_tokens) == (mock["prompt_tokens"], mock["completion_tokens"])
    request_id = stream.response.headers["x-request-id"]
    row = stack.request_row(request_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (mock["prompt_tokens"], mock["completion_tokens"])
    expected = mock["prompt_tokens"] * GPT4O_TRANSCRIBE[0] + mock["completion_tokens"] * GPT4O_TRANSCRIBE[1]
    assert row["cost_pico_usd"] == expected and row["cost_units_pico_usd"] == 0


def recorded(seconds: float) -> bytes:
    """A WAV the mock did not make (16 kHz mono, a ramp so its bytes vary)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        size = int(seconds * 16_000) * 2
        w.writeframes((bytes(range(251)) * (size // 251 + 1))[:size])
    return out.getvalue()


@pytest.mark.timeout(90)
def test_a_5_mb_upload_reaches_the_upstream_whole(stack: Stack, client: openai.OpenAI) -> None:
    audio = recorded(164.0)  # 5.2 MB
    assert len(audio) > 5_000_000
    raw = client.audio.transcriptions.with_raw_response.create(
        model="demo-transcribe", file=("long.wav", audio, "audio/wav")
    )
    # The mock names the size and digest of what it heard: every byte arrived, in order.
    digest = hashlib.sha256(audio).hexdigest()[:12]
    assert raw.parse().text == f"The mock heard {len(audio)} bytes of audio, digest {digest}."
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["units"] == 164_000 and row["cost_pico_usd"] == 164_000 * WHISPER_PER_MS


@pytest.mark.timeout(60)
def test_a_chat_model_on_an_audio_endpoint_names_the_right_one(client: openai.OpenAI, spoken: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="demo-model", voice="alloy", input="Hello.")
    assert "/v1/chat/completions" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="demo-speech", file=("s.wav", spoken, "audio/wav"))
    assert "/v1/audio/speech" in caught.value.message


@pytest.mark.timeout(60)
def test_an_upstream_error_is_openais_shape(client: openai.OpenAI, spoken: bytes) -> None:
    with pytest.raises(openai.RateLimitError):
        client.audio.transcriptions.create(
            model="demo-transcribe", file=("s.wav", spoken, "audio/wav"), prompt="[mock:status=429]"
        )
    with pytest.raises(openai.BadRequestError, match="4096"):
        client.audio.speech.create(model="demo-speech", voice="alloy", input="x" * 4097)
