"""The front doors for images, audio, moderation and rerank, in process:
``ingress.endpoint`` with a fake gateway, a fake object store and a
scripted bus session, serving rows of this module's own (a form row, a
speech row, a JSON row), so the door is tested apart from the rows.

What the door checks before it reads an upload, what it keeps and
deletes, what it publishes, and how each kind of answer goes out; the bus
and WebSocket doors' choice of rows; the OpenAPI document's form rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from ingress import api_bus, endpoint, multipart, public_url, ws_relay
from ingress.mailbox import Mailbox
from ingress.replies import DISCONNECTED
from ingress.uploads import Uploads, refs_of, refuse_refs
from schemas.chat import Delta, Usage
from schemas.control import ApiKey, Secret
from schemas.errors import GatewayError, InvalidRequest, RequestTooLarge, UpstreamError
from schemas.replies import Chunk, Failure, Final
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationRequest,
    SpeechRequest,
    SpeechResult,
    TranscriptionRequest,
    TranscriptResult,
)
from services.apis import openai_shapes, openapi
from services.apis.base import ClientApi, Form, Parsed, RequestView, bearer, decode_json
from services.bus import blobs
from services.forwarded import Proxies
from services.keys import hash_key

SECRET = "sk-task-unit-0123456789"
KEY = ApiKey(id="k1", tenant_id="acme", secrets=[Secret(hash_key(SECRET))])
WAIT = object()


# Rows of this module's own, in the shape the table's rows have.


class TextRenderer:
    """A transcript: JSON, or its text as the upstream wrote it."""

    def __init__(self, request: RequestView) -> None:
        self.r = request

    def error(self, f: Failure) -> bytes:
        return openai_shapes.error(f)

    def final(self, f: Final) -> bytes:
        result = f.task_result
        assert isinstance(result, TranscriptResult)
        task = self.r.parsed.task
        assert isinstance(task, TranscriptionRequest)
        if task.response_format == "text":
            return result.body.encode()
        return msgspec.json.encode({"text": result.text})

    def chunk(self, c: Chunk) -> bytes:
        return b"data: " + msgspec.json.encode({"type": "transcript.text.delta", "delta": c.delta.content}) + b"\n\n"

    def end(self, f: Final) -> bytes:
        return b'data: {"type":"transcript.text.done"}\n\n'

    def stream_error(self, f: Failure) -> bytes:
        return b"data: " + openai_shapes.error(f) + b"\n\n"

    def rate_headers(self, rate: Any) -> list[tuple[bytes, bytes]]:
        return []


class TranscriptForm(msgspec.Struct):
    file: bytes
    model: str


def parse_transcription_form(form: Form) -> Parsed:
    files = form.files.get("file", [])
    if len(files) != 1:
        raise InvalidRequest("'file' is required.")
    fmt = form.fields.get("response_format", ["json"])[0]
    stream = form.fields.get("stream", ["false"])[0] == "true"
    task = TranscriptionRequest(
        model=form.fields.get("model", [""])[0],
        audio=files[0],
        response_format=fmt,  # type: ignore[arg-type]
        stream=stream,
    )
    return Parsed(model=task.model, stream=stream, task=task)


def transcript_media(parsed: Parsed) -> bytes:
    task = parsed.task
    assert isinstance(task, TranscriptionRequest)
    return b"text/plain; charset=utf-8" if task.response_format == "text" else b"application/json"


def _no_json(raw: bytes) -> Parsed:
    raise InvalidRequest("A multipart/form-data upload.")


TRANSCRIBE = ClientApi(
    "transcriptions",
    "/v1/audio/transcriptions",
    _no_json,
    TextRenderer,
    openai_shapes.error,
    bearer,
    TranscriptForm,
    dict,
    "transcribe",
    parse_form=parse_transcription_form,
    media_type=transcript_media,
)


class SpeechBody(msgspec.Struct):
    model: str
    input: str
    voice: str


def parse_speech(raw: bytes) -> Parsed:
    body = decode_json(msgspec.json.Decoder(SpeechBody).decode, raw)
    # As the audio row has it: the audio goes out as it comes (bytes, by its media type, not events).
    task = SpeechRequest(model=body.model, input=body.input, voice=body.voice)
    return Parsed(model=body.model, stream=True, task=task)


class SpeechRenderer(TextRenderer):
    def final(self, f: Final) -> bytes:
        return b"not audio: the door writes the replies' bytes"


SPEECH = ClientApi(
    "speech",
    "/v1/audio/speech",
    parse_speech,
    SpeechRenderer,
    openai_shapes.error,
    bearer,
    SpeechBody,
    bytes,
    "speech",
    streams=False,
    media_type=lambda parsed: b"audio/mpeg",
)


class Hostile(msgspec.Struct):
    model: str
    name: str


def parse_hostile(raw: bytes) -> Parsed:
    """A row that wrongly lets a JSON body name a stored blob: the door must refuse it."""
    body = decode_json(msgspec.json.Decoder(Hostile).decode, raw)
    ref = BlobRef(name=body.name, size=1)
    return Parsed(model=body.model, task=TranscriptionRequest(model=body.model, audio=ref))


HOSTILE = ClientApi("transcriptions", "/v1/hostile", parse_hostile, TextRenderer, openai_shapes.error, bearer)


# A fake gateway, object store and bus session.


class FakeStore:
    """The object store: each blob's bytes by name, with put_stream's cap."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}
        self.deleted: list[str] = []

    async def put_stream(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = "",
        filename: str = "",
        max_bytes: int | None = None,
    ) -> BlobRef:
        blobs.bucket_of(name)  # a name of the gateway's form
        data = b""
        async for part in chunks:
            data += part
            if max_bytes is not None and len(data) > max_bytes:
                raise RequestTooLarge("too large")
        self.kept[name] = data
        return BlobRef(name=name, size=len(data), content_type=content_type, filename=filename)

    async def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.kept.pop(name, None)


