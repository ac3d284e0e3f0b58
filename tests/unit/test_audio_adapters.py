"""Audio as an upstream: OpenAI's audio API (OpenAI, Azure OpenAI, Groq and
the other compatible servers) against answers in its API reference's
shapes (``tests/fixtures/openai/audio_*``), through the whole try
(``tasks.audio.call``) over httpx.MockTransport with an in-memory object
store: what the upstream is sent (the upload streamed into a multipart
body of the length it declares), what reaches the requester as it is read,
and what each call is billed."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import msgspec
import pytest
import python_multipart

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import InternalError, InvalidRequest, UpstreamError, UpstreamInvalidRequest, UpstreamRateLimited
from schemas.rest import RestHead
from schemas.tasks import BlobRef, SpeechRequest, SpeechResult, TranscriptionRequest, TranscriptResult
from services import pricing, tokens
from services import usage as usage_svc
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import UpstreamHTTP
from services.providers.tasks import call_task
from tests.adapters import fixture

WHISPER = Deployment(
    name="oa-whisper",
    provider="openai",
    base_url="https://api.openai.test/v1",
    upstream_model="whisper-1",
    api_key_env="AUDIO_TEST_KEY",
    catalog_model="whisper-1",
)
GPT4O = msgspec.structs.replace(
    WHISPER, name="oa-4o", upstream_model="gpt-4o-transcribe", catalog_model="gpt-4o-transcribe"
)
AZURE = Deployment(
    name="az-whisper",
    provider="azure",
    base_url="https://res.openai.azure.test",
    upstream_model="my-whisper",
    api_key_env="AUDIO_TEST_KEY",
    api_version="2024-06-01",
    catalog_model="whisper-1",
)
GROQ = Deployment(
    name="groq-whisper",
    provider="groq",
    base_url="https://api.groq.test/openai/v1",
    upstream_model="whisper-large-v3",
    api_key_env="AUDIO_TEST_KEY",
    catalog_model="groq/whisper-large-v3",
)
TTS = msgspec.structs.replace(WHISPER, name="oa-tts", upstream_model="tts-1", catalog_model="tts-1")
MINI_TTS = msgspec.structs.replace(
    WHISPER, name="oa-mtts", upstream_model="gpt-4o-mini-tts", catalog_model="gpt-4o-mini-tts"
)
CLAUDE = Deployment(name="claude", provider="anthropic", base_url="https://api.anthropic.test", upstream_model="c")

# The catalog's prices, in pico-USD (services/catalog/models.toml).
WHISPER_PER_MS = 100_000  # $0.006 a minute
TTS_PER_CHAR = 15_000_000  # $15 a million characters
GPT4O_TRANSCRIBE = (6_000_000, 10_000_000)  # $6 / $10 a million tokens
MINI_TTS_TOKENS = (600_000, 12_000_000)  # $0.60 / $12 a million tokens


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIO_TEST_KEY", "sk-audio")


def wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * 2))
    return out.getvalue()


class Blobs:
    """The object store, in memory: each blob read in small slices, as NATS serves it."""

    def __init__(self, blobs: dict[str, bytes], slice_bytes: int = 4096, lie_by: int = 0) -> None:
        self.blobs = blobs
        self.slice_bytes = slice_bytes
        # Bytes more (or fewer) than the ref says: a store gone wrong.
        self.lie_by = lie_by
        self.reads = 0

    async def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        self.reads += 1
        data = self.blobs[ref.name]
        data = data + bytes(self.lie_by) if self.lie_by > 0 else data[: len(data) + self.lie_by]
        for at in range(0, len(data), self.slice_bytes):
            yield data[at : at + self.slice_bytes]

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        raise AssertionError("an audio call writes nothing")


def upload(data: bytes, filename: str = "speech.wav", content_type: str = "audio/wav") -> tuple[BlobRef, Blobs]:
    ref = BlobRef(name="t1/upload/abc", size=len(data), content_type=content_type, filename=filename)
    return ref, Blobs({ref.name: data})


class Part(msgspec.Struct):
    headers: dict[str, str]
    data: bytes


def parts_of(request: httpx.Request) -> dict[str, Part]:
    """The multipart body as a server reads it (python-multipart), by field name."""
    boundary = request.headers["content-type"].partition("boundary=")[2].encode()
    out: dict[str, Part] = {}
    current: dict[str, object] = {}
    header = [b"", b""]

    def on_part_begin() -> None:
        current.clear()
        current.update(headers={}, data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        current["headers"][header[0].decode().lower()] = header[1].decode()  # type: ignore[index]
        header[0] = header[1] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current["data"] += data[start:end]  # type: ignore[operator]

    def on_part_end() -> None:
        headers: dict[str, str] = current["headers"]  # type: ignore[assignment]
        name = headers["content-disposition"].split('name="')[1].split('"')[0]
        out[name] = Part(headers, bytes(current["data"]))  # type: ignore[arg-type]

    parser = python_multipart.MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(request.content)
    parser.finalize()
    return out


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def answering(body: bytes | list[bytes], status: int = 200, content_type: str = "application/json") -> Handler:
    """An upstream that reads the whole request body, then answers ``body``
    (a list: streamed a piece at a time)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        if isinstance(body, list):

            async def pieces() -> AsyncIterator[bytes]:
                for piece in body:
                    yield piece

            return httpx.Response(status, headers={"content-type": content_type}, content=pieces())
        return httpx.Response(status, headers={"content-type": content_type}, content=body)

    return handler


