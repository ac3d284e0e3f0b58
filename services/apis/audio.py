"""OpenAI's audio API: ``POST /v1/audio/transcriptions`` and
``/v1/audio/translations`` (multipart: the audio stored by the door as it
streamed in) and ``POST /v1/audio/speech`` (JSON), whatever provider
serves the model.

Each becomes a ``TranscriptionRequest`` or ``SpeechRequest``
(``Envelope.task``). A transcript comes back whole (``TranscriptResult``)
and is rendered in the request's ``response_format``, or, streamed, as
OpenAI's ``transcript.text.*`` events from ``Chunk.data`` (UTF-8 text).
Speech is always relayed as it comes (``Parsed.stream``): its audio is
``Chunk.data`` slices, passed on as they are, or as ``speech.audio.*``
events for ``stream_format: "sse"``. Every caller-supplied field is checked
here against what OpenAI's API reference allows.
"""

from __future__ import annotations

import math
import re
from typing import Literal, get_args

import msgspec

from schemas.errors import InvalidRequest
from schemas.replies import Chunk, Failure, Final
from schemas.reservation import RateState
from schemas.tasks import SpeechFormat, SpeechRequest, TranscriptFormat, TranscriptionRequest, TranscriptResult
from services import audio_formats
from services.apis import audio_shapes as shapes
from services.apis import openai_shapes, rate_headers
from services.apis.base import ClientApi, Form, Headers, Parsed, RequestView, bearer, decode_json

# OpenAI's limits (its API reference: CreateSpeechRequest, CreateTranscriptionRequest).
MAX_SPEECH_CHARS = 4096
MAX_INSTRUCTIONS_CHARS = 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0
# A transcription's prompt guides the model's style (whisper reads its last
# 224 tokens); a longer one only makes a large message.
MAX_PROMPT_CHARS = 4096
MAX_NAME_CHARS = 256
TRANSCRIPT_FORMATS: tuple[str, ...] = get_args(TranscriptFormat)
SPEECH_FORMATS: tuple[str, ...] = get_args(SpeechFormat)
# ISO-639-1 ("en"), or a tag with a region ("en-US") as some servers take.
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?")

TEXT_PLAIN = b"text/plain; charset=utf-8"
EVENT_STREAM = b"text/event-stream"

# The form's text fields: what each kind takes (each given once, but the lists).
TRANSCRIPTION_FIELDS = frozenset(
    {"model", "language", "prompt", "response_format", "temperature", "stream", "timestamp_granularities[]"}
)
# "stream" only to say why it is refused.
TRANSLATION_FIELDS = frozenset({"model", "prompt", "response_format", "temperature", "stream"})
_LISTS = frozenset({"timestamp_granularities[]"})
# OpenAI's, with no place in TranscriptionRequest: left out (``Parsed.dropped``).
_DROPPED = frozenset({"include[]", "chunking_strategy", "known_speaker_names[]", "known_speaker_references[]"})


class SpeechBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/audio/speech`` as the client sends it (OpenAI's
    CreateSpeechRequest has no other fields). ``voice`` is a built-in
    voice's name; a custom voice object is refused."""

    model: str
    input: str
    voice: str
    response_format: SpeechFormat | None = None
    speed: float | None = None
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] | None = None


_decode_speech = msgspec.json.Decoder(SpeechBody).decode


def parse_transcription(form: Form) -> Parsed:
    return _transcription(form, translate=False)


def parse_translation(form: Form) -> Parsed:
    return _transcription(form, translate=True)


def _transcription(form: Form, *, translate: bool) -> Parsed:
    for name in form.files:
        if name != "file":
            raise InvalidRequest(f"Unexpected file field {name[:64]!r}: the audio goes in 'file'.")
    files = form.files.get("file", [])
    if len(files) != 1:
        raise InvalidRequest("'file' is required: one audio file." if not files else "Give one 'file', not several.")
    allowed = TRANSLATION_FIELDS if translate else TRANSCRIPTION_FIELDS
    text, lists, dropped = _fields(form, allowed)
    if translate and text.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidRequest("Translations are not streamed: 'stream' is only for /v1/audio/transcriptions.")
    model = text.get("model", "")
    if not model.strip() or len(model) > MAX_NAME_CHARS:
        raise InvalidRequest("'model' is required: the name of a transcription model.")
    request = TranscriptionRequest(
        model=model,
        audio=files[0],
        translate=translate,
        language=_language(text.get("language")),
        prompt=_bounded("prompt", text.get("prompt"), MAX_PROMPT_CHARS),
        response_format=_one_of("response_format", text.get("response_format"), TRANSCRIPT_FORMATS),  # type: ignore[arg-type]
        temperature=_temperature(text.get("temperature")),
        timestamp_granularities=_granularities(lists.get("timestamp_granularities[]")),
        stream=not translate and _boolean("stream", text.get("stream")),
    )
    if request.stream and request.response_format not in (None, "json", "text"):
        raise InvalidRequest("A streamed transcription is answered as events: 'response_format' must be json or text.")
    return Parsed(model=model, stream=request.stream, task=request, dropped=dropped)


