"""The audio rows of the API table (``services.apis.audio``): the forms and
the speech body checked as OpenAI's API reference allows, and the answers
rendered in OpenAI's shapes (every ``response_format``, the streamed
transcript's and speech's events, raw audio)."""

from __future__ import annotations

import base64

import msgspec
import pytest

from schemas.chat import Delta, Usage
from schemas.errors import InvalidRequest
from schemas.replies import Chunk, Failure, Final
from schemas.tasks import BlobRef, SpeechRequest, TranscriptionRequest, TranscriptResult, TranscriptSegment
from services.apis import audio
from services.apis.base import Form, RequestView
from services.apis.table import BY_PATH

REF = BlobRef(name="t1/upload/abc", size=1000, content_type="audio/wav", filename="a.wav")


def form(**fields: str | list[str]) -> Form:
    return Form(
        fields={k: v if isinstance(v, list) else [v] for k, v in fields.items()},
        files={"file": [REF]},
    )


def test_rows_are_in_the_table() -> None:
    assert BY_PATH["/v1/audio/transcriptions"].name == "transcriptions"
    assert BY_PATH["/v1/audio/translations"].name == "translations"
    assert BY_PATH["/v1/audio/speech"].name == "speech"
    assert BY_PATH["/v1/audio/transcriptions"].parse_form is not None
    assert BY_PATH["/v1/audio/speech"].parse_form is None


def test_transcription_form() -> None:
    parsed = audio.parse_transcription(
        form(
            model="whisper-1",
            language="en",
            prompt="Names: Ada.",
            response_format="verbose_json",
            temperature="0.3",
            **{"timestamp_granularities[]": ["word", "segment", "word"], "include[]": "logprobs"},
        )
    )
    task = parsed.task
    assert isinstance(task, TranscriptionRequest)
    assert parsed.model == "whisper-1" and not parsed.stream
    assert task.audio == REF and not task.translate
    assert (task.language, task.prompt, task.response_format, task.temperature) == (
        "en",
        "Names: Ada.",
        "verbose_json",
        0.3,
    )
    assert task.timestamp_granularities == ["word", "segment"]
    assert parsed.dropped == ["include[]"]


def test_streamed_transcription() -> None:
    parsed = audio.parse_transcription(form(model="gpt-4o-transcribe", stream="true"))
    assert parsed.stream
    assert isinstance(parsed.task, TranscriptionRequest) and parsed.task.stream


def test_translation_form() -> None:
    parsed = audio.parse_translation(form(model="whisper-1", response_format="srt"))
    assert isinstance(parsed.task, TranscriptionRequest) and parsed.task.translate


@pytest.mark.parametrize(
    ("files", "fields", "says"),
    [
        ({}, {"model": ["whisper-1"]}, "'file' is required"),
        ({"file": [REF, REF]}, {"model": ["whisper-1"]}, "one 'file'"),
        ({"file": [REF], "other": [REF]}, {"model": ["whisper-1"]}, "Unexpected file field"),
        ({"file": [REF]}, {}, "'model' is required"),
        ({"file": [REF]}, {"model": [" "]}, "'model' is required"),
        ({"file": [REF]}, {"model": ["a", "b"]}, "given 2 times"),
        ({"file": [REF]}, {"model": ["m"], "response_format": ["xml"]}, "'response_format' must be one of"),
        ({"file": [REF]}, {"model": ["m"], "temperature": ["2"]}, "'temperature'"),
        ({"file": [REF]}, {"model": ["m"], "temperature": ["nan"]}, "'temperature'"),
        ({"file": [REF]}, {"model": ["m"], "temperature": ["1" * 400]}, "'temperature'"),
        ({"file": [REF]}, {"model": ["m"], "language": ["english; drop"]}, "'language'"),
        ({"file": [REF]}, {"model": ["m"], "prompt": ["x" * 5000]}, "'prompt' is longer"),
        ({"file": [REF]}, {"model": ["m"], "stream": ["maybe"]}, "'stream' must be true or false"),
        ({"file": [REF]}, {"model": ["m"], "timestamp_granularities[]": ["char"]}, "'word' or 'segment'"),
        ({"file": [REF]}, {"model": ["m"], "stream": ["true"], "response_format": ["srt"]}, "json or text"),
        ({"file": [REF]}, {"model": ["m"], "evil": ["1"]}, "Unrecognized request argument"),
    ],
)
def test_bad_transcription_forms(files: dict, fields: dict, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        audio.parse_transcription(Form(fields=fields, files=files))


def test_a_translation_is_not_streamed_and_takes_no_language() -> None:
    with pytest.raises(InvalidRequest, match="not streamed"):
        audio.parse_translation(form(model="whisper-1", stream="true"))
    with pytest.raises(InvalidRequest, match="Unrecognized request argument"):
        audio.parse_translation(form(model="whisper-1", language="de"))


def test_a_json_body_on_a_form_row_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="multipart/form-data"):
        BY_PATH["/v1/audio/transcriptions"].parse(b'{"model": "whisper-1"}')