class Run(msgspec.Struct):
    outcome: CallOutcome | None
    failed: CallFailed | None
    request: httpx.Request
    body: list[bytes]
    progress: CallProgress


async def run(
    dep: Deployment, task: TranscriptionRequest | SpeechRequest, handler: Handler, blobs: Blobs | None = None
) -> Run:
    seen: list[httpx.Request] = []
    body: list[bytes] = []
    progress = CallProgress()

    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await handler(request)

    async def on_body(head: RestHead | None, data: bytes) -> None:
        assert head is None
        body.append(data)

    client = UpstreamHTTP(httpx.MockTransport(recording))
    outcome = failed = None
    try:
        outcome = await call_task(client, dep, task, progress, blobs or Blobs({}), on_body, "t1")
    except CallFailed as exc:
        failed = exc
    return Run(outcome, failed, seen[0] if seen else httpx.Request("POST", "http://none"), body, progress)


def transcribe(ref: BlobRef, **fields: object) -> TranscriptionRequest:
    return TranscriptionRequest(model="my-model", audio=ref, **fields)  # type: ignore[arg-type]


async def test_openai_transcription_streams_the_upload_into_its_form() -> None:
    audio = wav_bytes(2.5)
    ref, blobs = upload(audio)
    task = transcribe(ref, response_format="verbose_json", language="en", prompt="Beach words.", temperature=0.2)
    task.timestamp_granularities = ["word", "segment"]
    r = await run(WHISPER, task, answering(fixture("openai/audio_transcription_verbose.json")), blobs)
    assert r.outcome is not None
    req = r.request
    assert str(req.url) == "https://api.openai.test/v1/audio/transcriptions"
    assert req.headers["authorization"] == "Bearer sk-audio"
    # A declared length, not a chunked body, and it is the body's true length.
    assert "transfer-encoding" not in req.headers
    assert int(req.headers["content-length"]) == len(req.content)
    parts = parts_of(req)
    assert parts["file"].data == audio
    assert 'filename="speech.wav"' in parts["file"].headers["content-disposition"]
    assert parts["file"].headers["content-type"] == "audio/wav"
    assert parts["model"].data == b"whisper-1"  # the deployment's model, not the caller's name for it
    assert parts["language"].data == b"en"
    assert parts["prompt"].data == b"Beach words."
    assert parts["response_format"].data == b"verbose_json"
    assert float(parts["temperature"].data) == 0.2
    assert "stream" not in parts
    result = r.outcome.task_result
    assert isinstance(result, TranscriptResult)
    assert result.text.startswith("The beach was a popular spot")
    assert result.language == "english"
    assert result.duration_s == pytest.approx(8.47)
    assert result.segments is not None and result.segments[0].end == pytest.approx(3.32)
    # Whisper's own figures pass on: a caller drops hallucinated segments by them.
    first = result.segments[0]
    assert (first.seek, first.temperature, first.tokens[:2]) == (0, 0.0, [50364, 440])  # type: ignore[index]
    assert (first.avg_logprob, first.compression_ratio) == (-0.2860786020755768, 1.2363636493682861)
    assert first.no_speech_prob == 0.00985979475080967
    assert result.words is not None and result.words[-1].word == "volleyball"
    # Billed as whisper-1 reports it: 9 whole seconds, not the 8.47 heard, nor our 2.5 s of WAV.
    assert r.outcome.usage == Usage(units=9000, unit="audio_ms")
    assert r.outcome.cost.units == 9000 * WHISPER_PER_MS
    assert r.outcome.cost.total == 9000 * WHISPER_PER_MS


