"""The mock's audio, in OpenAI's shapes (also at Azure's
``/openai/deployments/{d}/audio/...``):

* ``POST .../audio/speech`` answers real audio (``audio_files``: WAV, MP3,
  raw PCM; the other formats as WAV, the mock having no encoder for them)
  that carries the text it speaks, streamed in slices with a short pause
  between them (``chunk_ms``, 2 ms unless set); ``stream_format: "sse"`` as
  ``speech.audio.delta`` / ``speech.audio.done`` events, which tts-1 and
  tts-1-hd refuse, as OpenAI does;
* ``POST .../audio/transcriptions`` and ``.../translations`` read the
  multipart upload: the mock's own audio gives its text back, any other
  bytes a deterministic text; every ``response_format``; usage as
  whisper-1 reports it (``{"type": "duration", "seconds"}``, whole seconds
  rounded up) or, for the gpt-4o models, as tokens; ``stream=true`` as
  ``transcript.text.*`` events for the gpt-4o models (whisper-1 answers
  whole, as OpenAI's does); verbose_json only for whisper-1.

The chat faults apply (``[mock:status=500]``, ``latency_ms``, ``hang``,
``chunk_ms``, ``cut_after``) from the speech input or the transcription's
prompt. What each answer bills goes to ``/mock/usage``: ``{"characters"}``
(and the tokens an SSE answer reports) for speech, ``{"seconds"}`` or
``{"prompt_tokens", "completion_tokens"}`` for a transcript.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
from types import SimpleNamespace
from typing import Any

import msgspec

from loadtest.mock_upstream import audio_files, openai_shape
from loadtest.mock_upstream.faults import Behaviour, apply_directives

SHAPE = SimpleNamespace(error=openai_shape.error)
_json = msgspec.json.Encoder()
SLICE = 32 * 1024
PAUSE_MS = 2
SPEECH_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}
TEXT_TYPES = {"text": b"text/plain; charset=utf-8", "srt": b"text/plain; charset=utf-8", "vtt": b"text/vtt"}
_PARAM = re.compile(rb'(\w+)="([^"]*)"')
WORDS_PER_SEGMENT = 8


def handles(path: str) -> bool:
    """Whether this shape answers path."""
    return path.endswith(("/audio/speech", "/audio/transcriptions", "/audio/translations"))


async def handle(mock: Any, behaviour: Behaviour, path: str, scope: dict, raw: bytes, send: Any) -> None:
    """Answer the request (raw: its whole body) through mock._send."""
    if path.endswith("/audio/speech"):
        return await _speech(mock, behaviour, raw, send)
    fields, files = parse_form(raw, _header(scope, b"content-type"))
    if "file" not in files or not fields.get("model"):
        return await _bad_request(mock, send, "'file' and 'model' are required.")
    b = apply_directives(behaviour, fields.get("prompt", ""))
    if await mock._fault(SHAPE, b, send):
        return
    await _transcript(mock, b, fields, files["file"], path.endswith("/translations"), send)


def _header(scope: dict, name: bytes) -> bytes:
    return next((v for k, v in scope.get("headers", []) if k.lower() == name), b"")


async def _bad_request(mock: Any, send: Any, message: str) -> None:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    await mock._send(send, 400, _json.encode(body))


def parse_form(raw: bytes, content_type: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """A multipart/form-data body: its text fields (the last of a repeated
    name, a list's joined by commas) and its files."""
    boundary = content_type.partition(b"boundary=")[2].split(b";")[0].strip().strip(b'"')
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if not boundary:
        return fields, files
    for part in raw.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        params = dict(_PARAM.findall(head))
        name = params.get(b"name", b"").decode()
        body = body.removesuffix(b"\r\n")
        if b"filename" in params:
            files[name] = body
        elif name.endswith("[]") and name in fields:
            fields[name] += "," + body.decode()
        else:
            fields[name] = body.decode()
    return fields, files


async def _speech(mock: Any, behaviour: Behaviour, raw: bytes, send: Any) -> None:
    try:
        req = msgspec.json.decode(raw)
        text, model = req["input"], req["model"]
        if not isinstance(text, str) or not text or not isinstance(req["voice"], str):
            raise ValueError("input and voice must be strings")
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        return await _bad_request(mock, send, f"Invalid speech request: {exc}")
    fmt = req.get("response_format") or "mp3"
    sse = req.get("stream_format") == "sse"
    if fmt not in SPEECH_TYPES:
        return await _bad_request(mock, send, f"Unsupported response_format {fmt!r}.")
    if sse and model.startswith("tts-1"):
        return await _bad_request(mock, send, f"stream_format 'sse' is not supported for {model}.")
    b = apply_directives(behaviour, text)
    if await mock._fault(SHAPE, b, send):
        return
    audio = audio_files.mp3(text) if fmt == "mp3" else audio_files.wav(text)
    if fmt == "pcm":
        audio = audio_files.pcm(audio_files.speech_ms(text))
    counted: dict[str, int] = {"characters": len(text)}
    if sse:
        counted |= {"prompt_tokens": math.ceil(len(text) / 4), "completion_tokens": audio_files.speech_ms(text) // 20}
    mock.usages.append(_json.encode(counted))
    if sse:
        done = {"prompt_tokens": counted["prompt_tokens"], "completion_tokens": counted["completion_tokens"]}
        await _paced(mock, b, send, b"text/event-stream", _speech_events(audio, done))
    else:
        await _paced(mock, b, send, SPEECH_TYPES[fmt], [audio[i : i + SLICE] for i in range(0, len(audio), SLICE)])


def _speech_events(audio: bytes, counted: dict[str, int]) -> list[bytes]:
    events = [
        _event({"type": "speech.audio.delta", "audio": base64.b64encode(audio[i : i + SLICE]).decode()})
        for i in range(0, len(audio), SLICE)
    ]
    i, o = counted["prompt_tokens"], counted["completion_tokens"]
    usage = {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}
    return [*events, _event({"type": "speech.audio.done", "usage": usage})]


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + _json.encode(data) + b"\n\n"


async def _paced(mock: Any, b: Behaviour, send: Any, content_type: bytes, pieces: list[bytes]) -> None:
    """The answer a piece at a time with a pause between (no content-length:
    chunked, as OpenAI streams audio); ``cut_after`` drops the connection."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    for n, piece in enumerate(pieces):
        if n == b.cut_after:
            raise ConnectionAbortedError  # uvicorn drops the connection mid-body
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep((b.chunk_ms or PAUSE_MS) / 1000)
    await send({"type": "http.response.body", "body": b""})
    mock.stats.completed_requests += 1


async def _transcript(
    mock: Any, b: Behaviour, fields: dict[str, str], audio: bytes, translate: bool, send: Any
) -> None:
    model = fields["model"]
    fmt = fields.get("response_format") or "json"
    gpt = model.startswith("gpt-")
    if fmt not in ("json", "text", "srt", "vtt", "verbose_json") or (gpt and fmt not in ("json", "text")):
        return await _bad_request(mock, send, f"response_format {fmt!r} is not compatible with {model}.")
    text = audio_files.read_own(audio) or audio_files.stranger_text(audio)
    duration = audio_files.duration_s(audio)
    if gpt:
        prompt_tokens = math.ceil(duration * 10) + len(fields.get("prompt", "")) // 4
        completion_tokens = max(1, math.ceil(len(text) / 4))
        counted: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        total = prompt_tokens + completion_tokens
        usage: dict[str, Any] = {
            "type": "tokens",
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "total_tokens": total,
            "input_token_details": {"audio_tokens": prompt_tokens, "text_tokens": 0},
        }
    else:
        seconds = math.ceil(duration)
        counted = {"seconds": seconds}
        usage = {"type": "duration", "seconds": seconds}
    streamed = gpt and not translate and fields.get("stream", "").lower() == "true"
    mock.usages.append(_json.encode(counted))
    if streamed:
        words = text.split(" ")
        deltas = [
            _event({"type": "transcript.text.delta", "delta": (" " if i else "") + w}) for i, w in enumerate(words)
        ]
        done = _event({"type": "transcript.text.done", "text": text, "usage": usage})
        return await _paced(mock, b, send, b"text/event-stream", [*deltas, done])
    if fmt in TEXT_TYPES:
        body = _as_text(text, duration, fmt)
        await mock._send(send, 200, body.encode(), [(b"content-type", TEXT_TYPES[fmt])])
    elif fmt == "verbose_json":
        await mock._send(send, 200, _json.encode(_verbose(text, duration, translate, fields, usage)))
    else:
        await mock._send(send, 200, _json.encode({"text": text, "usage": usage}))
    mock.stats.completed_requests += 1


def _segments(text: str, duration: float) -> list[tuple[float, float, str]]:
    """The text in runs of a few words, spread evenly over the audio."""
    words = text.split()
    runs = [" ".join(words[i : i + WORDS_PER_SEGMENT]) for i in range(0, len(words), WORDS_PER_SEGMENT)] or [""]
    step = duration / len(runs)
    return [(round(i * step, 3), round((i + 1) * step, 3), run) for i, run in enumerate(runs)]


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02}:{m:02}:{s:02}{sep}{ms:03}"


def _as_text(text: str, duration: float, fmt: str) -> str:
    if fmt == "text":
        return text + "\n"
    cues = [
        f"{_stamp(start, ',' if fmt == 'srt' else '.')} --> {_stamp(end, ',' if fmt == 'srt' else '.')}\n{run}\n"
        for start, end, run in _segments(text, duration)
    ]
    if fmt == "srt":
        return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(cues, 1))
    return "WEBVTT\n\n" + "\n".join(cues)


def _verbose(text: str, duration: float, translate: bool, fields: dict[str, str], usage: dict) -> dict[str, Any]:
    segments = [
        {
            "id": i,
            "seek": round(start * 100),
            "start": start,
            "end": end,
            "text": " " + run,
            "tokens": [50364 + i],
            "temperature": 0.0,
            "avg_logprob": -0.25,
            "compression_ratio": 1.2,
            "no_speech_prob": 0.01,
        }
        for i, (start, end, run) in enumerate(_segments(text, duration))
    ]
    answer: dict[str, Any] = {
        "task": "translate" if translate else "transcribe",
        "language": "english",
        "duration": duration,
        "text": text,
        "segments": segments,
        "usage": usage,
    }
    if "word" in fields.get("timestamp_granularities[]", "").split(","):
        words = text.split()
        step = duration / max(1, len(words))
        answer["words"] = [
            {"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)} for i, w in enumerate(words)
        ]
    return answer
