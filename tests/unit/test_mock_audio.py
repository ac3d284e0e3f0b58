"""The mock's audio (``loadtest/mock_upstream/audio_shape.py``): speech as
real WAV/MP3 that carries its text, transcripts of its own audio in every
``response_format``, usage as whisper-1 and the gpt-4o models report it,
the faults; and the gateway's own audio call (``tasks.audio``) against it,
so the adapter and the mock agree on the shapes."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from loadtest.mock_upstream import audio_files
from loadtest.mock_upstream.app import MockUpstream
from schemas.envelope import Deployment
from schemas.rest import RestHead
from schemas.tasks import BlobRef, SpeechRequest, TranscriptionRequest, TranscriptResult
from services.providers.call import CallProgress
from services.providers.http import UpstreamHTTP
from services.providers.tasks import call_task

TEXT = "The mock speaks this sentence, then hears it back."


@pytest.fixture
def mock() -> MockUpstream:
    return MockUpstream()


def client_of(mock: MockUpstream) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock")


async def usages(client: httpx.AsyncClient, n: int = 10) -> list[Any]:
    return (await client.get("/mock/usage", params={"last": n})).json()


async def test_speech_is_a_wav_that_carries_its_text(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        r = await client.post(
            "/v1/audio/speech", json={"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "wav"}
        )
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(r.content)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16_000)
            assert w.getnframes() == 16 * audio_files.speech_ms(TEXT)
        assert audio_files.read_own(r.content) == TEXT
        assert await usages(client, 1) == [{"characters": len(TEXT)}]


async def test_speech_mp3_by_default(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        r = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "voice": "alloy"})
        assert r.headers["content-type"] == "audio/mpeg"
        assert r.content.startswith(b"ID3") and audio_files.read_own(r.content) == "Hi."
        assert audio_files.MP3_FRAME in r.content


async def test_speech_events_only_for_the_gpt_models(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        body = {"model": "tts-1", "input": "Hi.", "voice": "alloy", "stream_format": "sse"}
        assert (await client.post("/v1/audio/speech", json=body)).status_code == 400
        body["model"] = "gpt-4o-mini-tts"
        r = await client.post("/v1/audio/speech", json=body)
        assert r.headers["content-type"] == "text/event-stream"
        events = [json.loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: ")]
        assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
        assert events[-1]["type"] == "speech.audio.done"
        counted = (await usages(client, 1))[0]
        assert events[-1]["usage"]["input_tokens"] == counted["prompt_tokens"]
        assert events[-1]["usage"]["output_tokens"] == counted["completion_tokens"]


async def test_faults_from_the_speech_input(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        body = {"model": "tts-1", "input": "Hi [mock:status=503]", "voice": "alloy"}
        r = await client.post("/v1/audio/speech", json=body)
        assert r.status_code == 503 and "error" in r.json()


def upload(data: bytes, **fields: str) -> dict[str, Any]:
    return {"files": {"file": ("speech.wav", data, "audio/wav")}, "data": fields}


async def test_its_own_speech_transcribes_back(mock: MockUpstream) -> None:
    wav = audio_files.wav(TEXT)
    seconds = -(-audio_files.speech_ms(TEXT) // 1000)
    async with client_of(mock) as client:
        r = await client.post("/v1/audio/transcriptions", **upload(wav, model="whisper-1"))
        assert r.json() == {"text": TEXT, "usage": {"type": "duration", "seconds": seconds}}
        r = await client.post("/v1/audio/transcriptions", **upload(audio_files.mp3(TEXT), model="whisper-1"))
        assert r.json()["text"] == TEXT
        r = await client.post(
            "/v1/audio/translations", **upload(wav, model="whisper-1", response_format="verbose_json")
        )
        verbose = r.json()
        assert verbose["task"] == "translate" and verbose["text"] == TEXT
        assert verbose["duration"] == audio_files.speech_ms(TEXT) / 1000
        assert " ".join(s["text"].strip() for s in verbose["segments"]) == TEXT
        assert {"seek", "tokens", "avg_logprob", "no_speech_prob"} <= set(verbose["segments"][0])
        # The MP3 lasts whole 36 ms frames: a little longer than the WAV, its seconds rounded up.
        mp3_seconds = -(-(-(-audio_files.speech_ms(TEXT) // 36) * 36) // 1000)
        assert await usages(client, 3) == [{"seconds": seconds}, {"seconds": mp3_seconds}, {"seconds": seconds}]


@pytest.mark.parametrize(
    ("fmt", "starts", "content_type"),
    [("text", TEXT, "text/plain"), ("srt", "1\n00:00:00,000 --> ", "text/plain"), ("vtt", "WEBVTT\n\n", "text/vtt")],
)
async def test_text_formats(mock: MockUpstream, fmt: str, starts: str, content_type: str) -> None:
    async with client_of(mock) as client:
        r = await client.post(
            "/v1/audio/transcriptions", **upload(audio_files.wav(TEXT), model="whisper-1", response_format=fmt)
        )
        assert r.text.startswith(starts)
        assert r.headers["content-type"].startswith(content_type)


async def test_gpt_models_stream_and_bill_tokens(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        r = await client.post(
            "/v1/audio/transcriptions", **upload(audio_files.wav(TEXT), model="gpt-4o-transcribe", stream="true")
        )
        events = [json.loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: ")]
        assert "".join(e["delta"] for e in events[:-1]) == TEXT
        done = events[-1]
        assert done["type"] == "transcript.text.done" and done["text"] == TEXT
        counted = (await usages(client, 1))[0]
        assert done["usage"]["input_tokens"] == counted["prompt_tokens"]
        assert done["usage"]["output_tokens"] == counted["completion_tokens"]
        bad = upload(b"x", model="gpt-4o-transcribe", response_format="verbose_json")
        assert (await client.post("/v1/audio/transcriptions", **bad)).status_code == 400


async def test_other_audio_gets_a_deterministic_text(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        one = await client.post("/v1/audio/transcriptions", **upload(b"\x01" * 1000, model="whisper-1"))
        two = await client.post("/v1/audio/transcriptions", **upload(b"\x01" * 1000, model="whisper-1"))
        assert one.json() == two.json() and "1000 bytes" in one.json()["text"]


async def test_faults_from_the_prompt(mock: MockUpstream) -> None:
    async with client_of(mock) as client:
        r = await client.post("/v1/audio/transcriptions", **upload(b"x", model="whisper-1", prompt="[mock:status=429]"))
        assert r.status_code == 429


class Blobs:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        for at in range(0, len(self.data), 1000):
            yield self.data[at : at + 1000]

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        raise AssertionError


DEP = Deployment(name="d", provider="openai", base_url="http://mock/v1", upstream_model="tts-1", catalog_model="tts-1")


async def test_the_gateways_call_speaks_and_hears_through_the_mock(mock: MockUpstream) -> None:
    """Speech through ``tasks.audio``, then that audio transcribed through it: the shapes agree."""
    client = UpstreamHTTP(httpx.ASGITransport(mock))
    audio: list[bytes] = []

    async def on_body(head: RestHead | None, data: bytes) -> None:
        audio.append(data)

    task = SpeechRequest(model="s", input=TEXT, voice="alloy", response_format="wav")
    spoken = await call_task(client, DEP, task, CallProgress(), Blobs(b""), on_body, "t1")
    wav = b"".join(audio)
    assert audio_files.read_own(wav) == TEXT
    assert spoken.usage.units == len(TEXT)
    ref = BlobRef(name="t1/upload/x", size=len(wav), content_type="audio/wav", filename="s.wav")
    whisper = Deployment(
        name="w", provider="openai", base_url="http://mock/v1", upstream_model="whisper-1", catalog_model="whisper-1"
    )
    heard = await call_task(
        client, whisper, TranscriptionRequest(model="w", audio=ref), CallProgress(), Blobs(wav), on_body, "t1"
    )
    assert isinstance(heard.task_result, TranscriptResult) and heard.task_result.text == TEXT
    assert heard.usage.units == 1000 * -(-audio_files.speech_ms(TEXT) // 1000)
