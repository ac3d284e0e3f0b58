"""OpenAI's audio API, and every server that copies it: transcriptions and
translations (a multipart upload), speech (a JSON request, audio bytes or
``speech.audio.*`` events back).

Azure OpenAI serves the same bodies at
``/openai/deployments/{deployment}/audio/...?api-version=`` with an
``api-key`` header; Groq and the other compatible servers under their own
``base_url``. The family's chat adapter already knows each one's URL and
auth (``OpenAIChat.url`` / ``headers``), so this module only adds the paths
and the bodies.

Pure translation, no I/O: the task call (``services.providers.tasks.audio``)
sends and reads.
"""

from __future__ import annotations

import base64
import binascii
import re

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import UpstreamError
from schemas.tasks import (
    SpeechRequest,
    TranscriptionRequest,
    TranscriptResult,
    TranscriptSegment,
    TranscriptWord,
)
from services.providers.openai.chat import OpenAIChat

# The families whose servers speak OpenAI's audio API.
AUDIO_FAMILIES = frozenset({"openai", "azure", "openai_compatible"})

_encode = msgspec.json.Encoder().encode


class OATranscriptUsage(msgspec.Struct):
    """``{"type": "duration", "seconds"}`` (whisper-1) or ``{"type":
    "tokens", "input_tokens", "output_tokens"}`` (gpt-4o-transcribe)."""

    type: str = ""
    seconds: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0


class OASegment(msgspec.Struct):
    # A number in verbose_json; some servers write a string ("seg_001").
    id: int | str = 0
    start: float = 0.0
    end: float = 0.0
    text: str = ""
    seek: int | None = None
    tokens: list[int] | None = None
    temperature: float | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None


class OAWord(msgspec.Struct):
    word: str = ""
    start: float = 0.0
    end: float = 0.0


class OATranscript(msgspec.Struct):
    """``json`` ({text, usage?}) and ``verbose_json`` ({task, language,
    duration, text, segments, words, usage?}) alike."""

    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[OASegment] | None = None
    words: list[OAWord] | None = None
    usage: OATranscriptUsage | None = None


class OATranscriptEvent(msgspec.Struct):
    """``transcript.text.delta`` {delta} or ``transcript.text.done`` {text, usage}."""

    type: str
    delta: str = ""
    text: str = ""
    usage: OATranscriptUsage | None = None


class OASpeechUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class OASpeechEvent(msgspec.Struct):
    """``speech.audio.delta`` {audio: base64} or ``speech.audio.done`` {usage}."""

    type: str
    audio: str = ""
    usage: OASpeechUsage | None = None


_decode_transcript = msgspec.json.Decoder(OATranscript).decode
_decode_transcript_event = msgspec.json.Decoder(OATranscriptEvent).decode
_decode_speech_event = msgspec.json.Decoder(OASpeechEvent).decode


def transcription_url(adapter: OpenAIChat, dep: Deployment, translate: bool) -> str:
    return adapter.url(dep, "/audio/translations" if translate else "/audio/transcriptions")


def speech_url(adapter: OpenAIChat, dep: Deployment) -> str:
    return adapter.url(dep, "/audio/speech")


def auth_headers(adapter: OpenAIChat, api_key: str | None) -> dict[str, str]:
    """The family's auth header(s) alone (the body's content type is the caller's to set)."""
    headers = adapter.headers(api_key)
    headers.pop("content-type", None)
    return headers


def transcription_fields(task: TranscriptionRequest, upstream_model: str) -> list[tuple[str, str]]:
    """The form's text fields, as the official SDK sends them (lists as
    ``name[]``, booleans as "true")."""
    fields = [("model", upstream_model)]
    if task.language is not None and not task.translate:
        fields.append(("language", task.language))
    if task.prompt is not None:
        fields.append(("prompt", task.prompt))
    if task.response_format is not None:
        fields.append(("response_format", task.response_format))
    if task.temperature is not None:
        fields.append(("temperature", repr(task.temperature)))
    if not task.translate:  # a translation takes neither (OpenAI's CreateTranslationRequest)
        fields += [("timestamp_granularities[]", g) for g in task.timestamp_granularities or ()]
        if task.stream:
            fields.append(("stream", "true"))
    return fields


