"""Answers compressed as the client asks, against the running gateway: the
openai SDK reads a large answer and a stream in what it asks for (1.x sends
``Accept-Encoding: gzip, deflate``; the version here, on httpx2, adds
zstd, which the gateway prefers); httpx asks for zstd; a client that asks
for nothing gets the answer as it is."""

from __future__ import annotations

import zlib

import httpx
import openai
import pytest

from ingress.compression import zstd
from loadtest.mock_upstream.answer import vector
from tests.stack import DEMO_KEY, Stack

TEXTS = [f"text{i}" for i in range(100)]
EMBEDDINGS = {"model": "embed-model", "input": TEXTS, "dimensions": 1536, "encoding_format": "float"}


# What the SDK asks for: as 1.x does, and its own default here.
SDK_ASKS = pytest.mark.parametrize(("accept", "coding"), [("gzip, deflate", "gzip"), (None, "zstd")])


def _sdk(stack: Stack, accept: str | None) -> openai.OpenAI:
    headers = {"Accept-Encoding": accept} if accept is not None else None
    return openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=60, default_headers=headers)


@SDK_ASKS
def test_the_sdk_reads_a_large_answer_compressed(stack: Stack, accept: str | None, coding: str) -> None:
    with _sdk(stack, accept) as client:
        raw = client.embeddings.with_raw_response.create(
            model="embed-model", input=TEXTS, dimensions=1536, encoding_format="float"
        )
    assert raw.http_request.headers["accept-encoding"] == (accept or "gzip, deflate, zstd")
    assert raw.headers["content-encoding"] == coding
    assert raw.headers["vary"] == "accept-encoding"
    on_the_wire = raw.http_response.num_bytes_downloaded
    assert int(raw.headers["content-length"]) == on_the_wire
    assert on_the_wire < len(raw.content) / 1.5  # ~3 MB of JSON, sent as about half
    result = raw.parse()
    assert [d.index for d in result.data] == list(range(len(TEXTS)))
    for i in (0, 57, 99):
        assert result.data[i].embedding == vector(TEXTS[i], 1536)


@SDK_ASKS
def test_the_sdk_reads_a_stream_compressed(stack: Stack, accept: str | None, coding: str) -> None:
    with (
        _sdk(stack, accept) as client,
        client.chat.completions.with_streaming_response.create(
            model="demo-model",
            messages=[{"role": "user", "content": "Hi [mock:chunks=21]"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as response,
    ):
        assert response.headers["content-encoding"] == coding
        assert "content-length" not in response.headers
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 21
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 21


def test_a_streams_first_events_decode_before_its_end(stack: Stack) -> None:
    """Each write is flushed: what arrives first decodes to whole events
    while the upstream is still sending (300 ms apart), not to nothing
    (held in the compressor) nor to the whole stream (held to its end)."""
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "Hi [mock:chunks=5] [mock:chunk_ms=300]"}]}
    headers = {"authorization": f"Bearer {DEMO_KEY}", "accept-encoding": "gzip"}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{stack.base_url}/chat/completions", json=body | {"stream": True}, headers=headers) as r,
    ):
        assert r.headers["content-encoding"] == "gzip"
        inflate = zlib.decompressobj(31)
        pieces = [inflate.decompress(raw) for raw in r.iter_raw()]
    assert pieces[0].startswith(b"data: {") and b"[DONE]" not in pieces[0]
    assert b"".join(pieces).endswith(b"data: [DONE]\n\n") and inflate.eof


def test_httpx_asks_for_zstd(stack: Stack) -> None:
    headers = {"authorization": f"Bearer {DEMO_KEY}", "accept-encoding": "zstd"}
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{stack.base_url}/embeddings", json=EMBEDDINGS, headers=headers) as r,
    ):
        raw = b"".join(r.iter_raw())
    assert r.status_code == 200 and r.headers["content-encoding"] == "zstd"
    assert int(r.headers["content-length"]) == len(raw)
    answer = httpx.Response(200, content=zstd.decompress(raw)).json()
    assert len(raw) < len(zstd.decompress(raw)) / 1.5
    assert answer["data"][42]["embedding"] == vector(TEXTS[42], 1536)


def test_no_accept_encoding_no_compression(stack: Stack) -> None:
    key = {"authorization": f"Bearer {DEMO_KEY}"}
    with httpx.Client(timeout=60) as client:
        client.headers.pop("accept-encoding")
        r = client.post(f"{stack.base_url}/embeddings", json=EMBEDDINGS, headers=key)
        refused = key | {"accept-encoding": "gzip;q=0, identity"}
        identity = client.post(f"{stack.base_url}/embeddings", json=EMBEDDINGS, headers=refused)
    assert "accept-encoding" not in r.request.headers
    for answer in (r, identity):
        assert answer.status_code == 200
        assert "content-encoding" not in answer.headers and "vary" not in answer.headers
        assert int(answer.headers["content-length"]) == answer.num_bytes_downloaded == len(answer.content)
        assert answer.json()["data"][99]["embedding"] == vector(TEXTS[99], 1536)