class FakeGateway:
    def __init__(self, max_upload_bytes: int = 1000) -> None:
        self.keys = SimpleNamespace(by_hash={hash_key(SECRET): KEY})
        self.settings = SimpleNamespace(
            body_timeout_s=1.0,
            request_timeout_s=3.0,
            stream_idle_timeout_s=3.0,
            max_body_bytes=10_000,
            max_upload_bytes=max_upload_bytes,
        )
        self.blobs = FakeStore()
        self.rows: list[dict[str, Any]] = []
        self.people = SimpleNamespace(config=SimpleNamespace(base_url=""))
        self.nc = SimpleNamespace(max_payload=1 << 20)

    def record(self, request_id: str, received_ns: int, api: str, model: str, *args: Any, **kw: Any) -> None:
        self.rows.append({"api": api, "model": model, "reply": args[1], **kw})


class ScriptedSession:
    """A BusSession whose replies are a script."""

    made: list[ScriptedSession] = []
    script: list[Any] = []

    def __init__(self, gw: Any, api: str, model: str, stream: bool, received_ns: int, request_id: str, **kw: Any):
        self.gw, self.id, self.api, self.model, self.stream = gw, request_id, api, model, stream
        self.received_ns = received_ns
        self.created = 1
        self.queue: Mailbox[Any] = Mailbox()
        self.replies = list(ScriptedSession.script)
        self.published: dict[str, Any] | None = None
        self.cancelled = self.closed = False
        self.recorded: list[Any] = []
        self.quota = None
        self.key_id = self.tenant_id = ""
        # What the object store held when the request was published.
        self.stored_then: dict[str, bytes] = {}
        ScriptedSession.made.append(self)

    @property
    def id_header(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", self.id.encode())]

    async def publish(self, key_header: str | None, *args: Any, **kw: Any) -> None:
        self.published = {"key_header": key_header, **kw}
        self.stored_then = dict(self.gw.blobs.kept)

    def first_timeout(self) -> float:
        return 2.0

    def has_more(self) -> bool:
        return False

    async def next_reply(self, timeout_s: float) -> Any:
        if self.replies and self.replies[0] is not WAIT:
            return self.replies.pop(0)
        got = await self.queue.get(timeout_s)
        return None if got is DISCONNECTED else got

    async def collect(self) -> Any:
        return await self.next_reply(2.0)

    async def cancel(self) -> None:
        self.cancelled = True

    def record(self, reply: Any, ttft_ns: int = 0) -> None:
        self.recorded.append(reply)

    def close(self) -> None:
        self.closed = True


async def fake_read_form(scope: Any, receive: Any, store: Any, *, max_field_bytes: int, timeout_s: float) -> Form:
    """A form whose body is the test's: "name=value" lines, and "@field:filename" lines whose file is what follows."""
    raw = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise endpoint.ClientDisconnected
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    form = Form(fields={}, files={})
    for line in raw.split(b"\n"):
        if line.startswith(b"@"):
            head, data = line[1:].split(b" ", 1)
            field, filename = head.decode().split(":")

            async def parts(data: bytes = data) -> AsyncIterator[bytes]:
                for i in range(0, len(data), 4):
                    yield data[i : i + 4]

            ref = await store(field, filename, "audio/wav", parts())
            form.files.setdefault(field, []).append(ref)
        elif line:
            name, value = line.decode().split("=", 1)
            form.fields.setdefault(name, []).append(value)
    return form


@pytest.fixture(autouse=True)
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint, "BusSession", ScriptedSession)
    monkeypatch.setattr(api_bus, "BusSession", ScriptedSession)
    monkeypatch.setattr(multipart, "read_form", fake_read_form)
    ScriptedSession.made.clear()