def speech(**body: object) -> bytes:
    return msgspec.json.encode({"model": "tts-1", "input": "Hello.", "voice": "alloy", **body})


def test_speech_body() -> None:
    parsed = audio.parse_speech(speech(response_format="wav", speed=1.25, instructions="Softly.", stream_format="sse"))
    task = parsed.task
    assert isinstance(task, SpeechRequest)
    assert parsed.stream  # audio is relayed as it comes, whatever the format
    assert (task.response_format, task.speed, task.instructions, task.stream_format) == ("wav", 1.25, "Softly.", "sse")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (speech(input=""), "'input' must not be empty"),
        (speech(input="x" * 4097), "longer than 4096"),
        (speech(speed=0.1), "'speed'"),
        (speech(speed=4.5), "'speed'"),
        (speech(voice={"id": "voice_1234"}), "voice"),
        (speech(voice=""), "'voice' is required"),
        (speech(response_format="ogg"), "response_format"),
        (speech(stream_format="chunks"), "stream_format"),
        (speech(instructions="y" * 4097), "'instructions' is longer"),
        (speech(model=""), "'model' is required"),
        (speech(extra=1), "extra"),
        (b"{not json", "parse the JSON"),
    ],
)
def test_bad_speech_bodies(body: bytes, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        audio.parse_speech(body)


def test_the_longest_speech_input_is_4096_characters() -> None:
    parsed = audio.parse_speech(speech(input="é" * 4096))
    assert isinstance(parsed.task, SpeechRequest) and len(parsed.task.input) == 4096


@pytest.mark.parametrize(
    ("fields", "media"),
    [
        ({}, b"application/json"),
        ({"response_format": "verbose_json"}, b"application/json"),
        ({"response_format": "text"}, b"text/plain; charset=utf-8"),
        ({"response_format": "srt"}, b"text/plain; charset=utf-8"),
        ({"response_format": "vtt"}, b"text/vtt; charset=utf-8"),
        ({"stream": "true"}, b"text/event-stream"),
    ],
)
def test_transcript_media_types(fields: dict[str, str], media: bytes) -> None:
    parsed = audio.parse_transcription(form(model="m", **fields))
    assert audio.TRANSCRIPTIONS.media_type(parsed) == media


@pytest.mark.parametrize(
    ("fmt", "media"),
    [(None, b"audio/mpeg"), ("mp3", b"audio/mpeg"), ("wav", b"audio/wav"), ("opus", b"audio/opus"),
     ("aac", b"audio/aac"), ("flac", b"audio/flac"), ("pcm", b"audio/pcm")],
)  # fmt: skip
def test_speech_media_types(fmt: str | None, media: bytes) -> None:
    parsed = audio.parse_speech(speech(response_format=fmt) if fmt else speech())
    assert audio.SPEECH.media_type(parsed) == media
    sse = audio.parse_speech(speech(stream_format="sse"))
    assert audio.SPEECH.media_type(sse) == b"text/event-stream"


def final(result: TranscriptResult | None, usage: Usage, data: bytes = b"") -> Final:
    return Final(id="r1", seq=1, model="m", usage=usage, task_result=result, data=data)


def renderer(api: object, parsed: object) -> object:
    return api.renderer(RequestView("r1", 1_700_000_000, "m", parsed))  # type: ignore[attr-defined]


WHISPER_USAGE = Usage(units=9000, unit="audio_ms")
TOKENS_USAGE = Usage(prompt_tokens=14, completion_tokens=45, units=4000, unit="audio_ms")


def test_json_transcript_reports_seconds_or_tokens() -> None:
    r = renderer(audio.TRANSCRIPTIONS, audio.parse_transcription(form(model="m")))
    body = msgspec.json.decode(r.final(final(TranscriptResult(text="Hi."), WHISPER_USAGE)))
    assert body == {"text": "Hi.", "usage": {"type": "duration", "seconds": 9.0}}
    body = msgspec.json.decode(r.final(final(TranscriptResult(text="Hi."), TOKENS_USAGE)))
    assert body == {
        "text": "Hi.",
        "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 45, "total_tokens": 59},
    }


def test_verbose_json_transcript() -> None:
    parsed = audio.parse_translation(form(model="m", response_format="verbose_json"))
    r = renderer(audio.TRANSLATIONS, parsed)
    result = TranscriptResult(
        text="Hi there.", duration_s=8.47, segments=[TranscriptSegment(0, 0.0, 3.3, " Hi there.")]
    )
    body = msgspec.json.decode(r.final(final(result, WHISPER_USAGE)))
    assert body == {
        "task": "translate",
        "language": "english",
        "duration": 8.47,
        "text": "Hi there.",
        "segments": [{"id": 0, "start": 0.0, "end": 3.3, "text": " Hi there."}],
        "usage": {"type": "duration", "seconds": 9.0},
    }
    whisper = TranscriptSegment(0, 0.0, 3.3, " Hi.", seek=0, tokens=[1, 2], temperature=0.0, no_speech_prob=0.01)
    body = msgspec.json.decode(r.final(final(TranscriptResult(text="Hi.", segments=[whisper]), WHISPER_USAGE)))
    assert body["segments"] == [
        {"id": 0, "start": 0.0, "end": 3.3, "text": " Hi.", "seek": 0, "tokens": [1, 2], "temperature": 0.0,
         "no_speech_prob": 0.01}
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_text_transcripts_go_as_the_upstream_wrote_them(fmt: str) -> None:
    r = renderer(audio.TRANSCRIPTIONS, audio.parse_transcription(form(model="m", response_format=fmt)))
    written = "1\n00:00:00,000 --> 00:00:01,000\nHi.\n\n"
    assert r.final(final(TranscriptResult(text="Hi.", body=written), WHISPER_USAGE)) == written.encode()


def events(data: bytes) -> list[dict]:
    return [msgspec.json.decode(line[6:]) for line in data.split(b"\n\n") if line.startswith(b"data: ")]


def test_streamed_transcript_events() -> None:
    r = renderer(audio.TRANSCRIPTIONS, audio.parse_transcription(form(model="m", stream="true")))
    out = r.chunk(Chunk(id="r1", seq=0, delta=Delta(), data="Hé".encode())) + r.chunk(
        Chunk(id="r1", seq=1, delta=Delta(), data=b" there.")
    )
    out += r.end(final(TranscriptResult(text="Hé there."), TOKENS_USAGE))
    assert events(out) == [
        {"type": "transcript.text.delta", "delta": "Hé"},
        {"type": "transcript.text.delta", "delta": " there."},
        {
            "type": "transcript.text.done",
            "text": "Hé there.",
            "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 45, "total_tokens": 59},
        },
    ]
    failure = Failure(id="r1", seq=2, status=502, type="upstream_error", code="upstream_error", message="cut")
    assert events(r.stream_error(failure)) == [
        {"error": {"message": "cut", "type": "upstream_error", "param": None, "code": "upstream_error"}}
    ]


def test_speech_audio_goes_as_it_came() -> None:
    r = renderer(audio.SPEECH, audio.parse_speech(speech()))
    assert r.chunk(Chunk(id="r1", seq=0, delta=Delta(), data=b"ID3\x04")) == b"ID3\x04"
    usage = Usage(units=6, unit="character")
    assert r.end(final(None, usage)) == b""
    assert r.end(final(None, usage, data=b"tail")) == b"tail"
    failure = Failure(id="r1", seq=2, status=502, type="upstream_error", code="upstream_error", message="cut")
    assert r.stream_error(failure) == b""  # nothing can be said inside audio: the answer ends short


def test_speech_events() -> None:
    r = renderer(audio.SPEECH, audio.parse_speech(speech(stream_format="sse")))
    out = r.chunk(Chunk(id="r1", seq=0, delta=Delta(), data=b"\x00\x01\x02"))
    out += r.end(final(None, Usage(prompt_tokens=14, completion_tokens=101, units=6, unit="character")))
    got = events(out)
    assert got[0] == {"type": "speech.audio.delta", "audio": base64.b64encode(b"\x00\x01\x02").decode()}
    assert got[1] == {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 14, "output_tokens": 101, "total_tokens": 115},
    }