def _fields(form: Form, allowed: frozenset[str]) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """The form's text fields: those given once, the lists, and the names
    left out (OpenAI's that have no place here). Another name is a 400, as
    OpenAI answers an unknown parameter."""
    text: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    dropped: list[str] = []
    for name, values in form.fields.items():
        if name == "timestamp_granularities":  # as some clients write the list
            name = "timestamp_granularities[]"
        if name in _DROPPED:
            dropped.append(name)
        elif name not in allowed:
            raise InvalidRequest(f"Unrecognized request argument supplied: {name[:64]!r}.")
        elif name in _LISTS:
            lists.setdefault(name, []).extend(values)
        elif len(values) != 1:
            raise InvalidRequest(f"The form field {name!r} is given {len(values)} times; give it once.")
        else:
            text[name] = values[0]
    return text, lists, dropped


def _one_of(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(allowed)}; got {value[:32]!r}.")
    return value


def _bounded(name: str, value: str | None, most: int) -> str | None:
    if value is not None and len(value) > most:
        raise InvalidRequest(f"'{name}' is longer than {most} characters.")
    return value


def _language(value: str | None) -> str | None:
    if value is not None and not _LANGUAGE.fullmatch(value):
        raise InvalidRequest(f"'language' must be an ISO-639-1 code such as 'en'; got {value[:32]!r}.")
    return value


def _temperature(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value) if len(value) <= 32 else math.nan
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise InvalidRequest(f"'temperature' must be a number from 0 to 1; got {value[:32]!r}.")
    return number


def _granularities(values: list[str] | None) -> list[Literal["word", "segment"]] | None:
    if values is None:
        return None
    out: list[Literal["word", "segment"]] = []
    for value in values:
        if value == "word" or value == "segment":
            if value not in out:
                out.append(value)
        else:
            raise InvalidRequest(f"'timestamp_granularities[]' must be 'word' or 'segment'; got {value[:32]!r}.")
    return out