async def test_granularities_go_as_a_list_field() -> None:
    ref, blobs = upload(wav_bytes(0.5))
    task = transcribe(ref, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    seen: list[list[bytes]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        seen.append([line for line in request.content.split(b"\r\n") if line in (b"word", b"segment")])
        names = request.content.count(b'name="timestamp_granularities[]"')
        assert names == 2
        return httpx.Response(200, content=fixture("openai/audio_transcription_verbose.json"))

    r = await run(WHISPER, task, handler, blobs)
    assert r.outcome is not None
    assert seen == [[b"word", b"segment"]]


async def test_azure_path_version_and_key_header() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    task = transcribe(ref, translate=True, language="de", stream=True)
    r = await run(AZURE, task, answering(b'{"text": "Hello.", "usage": {"type": "duration", "seconds": 1}}'), blobs)
    assert r.outcome is not None
    assert str(r.request.url) == (
        "https://res.openai.azure.test/openai/deployments/my-whisper/audio/translations?api-version=2024-06-01"
    )
    assert r.request.headers["api-key"] == "sk-audio"
    assert "authorization" not in r.request.headers
    parts = parts_of(r.request)
    # A translation takes neither a language nor a stream (OpenAI's CreateTranslationRequest).
    assert "language" not in parts and "stream" not in parts
    assert parts["model"].data == b"my-whisper"


async def test_groq_without_usage_is_billed_by_the_wav_header() -> None:
    """Groq's json answer has no usage: the length is read from the upload's own header."""
    ref, blobs = upload(wav_bytes(12.25))
    r = await run(
        GROQ, transcribe(ref, translate=True), answering(fixture("openai/audio_translation_groq.json")), blobs
    )
    assert r.outcome is not None
    assert str(r.request.url) == "https://api.groq.test/openai/v1/audio/translations"
    assert r.request.headers["authorization"] == "Bearer sk-audio"
    assert r.outcome.usage == Usage(units=12_250, unit="audio_ms", source="estimated")
    per_ms = pricing.unit_price("groq/whisper-large-v3", "audio_ms")
    assert per_ms is not None and per_ms > 0
    assert r.outcome.cost.total == 12_250 * per_ms
    assert isinstance(r.outcome.task_result, TranscriptResult)
    assert r.outcome.task_result.text == "Hello, this is a translation from Groq."


async def test_unreadable_audio_is_guessed_from_its_size_and_says_so() -> None:
    data = b"OggS" + bytes(80_000 - 4)  # Ogg: no header we read
    ref, blobs = upload(data, "voice.ogg", "audio/ogg")
    r = await run(
        WHISPER, transcribe(ref, response_format="text"), answering(b"hi\n", content_type="text/plain"), blobs
    )
    assert r.outcome is not None
    # 80,000 bytes at 32 kbit/s (audio_duration.UNKNOWN_KBPS): 20 s.
    assert r.outcome.usage == Usage(units=20_000, unit="audio_ms", source="estimated")


async def test_verbose_json_without_usage_bills_its_duration() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    answer = b'{"task": "transcribe", "language": "english", "duration": 3.25, "text": "Hi.", "segments": []}'
    r = await run(GROQ, transcribe(ref, response_format="verbose_json"), answering(answer), blobs)
    assert r.outcome is not None
    assert r.outcome.usage == Usage(units=3250, unit="audio_ms")


async def test_token_usage_bills_tokens_and_keeps_the_length() -> None:
    ref, blobs = upload(wav_bytes(4.0))
    r = await run(GPT4O, transcribe(ref), answering(fixture("openai/audio_transcription_tokens.json")), blobs)
    assert r.outcome is not None
    usage = r.outcome.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (14, 45)
    assert (usage.units, usage.unit) == (4000, "audio_ms")
    assert r.outcome.cost.total == 14 * GPT4O_TRANSCRIBE[0] + 45 * GPT4O_TRANSCRIBE[1]
    assert r.outcome.cost.units == 0


@pytest.mark.parametrize(
    ("fmt", "answer", "text"),
    [
        ("text", b"Plain words.\n", "Plain words."),
        ("srt", fixture("openai/audio_transcription.srt"), None),
        ("vtt", fixture("openai/audio_transcription.vtt"), None),
    ],
)
async def test_text_formats_pass_as_written(fmt: str, answer: bytes, text: str | None) -> None:
    ref, blobs = upload(wav_bytes(8.5))
    r = await run(WHISPER, transcribe(ref, response_format=fmt), answering(answer, content_type="text/plain"), blobs)
    assert r.outcome is not None
    result = r.outcome.task_result
    assert isinstance(result, TranscriptResult)
    assert result.body == answer.decode()
    expected = text or "The beach was a popular spot on a hot summer day. People were swimming in the ocean."
    assert result.text == expected
    # No usage in a text answer: the WAV's own length, measured.
    assert r.outcome.usage == Usage(units=8500, unit="audio_ms", source="estimated")


async def test_streamed_transcription_hands_each_delta_over() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    stream = fixture("openai/audio_transcription_stream.txt")
    pieces = [stream[i : i + 37] for i in range(0, len(stream), 37)]  # events cut across reads
    handler = answering(pieces, content_type="text/event-stream")
    r = await run(GPT4O, transcribe(ref, stream=True), handler, blobs)
    assert r.outcome is not None
    assert parts_of(r.request)["stream"].data == b"true"
    assert b"".join(r.body).decode() == "I see skies of blue."
    assert [b.decode() for b in r.body] == ["I", " see", " skies", " of blue."]
    result = r.outcome.task_result
    assert isinstance(result, TranscriptResult) and result.text == "I see skies of blue."
    assert (r.outcome.usage.prompt_tokens, r.outcome.usage.completion_tokens) == (14, 45)
    assert r.progress.first_byte_ns > 0


async def test_a_stream_asked_of_whisper_comes_whole_as_one_delta() -> None:
    """OpenAI ignores ``stream`` for whisper-1 and answers JSON: the caller still gets its events."""
    ref, blobs = upload(wav_bytes(1.0))
    answer = b'{"text": "Whole at once.", "usage": {"type": "duration", "seconds": 1}}'
    r = await run(WHISPER, transcribe(ref, stream=True), answering(answer), blobs)
    assert r.outcome is not None
    assert r.body == [b"Whole at once."]
    assert r.outcome.usage.units == 1000


async def test_a_long_text_goes_in_slices_that_each_decode() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    text = "é" * 40_000 + "ok"  # 80 KB of UTF-8: more than one slice
    answer = msgspec.json.encode({"text": text, "usage": {"type": "duration", "seconds": 1}})
    r = await run(WHISPER, transcribe(ref, stream=True), answering(answer), blobs)
    assert len(r.body) > 1 and all(len(b) <= 64 * 1024 for b in r.body)
    assert "".join(b.decode() for b in r.body) == text


async def test_a_stream_cut_before_its_end_is_not_tried_again() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    cut = b'data: {"type":"transcript.text.delta","delta":"I"}\n\n'
    r = await run(GPT4O, transcribe(ref, stream=True), answering([cut], content_type="text/event-stream"), blobs)
    assert r.failed is not None
    assert isinstance(r.failed.error, UpstreamError)
    assert r.body == [b"I"]
    assert r.failed.repeatable is False  # the caller has part of it: no second deployment may start over


async def test_upstream_errors_are_mapped_and_retryable_before_anything_went_out() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    r = await run(WHISPER, transcribe(ref), answering(fixture("openai/error_429.json"), status=429), blobs)
    assert r.failed is not None
    assert isinstance(r.failed.error, UpstreamRateLimited)
    assert r.failed.repeatable
    bad = b'{"error": {"message": "Invalid file format.", "type": "invalid_request_error", "code": null}}'
    r = await run(WHISPER, transcribe(ref), answering(bad, status=400), blobs)
    assert r.failed is not None
    assert isinstance(r.failed.error, UpstreamInvalidRequest)
    assert "Invalid file format" in r.failed.error.message


async def test_an_unreadable_answer_is_an_upstream_error() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    r = await run(WHISPER, transcribe(ref), answering(b"<html>busy</html>"), blobs)
    assert r.failed is not None
    assert isinstance(r.failed.error, UpstreamError)


async def test_a_stored_file_of_the_wrong_size_never_reaches_the_upstream_whole() -> None:
    """The body's declared length comes from the ref: a store that yields
    more or fewer bytes ends the call rather than send a body the upstream misreads."""
    audio = wav_bytes(1.0)
    ref = BlobRef(name="t1/upload/abc", size=len(audio), content_type="audio/wav", filename="a.wav")
    for lie in (100, -100):
        r = await run(WHISPER, transcribe(ref), answering(b'{"text": ""}'), Blobs({ref.name: audio}, lie_by=lie))
        assert r.failed is not None
        assert isinstance(r.failed.error, InternalError)
        assert not r.failed.repeatable  # the same stored file would fail the next deployment too


async def test_a_store_that_fails_mid_read_is_the_gateways_error_not_the_upstreams() -> None:
    class Broken(Blobs):
        async def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
            yield b"RIFF"
            raise TimeoutError("nats: timeout")

    audio = wav_bytes(1.0)
    ref, _ = upload(audio)
    r = await run(WHISPER, transcribe(ref), answering(b'{"text": ""}'), Broken({ref.name: audio}))
    assert r.failed is not None
    assert isinstance(r.failed.error, InternalError)
    assert "nats" not in r.failed.error.message  # the store's words stay in the gateway


async def test_the_length_a_cut_call_bills_is_kept_once_the_upload_went_out() -> None:
    ref, blobs = upload(wav_bytes(3.0))
    r = await run(WHISPER, transcribe(ref), answering(b"{}", status=500), blobs)
    assert r.failed is not None
    assert r.progress.sent
    assert r.progress.reported == Usage(units=3000, unit="audio_ms", source="estimated")


async def test_a_file_name_follows_the_content_type_when_the_caller_gave_none() -> None:
    data = wav_bytes(0.5)
    ref, blobs = upload(data, filename="", content_type="audio/mpeg")
    r = await run(WHISPER, transcribe(ref), answering(b'{"text": "x"}'), blobs)
    assert r.outcome is not None
    assert 'filename="audio.mp3"' in parts_of(r.request)["file"].headers["content-disposition"]


async def test_a_hostile_file_name_cannot_add_a_header_or_a_part() -> None:
    data = wav_bytes(0.5)
    ref, blobs = upload(data, filename='a.wav"\r\nContent-Type: text/html\r\n\r\nx', content_type="audio/wav")
    r = await run(WHISPER, transcribe(ref), answering(b'{"text": "x"}'), blobs)
    assert r.outcome is not None
    parts = parts_of(r.request)
    assert set(parts) == {"model", "file"}
    assert parts["file"].headers["content-type"] == "audio/wav"
    assert parts["file"].data == data


async def test_speech_audio_goes_on_as_it_is_read() -> None:
    audio = bytes(range(256)) * 1000  # 256 KB
    pieces = [audio[i : i + 100_000] for i in range(0, len(audio), 100_000)]
    task = SpeechRequest(model="my-tts", input="Hello there.", voice="alloy", response_format="wav", speed=1.5)
    r = await run(TTS, task, answering(pieces, content_type="audio/wav"))
    assert r.outcome is not None
    assert str(r.request.url) == "https://api.openai.test/v1/audio/speech"
    sent = msgspec.json.decode(r.request.content)
    assert sent == {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav", "speed": 1.5}
    assert b"".join(r.body) == audio
    assert max(len(b) for b in r.body) <= 64 * 1024  # each slice one small message
    assert r.outcome.task_result == SpeechResult(content_type="audio/wav", bytes=len(audio))
    assert r.outcome.usage == Usage(units=12, unit="character", source="counted")
    assert r.outcome.cost.total == 12 * TTS_PER_CHAR


async def test_speech_events_are_decoded_and_bill_tokens() -> None:
    chunks = [b"RIFF....", b"WAVEfmt ", b"data...."]
    events = [b'data: {"type":"speech.audio.delta","audio":"' + base64.b64encode(c) + b'"}\n\n' for c in chunks] + [
        b'data: {"type":"speech.audio.done","usage":{"input_tokens":14,"output_tokens":101,"total_tokens":115}}\n\n'
    ]
    task = SpeechRequest(
        model="m", input="The quick brown fox.", voice="coral", stream_format="sse", instructions="Calm."
    )
    r = await run(MINI_TTS, task, answering(events, content_type="text/event-stream"))
    assert r.outcome is not None
    sent = msgspec.json.decode(r.request.content)
    assert sent["stream_format"] == "sse" and sent["instructions"] == "Calm."
    assert r.body == chunks
    usage = r.outcome.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.units, usage.unit) == (14, 101, 20, "character")
    # gpt-4o-mini-tts is priced per token: the characters are on the row, the tokens bill.
    assert r.outcome.cost.total == 14 * MINI_TTS_TOKENS[0] + 101 * MINI_TTS_TOKENS[1]


async def test_speech_cut_mid_audio_is_not_tried_again_and_bills_its_characters() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        async def cut() -> AsyncIterator[bytes]:
            yield b"ID3 some audio"
            raise httpx.ReadError("connection reset")

        return httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=cut())

    r = await run(TTS, SpeechRequest(model="m", input="Hello.", voice="alloy"), handler)
    assert r.failed is not None
    assert r.body == [b"ID3 some audio"]
    assert not r.failed.repeatable
    assert r.progress.reported == Usage(units=6, unit="character", source="counted")


async def test_speech_events_without_their_end_are_an_error() -> None:
    event = b'data: {"type":"speech.audio.delta","audio":"' + base64.b64encode(b"abc") + b'"}\n\n'
    task = SpeechRequest(model="m", input="Hi.", voice="alloy", stream_format="sse")
    r = await run(MINI_TTS, task, answering([event], content_type="text/event-stream"))
    assert r.failed is not None and isinstance(r.failed.error, UpstreamError)
    bad = b'data: {"type":"speech.audio.delta","audio":"not base64!"}\n\n'
    r = await run(MINI_TTS, task, answering([bad], content_type="text/event-stream"))
    assert r.failed is not None and isinstance(r.failed.error, UpstreamError)
    assert r.failed.repeatable  # nothing reached the caller


async def test_a_provider_without_an_audio_api_is_refused() -> None:
    ref, blobs = upload(wav_bytes(1.0))
    r = await run(CLAUDE, transcribe(ref), answering(b"{}"), blobs)
    assert r.failed is not None
    assert isinstance(r.failed.error, InvalidRequest)
    assert "serves no audio" in r.failed.error.message
    assert blobs.reads == 0


O200K = tokens.encoding("o200k_base")


async def test_speech_priced_by_tokens_without_usage_bills_an_estimate_not_nothing() -> None:
    """gpt-4o-mini-tts answering raw audio says no usage: its input and instructions in, ten tokens out
    per input token (as reserved), marked estimated."""
    task = SpeechRequest(model="m", input="The quick brown fox.", voice="coral", instructions="Calm.")
    r = await run(MINI_TTS, task, answering([b"ID3 audio", b" more audio"], content_type="audio/mpeg"))
    assert r.outcome is not None
    spoken = tokens.count_text("The quick brown fox.", O200K)
    tokens_in = spoken + tokens.count_text("Calm.", O200K)
    assert r.outcome.usage == Usage(
        prompt_tokens=tokens_in, completion_tokens=10 * spoken, units=20, unit="character", source="estimated"
    )
    assert r.outcome.cost.total == tokens_in * MINI_TTS_TOKENS[0] + 10 * spoken * MINI_TTS_TOKENS[1] > 0


async def test_speech_priced_by_tokens_cut_short_bills_the_estimate() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        async def cut() -> AsyncIterator[bytes]:
            yield b"ID3 some audio"
            raise httpx.ReadError("connection reset")

        return httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=cut())

    task = SpeechRequest(model="m", input="Hello.", voice="alloy")
    r = await run(MINI_TTS, task, handler)
    assert r.failed is not None and r.progress.reported is not None
    billed = usage_svc.task_cut_short(task, r.progress, "gpt-4o-mini-tts")
    assert billed is not None and billed[0].source == "estimated" and billed[1].total > 0