async def call(
    gw: FakeGateway,
    api: ClientApi,
    body: bytes,
    replies: list[Any],
    *,
    key: str | None = SECRET,
    leave_after: int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Drive one request through ``endpoint.serve_api``: what was sent, and
    what the door asked of ``receive`` ("body", "disconnect")."""
    ScriptedSession.script = replies
    asked: list[str] = []
    left = asyncio.Event()
    parts = [body]

    async def receive() -> dict[str, Any]:
        if parts:
            asked.append("body")
            return {"type": "http.request", "body": parts.pop(), "more_body": False}
        await left.wait()
        asked.append("disconnect")
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        bodies = [m for m in sent if m["type"] == "http.response.body"]
        if leave_after is not None and len(bodies) >= leave_after:
            left.set()

    auth = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {
        "type": "http",
        "method": "POST",
        "path": api.path,
        "headers": [*auth, (b"host", b"gw.example:8080")],
        "sluice.received_ns": 1,
        "sluice.request_id": "req-1",
        "sluice.peer": ("192.0.2.7", "http"),
    }
    await asyncio.wait_for(endpoint.serve_api(gw, api, scope, receive, send), 5)  # type: ignore[arg-type]
    return sent, asked


def head(sent: list[dict[str, Any]]) -> tuple[int, dict[bytes, bytes]]:
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], dict(sent[0]["headers"])


def body_of(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent[1:])


def transcript_final(seq: int = 0, text: str = "hello", body: str = "") -> Final:
    return Final(
        id="req-1", seq=seq, model="whisper", usage=Usage(), task_result=TranscriptResult(text=text, body=body)
    )


AUDIO = b"@file:talk.wav RIFFxxxxWAVEdata\nmodel=whisper-1\n"


# The upload door.


async def test_an_upload_without_a_valid_key_is_refused_before_a_byte_of_it_is_read() -> None:
    for key in (None, "sk-wrong-0123456789"):
        gw = FakeGateway()
        sent, asked = await call(gw, TRANSCRIBE, AUDIO, [], key=key)
        status, headers = head(sent)
        assert status == 401 and headers[b"content-type"] == b"application/json"
        assert json.loads(body_of(sent))["error"]["type"] == "authentication_error"
        assert asked == [] and gw.blobs.kept == {} and ScriptedSession.made == []
        assert gw.rows[0]["api"] == "transcriptions" and gw.rows[0]["reply"].status == 401


async def test_an_upload_is_kept_under_the_callers_tenant_published_as_a_ref_and_deleted_when_it_ends() -> None:
    gw = FakeGateway()
    sent, _ = await call(gw, TRANSCRIBE, AUDIO, [transcript_final()])
    session = ScriptedSession.made[0]
    assert session.published is not None
    task = session.published["task"]
    assert isinstance(task, TranscriptionRequest) and task.model == "whisper-1"
    # Stored as it streamed in, under a name the door made: the key's tenant, kind "upload".
    assert blobs.tenant_of(task.audio.name) == "acme" and task.audio.name.split("/")[1] == "upload"
    assert task.audio.filename == "talk.wav" and task.audio.size == len(b"RIFFxxxxWAVEdata")
    assert session.stored_then == {task.audio.name: b"RIFFxxxxWAVEdata"}
    assert session.published["key_header"] == f"Bearer {SECRET}"
    assert (session.key_id, session.tenant_id) == ("k1", "acme")  # a row made at the door says whose
    status, headers = head(sent)
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert json.loads(body_of(sent)) == {"text": "hello"}
    # The request ended: its upload is gone.
    assert gw.blobs.kept == {} and gw.blobs.deleted == [task.audio.name] and session.closed


async def test_a_text_transcript_goes_out_as_the_renderer_writes_it_with_its_media_type() -> None:
    gw = FakeGateway()
    form = AUDIO + b"response_format=text\n"
    sent, _ = await call(gw, TRANSCRIBE, form, [transcript_final(body="hello there\n")])
    status, headers = head(sent)
    assert status == 200 and headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"content-length"] == b"12" and body_of(sent) == b"hello there\n"
    assert gw.blobs.kept == {}


async def test_a_streamed_transcript_is_server_sent_events() -> None:
    gw = FakeGateway()
    form = AUDIO + b"stream=true\n"
    chunk = Chunk(id="req-1", seq=0, delta=Delta(content="hel"))
    sent, _ = await call(gw, TRANSCRIBE, form, [chunk, transcript_final(1)])
    status, headers = head(sent)
    assert status == 200 and headers[b"content-type"].startswith(b"text/event-stream")
    assert b'"delta":"hel"' in body_of(sent) and body_of(sent).endswith(b'"transcript.text.done"}\n\n')
    assert gw.blobs.kept == {}


async def test_uploads_past_the_cap_in_all_are_413_and_nothing_is_left_stored() -> None:
    gw = FakeGateway(max_upload_bytes=20)
    # Each file fits; together they do not.
    form = b"@file:a.wav " + b"a" * 12 + b"\n@file:b.wav " + b"b" * 12 + b"\nmodel=m\n"
    sent, _ = await call(gw, TRANSCRIBE, form, [])
    status, _ = head(sent)
    error = json.loads(body_of(sent))["error"]
    assert status == 413 and "max_upload_bytes" in error["message"]
    assert gw.blobs.kept == {} and len(gw.blobs.deleted) == 1 and ScriptedSession.made == []


async def test_a_form_its_row_refuses_is_400_and_its_uploads_are_deleted() -> None:
    gw = FakeGateway()
    form = b"@file:a.wav aaaa\n@file:b.wav bbbb\nmodel=m\n"  # two files where one is taken
    sent, _ = await call(gw, TRANSCRIBE, form, [])
    assert head(sent)[0] == 400 and "'file' is required" in json.loads(body_of(sent))["error"]["message"]
    assert gw.blobs.kept == {} and len(gw.blobs.deleted) == 2
    assert gw.rows[0]["reply"].status == 400


async def test_an_upload_is_deleted_when_the_upstream_fails_too() -> None:
    gw = FakeGateway()
    failure = Failure.from_error("req-1", UpstreamError("The upstream failed."))
    sent, _ = await call(gw, TRANSCRIBE, AUDIO, [failure])
    assert head(sent)[0] == 502 and gw.blobs.kept == {} and len(gw.blobs.deleted) == 1


async def test_a_json_body_may_not_name_a_stored_blob() -> None:
    gw = FakeGateway()
    raw = json.dumps({"model": "m", "name": "other/upload/" + "x" * 24}).encode()
    sent, _ = await call(gw, HOSTILE, raw, [])
    assert head(sent)[0] == 400 and json.loads(body_of(sent))["error"]["code"] == "upload_required"
    assert ScriptedSession.made == []


# Speech: bytes as they come.


def audio_chunk(seq: int, data: bytes, deployment: str = "") -> Chunk:
    return Chunk(id="req-1", seq=seq, delta=Delta(), data=data, deployment=deployment)


def speech_final(seq: int, data: bytes = b"") -> Final:
    result = SpeechResult(content_type="audio/mpeg", bytes=7)
    return Final(id="req-1", seq=seq, model="tts", usage=Usage(), task_result=result, data=data)


SPEAK = json.dumps({"model": "tts-1", "input": "Hello.", "voice": "alloy"}).encode()


async def test_speech_streams_its_audio_as_it_comes() -> None:
    gw = FakeGateway()
    replies = [audio_chunk(0, b"ID3", "dep-1"), audio_chunk(1, b"abc"), speech_final(2, b"z")]
    sent, _ = await call(gw, SPEECH, SPEAK, replies)
    session = ScriptedSession.made[0]
    assert session.published is not None and isinstance(session.published["task"], SpeechRequest)
    status, headers = head(sent)
    assert status == 200 and headers[b"content-type"] == b"audio/mpeg" and b"content-length" not in headers
    assert headers[b"x-sluice-deployment"] == b"dep-1"
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [
        (b"ID3", True),
        (b"abc", True),
        (b"z", False),
    ]


async def test_speech_that_came_whole_goes_out_with_its_length_and_cost() -> None:
    gw = FakeGateway()
    sent, _ = await call(gw, SPEECH, SPEAK, [speech_final(0, b"ID3whole")])
    status, headers = head(sent)
    assert status == 200 and headers[b"content-length"] == b"8" and b"x-sluice-cost-pico-usd" in headers
    assert body_of(sent) == b"ID3whole"


async def test_speech_that_fails_before_its_audio_is_a_json_error() -> None:
    gw = FakeGateway()
    failure = Failure.from_error("req-1", UpstreamError("The upstream failed."))
    sent, _ = await call(gw, SPEECH, SPEAK, [failure])
    status, headers = head(sent)
    assert status == 502 and headers[b"content-type"] == b"application/json"
    assert json.loads(body_of(sent))["error"]["message"] == "The upstream failed."


async def test_speech_that_fails_after_its_first_bytes_is_cut_short() -> None:
    gw = FakeGateway()
    failure = Failure.from_error("req-1", UpstreamError("The upstream failed."), seq=1)
    sent, _ = await call(gw, SPEECH, SPEAK, [audio_chunk(0, b"ID3"), failure])
    assert head(sent)[0] == 200
    # No body message ends the response: the server closes the connection before its end.
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [(b"ID3", True)]
    assert ScriptedSession.made[0].recorded == [failure]


async def test_a_speech_listener_who_leaves_cancels_the_upstream_call() -> None:
    gw = FakeGateway()
    sent, asked = await call(gw, SPEECH, SPEAK, [audio_chunk(0, b"ID3"), WAIT], leave_after=1)
    assert asked == ["body", "disconnect"] and ScriptedSession.made[0].cancelled
    assert [m["body"] for m in sent[1:]] == [b"ID3"]


@pytest.mark.parametrize(
    ("media_type", "stream", "kind"),
    [
        (b"application/json", False, "json"),
        (b"application/json", True, "events"),  # chat's stream
        (b"text/event-stream", True, "events"),  # a streamed transcript, speech as events
        (b"text/event-stream", False, "events"),
        (b"audio/mpeg", True, "bytes"),  # speech, streamed as it comes
        (b"text/plain; charset=utf-8", False, "bytes"),  # a transcript's text
    ],
)
def test_an_answer_goes_out_by_its_media_type(media_type: bytes, stream: bool, kind: str) -> None:
    from ingress import http_relay

    assert http_relay.answer_kind(media_type, stream) == kind


# Uploads, in parts.


def test_refs_of_names_every_blob_a_task_carries() -> None:
    a, b, m = (BlobRef(name=f"acme/upload/{c * 24}", size=1) for c in "abm")
    assert refs_of(ImageRequest(model="x", prompt="p", images=[a, b], mask=m)) == [a, b, m]
    assert refs_of(TranscriptionRequest(model="x", audio=a)) == [a]
    assert refs_of(ModerationRequest(model="x", input="hi")) == [] and refs_of(None) == []
    refuse_refs(ImageRequest(model="x", prompt="p"))
    with pytest.raises(InvalidRequest):
        refuse_refs(ImageRequest(model="x", prompt="p", mask=m))


async def test_a_task_may_name_only_what_its_request_uploaded() -> None:
    uploads = Uploads(FakeStore(), 100)
    uploads.tenant_id = "acme"

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    ref = await uploads.store("file", 'a"\r\nb.wav', "audio/wav", one(b"abc"))
    assert ref.filename == "ab.wav"  # no quote or line break goes on to an upstream's multipart header
    uploads.check(TranscriptionRequest(model="x", audio=ref))
    with pytest.raises(GatewayError):
        uploads.check(TranscriptionRequest(model="x", audio=BlobRef(name="other/upload/" + "y" * 24, size=1)))


async def test_nothing_is_kept_before_the_callers_key_was_checked() -> None:
    async def one() -> AsyncIterator[bytes]:
        yield b"x"

    store = FakeStore()
    with pytest.raises(GatewayError):
        await Uploads(store, 100).store("file", "a.wav", "audio/wav", one())
    assert store.kept == {}


# The address in an image's URL.


def scope_of(headers: list[tuple[bytes, bytes]], peer: str, scheme: str = "http") -> dict[str, Any]:
    return {"headers": headers, "sluice.peer": (peer, scheme), "server": ("10.0.0.5", 8080)}


def test_public_base_is_the_host_asked_for_unless_a_trusted_proxy_says_otherwise() -> None:
    proxies = Proxies("127.0.0.1")
    forwarded = [(b"host", b"gw.internal"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"api.example")]
    assert public_url.public_base(scope_of(forwarded, "127.0.0.1"), proxies) == "https://api.example"
    # Anyone else's forwarded headers are not believed.
    assert public_url.public_base(scope_of(forwarded, "192.0.2.1"), proxies) == "http://gw.internal"
    assert public_url.public_base(scope_of([(b"host", b"gw:1")], "192.0.2.1", "wss"), proxies) == "https://gw:1"
    # No Host, or one no host has: the server's own address.
    assert public_url.public_base(scope_of([], "192.0.2.1"), proxies) == "http://10.0.0.5:8080"
    bad = [(b"host", b"evil.example/<script>")]
    assert public_url.public_base(scope_of(bad, "192.0.2.1"), proxies) == "http://10.0.0.5:8080"


# The bus and the WebSocket.


def test_uploads_and_binary_answers_are_not_served_on_the_bus_or_the_websocket() -> None:
    for name, api in api_bus.ON_THE_BUS.items():
        assert api.parse_form is None and name in api_bus.BUS_APIS
    assert "speech" not in api_bus.ON_THE_BUS and "transcriptions" not in api_bus.ON_THE_BUS
    assert all(api.parse_form is None for api in ws_relay.BY_NAME.values())
    assert "image_edits" not in ws_relay.BY_NAME and "transcriptions" not in ws_relay.BY_NAME


class Msg(SimpleNamespace):
    pass


async def test_a_bus_request_for_an_answer_that_is_not_json_is_refused_before_it_is_published() -> None:
    bus = api_bus.ApiBus(FakeGateway())  # type: ignore[arg-type]
    msg = Msg(data=SPEAK, headers={"Authorization": f"Bearer {SECRET}"}, reply="_INBOX.x")
    status, body = await bus._answer(SPEECH, msg, "req-1", 1)  # type: ignore[arg-type]
    assert status == 400 and "over HTTP at /v1/audio/speech" in json.loads(body)["error"]["message"]
    assert ScriptedSession.made == []


class ImageBody(msgspec.Struct):
    model: str
    prompt: str
    response_format: str | None = None


def parse_image(raw: bytes) -> Parsed:
    body = decode_json(msgspec.json.Decoder(ImageBody).decode, raw)
    task = ImageRequest(model=body.model, prompt=body.prompt, response_format=body.response_format)  # type: ignore[arg-type]
    return Parsed(model=body.model, task=task)


IMAGES = ClientApi("images", "/v1/images/generations", parse_image, TextRenderer, openai_shapes.error, bearer)


async def test_a_bus_image_by_url_needs_the_gateways_public_address() -> None:
    gw = FakeGateway()
    bus = api_bus.ApiBus(gw)  # type: ignore[arg-type]
    raw = json.dumps({"model": "dall-e-2", "prompt": "a cat", "response_format": "url"}).encode()
    msg = Msg(data=raw, headers={"Authorization": f"Bearer {SECRET}"}, reply="_INBOX.x")
    status, body = await bus._answer(IMAGES, msg, "req-1", 1)  # type: ignore[arg-type]
    assert status == 400 and "b64_json" in json.loads(body)["error"]["message"]
    assert ScriptedSession.made == []
    # With the gateway's public address configured, it is published.
    gw.people.config.base_url = "https://api.example/"
    ScriptedSession.script = [Failure.from_error("req-1", UpstreamError("The upstream failed."))]
    status, _ = await bus._answer(IMAGES, msg, "req-1", 1)  # type: ignore[arg-type]
    assert status == 502 and ScriptedSession.made[0].published is not None


async def test_an_image_is_completed_at_the_door_and_on_the_bus_without_an_address_as_base64(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingress import image_content, task_answers
    from schemas.tasks import ImageOut, ImagesResult

    seen: list[tuple[str | None, str]] = []

    async def inline(gw: Any, final: Final, request: ImageRequest, public_base: str) -> None:
        seen.append((request.response_format, public_base))

    monkeypatch.setattr(image_content, "inline", inline)
    made = ImagesResult(images=[ImageOut(blob=BlobRef(name="acme/image/" + "i" * 24, size=3))])
    final = Final(id="req-1", seq=0, model="dall-e-2", usage=Usage(), task_result=made)
    unasked, by_url = (
        ImageRequest(model="dall-e-2", prompt="p"),
        ImageRequest(model="m", prompt="p", response_format="url"),
    )
    assert task_answers.finisher(FakeGateway(), ModerationRequest(model="m", input="x"), None) is None  # type: ignore[arg-type]
    for task, base in ((unasked, lambda: "http://gw:1"), (unasked, None), (by_url, lambda: "https://api.example")):
        finish = task_answers.finisher(FakeGateway(), task, base)  # type: ignore[arg-type]
        assert finish is not None
        await finish(final)
    assert seen == [(None, "http://gw:1"), ("b64_json", ""), ("url", "https://api.example")]
    assert unasked.response_format is None  # the published task is the caller's


class BigRenderer(TextRenderer):
    def final(self, f: Final) -> bytes:
        return b"x" * 5000


def parse_moderation(raw: bytes) -> Parsed:
    return Parsed(model="omni", task=ModerationRequest(model="omni", input=raw.decode()))


MODERATE = ClientApi("moderations", "/v1/moderations", parse_moderation, BigRenderer, openai_shapes.error, bearer)


async def test_a_bus_answer_larger_than_one_message_is_413_not_lost() -> None:
    gw = FakeGateway()
    gw.nc.max_payload = 8000
    bus = api_bus.ApiBus(gw)  # type: ignore[arg-type]
    ScriptedSession.script = [Final(id="req-1", seq=0, model="omni", usage=Usage())]
    msg = Msg(data=b"hi", headers={"Authorization": f"Bearer {SECRET}"}, reply="_INBOX.x")
    status, body = await bus._answer(MODERATE, msg, "req-1", 1)  # type: ignore[arg-type]
    assert status == 413 and "larger than one NATS message" in json.loads(body)["error"]["message"]
    # Its row is the answering stage's (it was served): none is made here.
    assert gw.rows == []
    gw.nc.max_payload = 10_000
    ScriptedSession.script = [Final(id="req-1", seq=0, model="omni", usage=Usage())]
    assert await bus._answer(MODERATE, msg, "req-1", 1) == (200, b"x" * 5000)  # type: ignore[arg-type]


# The OpenAPI document.


def test_openapi_describes_an_upload_as_multipart_with_files_and_each_answers_media_types() -> None:
    doc = openapi.document((TRANSCRIBE, SPEECH, HOSTILE), [])
    upload = doc["paths"]["/v1/audio/transcriptions"]["post"]
    schema = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    answers = upload["responses"]["200"]["content"]
    assert {"application/json", "text/plain", "text/event-stream"} <= set(answers)
    speech = doc["paths"]["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
    assert set(speech) == {"audio/*"} and speech["audio/*"]["schema"]["format"] == "binary"
    assert "application/json" in doc["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]
    # Operation ids are unique, also for two paths of one API.
    ids = [item["post"]["operationId"] for item in doc["paths"].values()]
    assert ids == ["transcriptions", "speech", "v1_hostile"]


def test_the_docs_page_names_an_uploads_body_type() -> None:
    from services.apis import docs_page

    page = docs_page.render(openapi.document((TRANSCRIBE, SPEECH), []), "http://127.0.0.1:8080")
    assert "multipart/form-data" in page and "<code>audio/*</code>" in page and "over HTTP only" in page