def _boolean(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidRequest(f"'{name}' must be true or false; got {value[:32]!r}.")


def parse_speech(raw: bytes) -> Parsed:
    body = decode_json(_decode_speech, raw)
    if not body.model.strip() or len(body.model) > MAX_NAME_CHARS:
        raise InvalidRequest("'model' is required: the name of a speech model.")
    if not body.input:
        raise InvalidRequest("'input' must not be empty.")
    if len(body.input) > MAX_SPEECH_CHARS:
        raise InvalidRequest(f"'input' is longer than {MAX_SPEECH_CHARS} characters ({len(body.input)}).")
    if not body.voice.strip() or len(body.voice) > MAX_NAME_CHARS:
        raise InvalidRequest("'voice' is required: the name of a voice, such as 'alloy'.")
    if body.speed is not None and not MIN_SPEED <= body.speed <= MAX_SPEED:
        raise InvalidRequest(f"'speed' must be from {MIN_SPEED} to {MAX_SPEED}; got {body.speed}.")
    _bounded("instructions", body.instructions, MAX_INSTRUCTIONS_CHARS)
    request = SpeechRequest(
        model=body.model,
        input=body.input,
        voice=body.voice,
        response_format=body.response_format,
        speed=body.speed,
        instructions=body.instructions,
        stream_format=body.stream_format,
    )
    # Audio goes to the caller as it comes, whichever stream_format.
    return Parsed(model=body.model, stream=True, task=request)


def transcription_media_type(parsed: Parsed) -> bytes:
    task = parsed.task
    if not isinstance(task, TranscriptionRequest):
        return b"application/json"
    if task.stream:
        return EVENT_STREAM
    if task.response_format in ("text", "srt"):
        return TEXT_PLAIN
    if task.response_format == "vtt":
        return b"text/vtt; charset=utf-8"
    return b"application/json"


def speech_media_type(parsed: Parsed) -> bytes:
    task = parsed.task
    if not isinstance(task, SpeechRequest):
        return b"application/octet-stream"
    if task.stream_format == "sse":
        return EVENT_STREAM
    return audio_formats.speech_content_type(task.response_format).encode()


class TranscriptionRenderer:
    def __init__(self, request: RequestView) -> None:
        self.r = request
        task = request.parsed.task
        self.task = task if isinstance(task, TranscriptionRequest) else None
        # The text streamed so far, for the done event when the Final has none.
        self.streamed: list[str] = []

    def error(self, f: Failure) -> bytes:
        return openai_shapes.error(f)

    def _result(self, f: Final) -> TranscriptResult:
        result = f.task_result
        return result if isinstance(result, TranscriptResult) else TranscriptResult(text="")

    def final(self, f: Final) -> bytes:
        task = self.task
        fmt = (task.response_format if task is not None else None) or "json"
        return shapes.transcript(self._result(f), fmt, f.usage, task is not None and task.translate)

    def chunk(self, c: Chunk) -> bytes:
        text = c.data.decode(errors="replace")
        self.streamed.append(text)
        return shapes.text_delta(text)

    def end(self, f: Final) -> bytes:
        text = self._result(f).text or "".join(self.streamed)
        return shapes.text_done(text, f.usage)

    def stream_error(self, f: Failure) -> bytes:
        return openai_shapes.sse_error(f.type, f.code, f.message)

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


class SpeechRenderer:
    """Raw audio (``stream_format`` audio: the bytes as they come) or
    OpenAI's ``speech.audio.delta`` / ``speech.audio.done`` events."""

    def __init__(self, request: RequestView) -> None:
        self.r = request
        task = request.parsed.task
        self.sse = isinstance(task, SpeechRequest) and task.stream_format == "sse"

    def error(self, f: Failure) -> bytes:
        return openai_shapes.error(f)

    def final(self, f: Final) -> bytes:
        """The whole answer at once (a caller that is not relayed the stream)."""
        return self.end(f)

    def chunk(self, c: Chunk) -> bytes:
        return shapes.audio_delta(c.data) if self.sse else c.data

    def end(self, f: Final) -> bytes:
        if not self.sse:
            return f.data
        return (shapes.audio_delta(f.data) if f.data else b"") + shapes.audio_done(f.usage)

    def stream_error(self, f: Failure) -> bytes:
        # Raw audio has no way to say it failed: the door ends the answer short.
        return openai_shapes.sse_error(f.type, f.code, f.message) if self.sse else b""

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


def _openai_error(f: Failure) -> bytes:
    return openai_shapes.error(f)


def _refuse_json(raw: bytes) -> Parsed:
    raise InvalidRequest("This endpoint takes multipart/form-data: the audio as 'file', the model as 'model'.")


TRANSCRIPTIONS = ClientApi(
    "transcriptions",
    "/v1/audio/transcriptions",
    _refuse_json,
    TranscriptionRenderer,
    _openai_error,
    bearer,
    shapes.TranscriptionForm,
    shapes.Transcription,
    "OpenAI speech to text: the audio's transcript",
    parse_form=parse_transcription,
    media_type=transcription_media_type,
)
TRANSLATIONS = ClientApi(
    "translations",
    "/v1/audio/translations",
    _refuse_json,
    TranscriptionRenderer,
    _openai_error,
    bearer,
    shapes.TranscriptionForm,
    shapes.Transcription,
    "OpenAI speech to English text",
    streams=False,
    parse_form=parse_translation,
    media_type=transcription_media_type,
)
SPEECH = ClientApi(
    "speech",
    "/v1/audio/speech",
    parse_speech,
    SpeechRenderer,
    _openai_error,
    bearer,
    SpeechBody,
    bytes,
    "OpenAI text to speech: the audio, streamed as it is made",
    media_type=speech_media_type,
)
APIS: tuple[ClientApi, ...] = (TRANSCRIPTIONS, TRANSLATIONS, SPEECH)