async def test_a_transcription_priced_by_tokens_in_a_text_answer_bills_an_estimate() -> None:
    """gpt-4o-transcribe with response_format text: no usage; 4 s of WAV (80 tokens at one per 50 ms)
    in, the transcript's tokens out."""
    ref, blobs = upload(wav_bytes(4.0))
    answer = answering(b"Plain words, heard.\n", content_type="text/plain")
    r = await run(GPT4O, transcribe(ref, response_format="text"), answer, blobs)
    assert r.outcome is not None
    written = tokens.count_text("Plain words, heard.", O200K)
    assert r.outcome.usage == Usage(
        prompt_tokens=80, completion_tokens=written, units=4000, unit="audio_ms", source="estimated"
    )
    assert r.outcome.cost.total == 80 * GPT4O_TRANSCRIBE[0] + written * GPT4O_TRANSCRIBE[1] > 0


async def test_a_transcription_priced_by_tokens_cut_short_bills_the_audio_sent() -> None:
    ref, blobs = upload(wav_bytes(2.0))

    async def hangs_up(request: httpx.Request) -> httpx.Response:
        await request.aread()
        raise httpx.ReadError("connection reset")

    task = transcribe(ref, response_format="text")
    r = await run(GPT4O, task, hangs_up, blobs)
    assert r.failed is not None
    billed = usage_svc.task_cut_short(task, r.progress, "gpt-4o-transcribe")
    # 2 s: 40 tokens heard; 10 written (one per 200 ms).
    assert billed is not None and (billed[0].prompt_tokens, billed[0].completion_tokens) == (40, 10)
    assert billed[1].total == 40 * GPT4O_TRANSCRIBE[0] + 10 * GPT4O_TRANSCRIBE[1]