def duration_usage(seconds: float) -> Usage:
    return Usage(units=max(0, round(seconds * 1000)), unit="audio_ms")


def usage_of(u: OATranscriptUsage | None, duration_s: float | None = None) -> Usage | None:
    """What the upstream said the call used: tokens, seconds of audio, or
    (verbose_json without usage) the audio's duration."""
    if u is not None and u.type == "duration" and u.seconds is not None:
        return duration_usage(u.seconds)
    # The streamed done event's usage has no "type" (OpenAI's own example).
    if u is not None and (u.type == "tokens" or (not u.type and (u.input_tokens or u.output_tokens))):
        return Usage(prompt_tokens=u.input_tokens, completion_tokens=u.output_tokens)
    if duration_s is not None:
        return duration_usage(duration_s)
    return None


def parse_transcript(data: bytes, task: TranscriptionRequest) -> tuple[TranscriptResult, Usage | None]:
    """A whole answer in the request's ``response_format``: JSON ones read,
    text, srt and vtt kept as the upstream wrote them (their words pulled
    out for ``text``)."""
    fmt = task.response_format or "json"
    if fmt in ("text", "srt", "vtt"):
        try:
            body = data.decode()
        except UnicodeDecodeError as exc:
            raise UpstreamError(f"Upstream sent a {fmt} transcript that is not UTF-8.") from exc
        return TranscriptResult(text=plain_text(body, fmt), body=body), None
    try:
        t = _decode_transcript(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamError(f"Upstream sent an unreadable transcript: {exc}") from exc
    result = TranscriptResult(
        text=t.text,
        language=t.language,
        duration_s=t.duration,
        segments=[_segment(i, s) for i, s in enumerate(t.segments)] if t.segments else None,
        words=[TranscriptWord(w.word, w.start, w.end) for w in t.words] if t.words else None,
    )
    return result, usage_of(t.usage, t.duration)


def _segment(index: int, s: OASegment) -> TranscriptSegment:
    return TranscriptSegment(
        id=s.id if isinstance(s.id, int) else index,
        start=s.start,
        end=s.end,
        text=s.text,
        seek=s.seek,
        tokens=s.tokens,
        temperature=s.temperature,
        avg_logprob=s.avg_logprob,
        compression_ratio=s.compression_ratio,
        no_speech_prob=s.no_speech_prob,
    )


_CUE_TIME = re.compile(r"^\s*(\d+:)?\d{2}:\d{2}[.,]\d{3}\s*-->")


def plain_text(body: str, fmt: str) -> str:
    """The words of a text, srt or vtt transcript: the cue numbers, times
    and the WebVTT header left out."""
    if fmt == "text":
        return body.strip()
    words = []
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped or stripped.isdigit() or _CUE_TIME.match(stripped) or stripped.startswith("WEBVTT"):
            continue
        words.append(stripped)
    return " ".join(words)


def transcript_event(data: str) -> OATranscriptEvent:
    try:
        return _decode_transcript_event(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamError(f"Upstream sent an unreadable transcript event: {exc}") from exc


def speech_body(task: SpeechRequest, upstream_model: str) -> bytes:
    body: dict[str, object] = {"model": upstream_model, "input": task.input, "voice": task.voice}
    for name in ("response_format", "speed", "instructions", "stream_format"):
        value = getattr(task, name)
        if value is not None:
            body[name] = value
    return _encode(body)


def speech_event(data: str) -> tuple[bytes, Usage | None, bool]:
    """A ``speech.audio.*`` event: its audio (a delta's), its usage and
    whether it is the last (the done event)."""
    try:
        event = _decode_speech_event(data)
        audio = base64.b64decode(event.audio, validate=True) if event.audio else b""
    except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error) as exc:
        raise UpstreamError(f"Upstream sent an unreadable speech event: {exc}") from exc
    u = event.usage
    usage = Usage(prompt_tokens=u.input_tokens, completion_tokens=u.output_tokens) if u is not None else None
    return audio, usage, event.type == "speech.audio.done"
