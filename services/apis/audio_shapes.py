"""OpenAI's audio answers as the caller gets them: a transcript in json or
verbose_json, the streamed transcript's and speech's events, and the
request forms for the OpenAPI document. Rendered from the gateway's own
``TranscriptResult`` and ``Usage``."""

from __future__ import annotations

import base64
from typing import Literal

import msgspec

from schemas.chat import Usage
from schemas.tasks import TranscriptFormat, TranscriptResult, TranscriptSegment, TranscriptWord

_json = msgspec.json.Encoder()


class DurationUsage(msgspec.Struct, tag="duration", tag_field="type"):
    """What a model billed by the length of its audio used (whisper-1)."""

    seconds: float


class TokenUsage(msgspec.Struct, tag="tokens", tag_field="type"):
    """What a model billed by tokens used (gpt-4o-transcribe; speech's done event)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class Transcription(msgspec.Struct, omit_defaults=True):
    """``response_format`` json."""

    text: str
    usage: DurationUsage | TokenUsage | None = None


class VerboseTranscription(msgspec.Struct, omit_defaults=True):
    """``response_format`` verbose_json (a translation's ``language`` is "english")."""

    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptSegment] | None = None
    words: list[TranscriptWord] | None = None
    usage: DurationUsage | None = None


class TextDelta(msgspec.Struct, tag="transcript.text.delta", tag_field="type"):
    delta: str


class TextDone(msgspec.Struct, tag="transcript.text.done", tag_field="type", omit_defaults=True):
    text: str
    usage: TokenUsage | DurationUsage | None = None


class AudioDelta(msgspec.Struct, tag="speech.audio.delta", tag_field="type"):
    audio: str


class AudioDone(msgspec.Struct, tag="speech.audio.done", tag_field="type"):
    usage: SpeechUsage


class TranscriptionForm(msgspec.Struct, omit_defaults=True):
    """``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``
    (multipart/form-data; ``file`` is the audio). A translation takes
    neither ``language``, ``timestamp_granularities[]`` nor ``stream``."""

    file: bytes
    model: str
    language: str | None = None
    prompt: str | None = None
    response_format: TranscriptFormat | None = None
    temperature: float | None = None
    timestamp_granularities: list[Literal["word", "segment"]] | None = msgspec.field(
        default=None, name="timestamp_granularities[]"
    )
    stream: bool | None = None


def usage(u: Usage) -> DurationUsage | TokenUsage | None:
    """The usage OpenAI reports for what the call billed: its tokens, else
    the seconds of audio heard."""
    if u.prompt_tokens or u.completion_tokens:
        return TokenUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
    if u.unit == "audio_ms":
        return DurationUsage(u.units / 1000)
    return None


def transcript(result: TranscriptResult, fmt: TranscriptFormat, u: Usage, translate: bool) -> bytes:
    """The answer in the request's ``response_format``: text, srt and vtt as
    the upstream wrote them; json and verbose_json rendered."""
    if fmt in ("text", "srt", "vtt"):
        return (result.body or result.text).encode()
    billed = usage(u)
    if fmt == "verbose_json":
        duration = result.duration_s if result.duration_s is not None else u.units / 1000
        return _json.encode(
            VerboseTranscription(
                task="translate" if translate else "transcribe",
                language=result.language or ("english" if translate else ""),
                duration=duration,
                text=result.text,
                segments=result.segments,
                words=result.words,
                usage=billed if isinstance(billed, DurationUsage) else None,
            )
        )
    return _json.encode(Transcription(result.text, billed))


def sse(event: msgspec.Struct) -> bytes:
    return b"data: " + _json.encode(event) + b"\n\n"


def text_delta(text: str) -> bytes:
    return sse(TextDelta(text))


def text_done(text: str, u: Usage) -> bytes:
    return sse(TextDone(text, usage(u)))


def audio_delta(data: bytes) -> bytes:
    return sse(AudioDelta(base64.b64encode(data).decode()))


def audio_done(u: Usage) -> bytes:
    return sse(AudioDone(SpeechUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens)))
