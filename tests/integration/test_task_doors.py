"""The front doors of images, audio, moderation and rerank, on one whole
gateway: an upload's key checked before its body, its files gone from the
media store when it ends (and when it is refused), each answer by its media
type (speech's audio as it comes, a transcript's text), an image's URL at
the address the caller reached, the same APIs on the bus and the WebSocket
where they are served there, and /openapi.json."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import nats.errors
import openai
import pytest
from websockets.asyncio.client import connect

from loadtest.mock_upstream import audio_files, images_shape
from schemas import subjects
from tests.stack import DEMO_KEY, TASK_MODELS, Stack

MAX_UPLOAD = 300_000
PNG = images_shape.png(16, 16)
BUS_AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        Path(tmp_path_factory.mktemp("task_doors")),
        timeout_s=10.0,
        extra_config=TASK_MODELS,
        gateway=f"max_upload_bytes = {MAX_UPLOAD}",
    ).start()
    yield s
    s.stop()


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20)


async def media_store_names(stack: Stack) -> list[str]:
    """What the media store holds now (uploads and images made), by name:
    the meta subjects the stream holds, in one request. (nats-py's
    ``ObjectStore.list`` waits forever when the meta it saw first is purged
    before its consumer starts, as an upload's delete does.)"""
    nc = await stack.connect("admin")
    try:
        prefix = f"$O.{subjects.OBJ_MEDIA}.M."
        info = await nc.jetstream().stream_info(f"OBJ_{subjects.OBJ_MEDIA}", subjects_filter=prefix + ">")
        held = info.state.subjects or {}
        return [base64.urlsafe_b64decode(subject.removeprefix(prefix)).decode() for subject in held]
    finally:
        await nc.close()


async def uploads_left(stack: Stack) -> list[str]:
    """The uploads still stored once their requests' deletes had time to
    run: each is deleted as its request ends, just after its answer is sent
    (the client can read the answer first), so gone within moments."""
    deadline = time.monotonic() + 5
    while (left := uploads_in(await media_store_names(stack))) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


def uploads_in(names: list[str]) -> list[str]:
    return [name for name in names if name.split("/")[1] == "upload"]


@pytest.mark.timeout(30)
async def test_an_upload_without_a_key_is_refused_before_its_body_is_sent(tasks: Stack) -> None:
    # The head promises 10 MB and only the first bytes come: the answer cannot wait for the rest.
    reader, writer = await asyncio.open_connection("127.0.0.1", tasks.layout.http_port)
    head = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: gw\r\n"
        b"content-type: multipart/form-data; boundary=xyz\r\ncontent-length: 10000000\r\n\r\n--xyz\r\n"
    )
    writer.write(head)
    await writer.drain()
    # The head and the body may come in separate reads: read the head, then the length it gives.
    head_seen = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(next(line for line in head_seen.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    assert head_seen.startswith(b"HTTP/1.1 401"), head_seen[:200]
    assert b'"missing_api_key"' in body


@pytest.mark.timeout(60)
async def test_an_image_edits_uploads_are_gone_from_the_store_when_it_ends(tasks: Stack) -> None:
    with client(tasks) as c:
        edited = await asyncio.to_thread(
            c.images.edit, model="demo-image", image=("cat.png", PNG, "image/png"), prompt="A hat [mock:chunks=2]"
        )
    assert edited.data and edited.data[0].b64_json
    assert base64.b64decode(edited.data[0].b64_json).startswith(images_shape.PNG_SIGNATURE)
    assert await uploads_left(tasks) == []


@pytest.mark.timeout(60)
async def test_uploads_past_max_upload_bytes_are_413_and_leave_nothing_stored(tasks: Stack) -> None:
    big = audio_files.wav("x " * 20_000)
    assert len(big) > MAX_UPLOAD
    with client(tasks) as c, pytest.raises(openai.APIStatusError) as refused:
        await asyncio.to_thread(c.audio.transcriptions.create, model="demo-transcribe", file=("a.wav", big))
    assert refused.value.status_code == 413 and "max_upload_bytes" in str(refused.value)
    assert await uploads_left(tasks) == []


@pytest.mark.timeout(60)
async def test_speech_comes_as_audio_and_a_text_transcript_as_text(tasks: Stack) -> None:
    with client(tasks) as c:
        with c.audio.speech.with_streaming_response.create(
            model="demo-speech", voice="alloy", input="Hello from the gateway.", response_format="wav"
        ) as speech:
            assert speech.headers["content-type"] == "audio/wav"
            assert "content-length" not in speech.headers  # relayed as it came, not held
            audio = b"".join(speech.iter_bytes())
        assert audio_files.read_own(audio) == "Hello from the gateway."
        text = c.audio.transcriptions.create(
            model="demo-transcribe", file=("hello.wav", io.BytesIO(audio)), response_format="text"
        )
    assert isinstance(text, str) and text.strip() == "Hello from the gateway."
    assert await uploads_left(tasks) == []


@pytest.mark.timeout(30)
def test_an_image_url_names_the_address_the_caller_reached(tasks: Stack) -> None:
    body = {"model": "demo-image", "prompt": "A cat", "response_format": "url"}
    auth = {"authorization": f"Bearer {DEMO_KEY}"}
    with httpx.Client(timeout=20) as http:
        direct = http.post(f"{tasks.base_url}/images/generations", json=body, headers={**auth, "host": "gw.test:8443"})
        assert direct.status_code == 200, direct.text
        url = direct.json()["data"][0]["url"]
        assert url.startswith("http://gw.test:8443/v1/images/content/")
        # From a proxy the ingress trusts (loopback, by default), the proxy's own view stands.
        proxied = {**auth, "x-forwarded-proto": "https", "x-forwarded-host": "api.example"}
        behind = http.post(f"{tasks.base_url}/images/generations", json=body, headers=proxied)
        assert behind.json()["data"][0]["url"].startswith("https://api.example/v1/images/content/")
        image = http.get(tasks.base_url.removesuffix("/v1") + url.removeprefix("http://gw.test:8443"))
    assert image.status_code == 200 and image.content.startswith(images_shape.PNG_SIGNATURE)
    # Served by URL, an image stays in the media store (until it ages out); what the store lists is real.
    assert any(name.split("/")[1] == "image" for name in asyncio.run(media_store_names(tasks)))


async def ask_bus(stack: Stack, api: str, body: dict) -> tuple[int, dict]:
    nc = await stack.connect()
    try:
        msg = await nc.request(
            subjects.in_client_api(api),
            json.dumps(body).encode(),
            timeout=15,
            headers=BUS_AUTH,
        )
    finally:
        await nc.close()
    assert msg.headers is not None
    return int(msg.headers["Sluice-Status"]), msgspec.json.decode(msg.data)


@pytest.mark.timeout(60)
async def test_moderation_rerank_and_images_on_the_bus(tasks: Stack) -> None:
    status, verdict = await ask_bus(tasks, "moderations", {"model": "demo-moderation", "input": "I will kill it"})
    assert status == 200 and verdict["results"][0]["flagged"] is True
    rerank = {"model": "demo-rerank", "query": "cats", "documents": ["dogs bark", "cats purr"], "top_n": 1}
    status, ranked = await ask_bus(tasks, "rerank", rerank)
    assert status == 200 and [r["index"] for r in ranked["results"]] == [1]
    status, made = await ask_bus(tasks, "images", {"model": "demo-image", "prompt": "A cat"})
    assert status == 200 and base64.b64decode(made["data"][0]["b64_json"]).startswith(images_shape.PNG_SIGNATURE)
    # A URL needs the gateway's public address, which this config does not set: refused before it is made.
    before = tasks.mock_stats()["requests"]
    status, error = await ask_bus(tasks, "images", {"model": "demo-image", "prompt": "A cat", "response_format": "url"})
    assert status == 400 and "b64_json" in error["error"]["message"]
    assert tasks.mock_stats()["requests"] == before
    # Uploads and speech are HTTP's alone: nothing listens for them on the bus.
    nc = await tasks.connect()
    try:
        for api in ("speech", "transcriptions", "image_edits"):
            with pytest.raises(nats.errors.NoRespondersError):
                await nc.request(subjects.in_client_api(api), b"{}", timeout=5, headers=BUS_AUTH)
    finally:
        await nc.close()


@pytest.mark.timeout(60)
async def test_images_moderation_and_speech_events_on_the_websocket(tasks: Stack) -> None:
    url = f"ws://127.0.0.1:{tasks.layout.http_port}/v1/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {DEMO_KEY}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        requests = {
            "img": ("images", {"model": "demo-image", "prompt": "A cat", "response_format": "url"}),
            "mod": ("moderations", {"model": "demo-moderation", "input": "hello"}),
            "raw": ("speech", {"model": "demo-speech", "voice": "alloy", "input": "Hi."}),
        }
        for rid, (api, body) in requests.items():
            await ws.send(json.dumps({"type": "request", "id": rid, "api": api, "body": body}))
        answers: dict[str, dict] = {}
        while len(answers) < len(requests):
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            answers[message["id"]] = message
        # Uploads are HTTP's alone: not an api a message may name.
        await ws.send(json.dumps({"type": "request", "id": "edit", "api": "image_edits", "body": {}}))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 20))
    image = answers["img"]
    assert image["status"] == 200, image
    assert image["body"]["data"][0]["url"].startswith(f"http://127.0.0.1:{tasks.layout.http_port}/v1/images/content/")
    assert answers["mod"]["status"] == 200 and answers["mod"]["body"]["results"][0]["flagged"] is False
    # Speech's raw audio is not JSON: over HTTP, or as events.
    assert answers["raw"]["status"] == 400 and "events" in answers["raw"]["body"]["error"]["message"]
    assert refused["type"] == "response" and refused["status"] == 400


@pytest.mark.timeout(30)
def test_openapi_lists_the_uploads_as_forms_and_speech_as_audio(tasks: Stack) -> None:
    doc = httpx.get(tasks.base_url.removesuffix("/v1") + "/openapi.json", timeout=10).json()
    for path in ("/v1/images/generations", "/v1/moderations", "/v1/rerank", "/v2/rerank"):
        assert "application/json" in doc["paths"][path]["post"]["requestBody"]["content"]
    for path in ("/v1/images/edits", "/v1/audio/transcriptions", "/v1/audio/translations"):
        form = doc["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        properties = doc["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]["properties"]
        assert any("binary" in json.dumps(p) for p in properties.values()), path
    assert "audio/*" in doc["paths"]["/v1/audio/speech"]["post"]["responses"]["200"]["content"]
    assert len({item["post"]["operationId"] for item in doc["paths"].values()}) == len(doc["paths"])
