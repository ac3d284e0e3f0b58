"""Whatever a client sends, the answer is JSON in the API's shape with an
``x-request-id`` and a row: never a plain-text 500, never a wait for ever.
And integral numbers written as 1.0 are integers, as OpenAI's schema says."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from services import tokens
from tests.stack import DEMO_KEY, Stack

MESSAGES = b'"messages": [{"role": "user", "content": "hi"}]'


def post(stack: Stack, content: bytes, path: str = "/chat/completions") -> httpx.Response:
    headers = {"content-type": "application/json", "authorization": f"Bearer {DEMO_KEY}"}
    return httpx.post(f"{stack.base_url}{path}", content=content, headers=headers, timeout=20)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"model": "demo-model", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "UTF-8"),
        (b'{"model": "demo-model", ' + MESSAGES + b', "extra": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested"),
        (b'{"model": "demo-model", ' + MESSAGES + b', "n": 100000000000000000000000000000}', "'n' is out of range"),
        (b'{"model": "demo-model", ' + MESSAGES + b', "max_tokens": 1.5}', "'max_tokens' must be an integer"),
        (b'{"model": "demo-model", ' + MESSAGES + b', "n": 1.5}', "'n' must be an integer"),
        (b'{"model": "embed-model", "input": [[1, 100000000000000000000000]]}', "64 bits"),
    ],
)
def test_hostile_bodies_get_a_json_400_with_an_id_and_a_row(stack: Stack, body: bytes, fragment: str) -> None:
    resp = post(stack, body, path="/embeddings" if b"embed-model" in body else "/chat/completions")
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and fragment in error["message"]
    assert stack.request_row(resp.headers["x-request-id"])["status"] == 400


def test_a_huge_integer_in_a_free_form_field_goes_on_as_a_number(stack: Stack) -> None:
    # A JSON schema with a bound no 64-bit integer holds: valid JSON, valid for OpenAI's schema.
    schema = b'{"type": "integer", "maximum": 1' + b"0" * 25 + b"}"
    body = b'{"model": "demo-model", ' + MESSAGES + b', "tools": [{"type": "function", "function": {"name": "f", '
    body += b'"parameters": ' + schema + b"}}]}"
    resp = post(stack, body)
    assert resp.status_code == 200, resp.text


def test_integral_numbers_written_with_a_point_are_integers(stack: Stack) -> None:
    resp = post(stack, b'{"model": "demo-model", ' + MESSAGES + b', "n": 1.0, "seed": 7.0, "max_tokens": 50.0}')
    assert resp.status_code == 200, resp.text
    # A limit beyond 64 bits means "no limit" and goes on as the largest one; the upstream judges it.
    resp = post(stack, b'{"model": "demo-model", ' + MESSAGES + b', "max_tokens": 1e30, "seed": -1' + b"0" * 25 + b"}")
    assert resp.status_code == 200, resp.text
    resp = post(stack, b'{"model": "claude-model", "max_tokens": 64.0, ' + MESSAGES + b"}", path="/messages")
    assert resp.status_code == 200, resp.text
    resp = post(stack, b'{"model": "embed-model", "input": "x", "dimensions": 8.0}', path="/embeddings")
    assert resp.status_code == 200, resp.text


def test_a_body_sent_a_byte_at_a_time_gets_408(stack: Stack) -> None:
    port = int(stack.base_url.split(":")[2].split("/")[0])
    body = b'{"model": "demo-model", ' + MESSAGES + b"}"
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {DEMO_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for byte in body:  # one byte every 0.5 s; the stack allows 2 s for the whole body
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.5)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                continue
            if answer:
                break
        # The head and the body may come in separate segments: read the rest.
        sock.settimeout(5)
        while b"\r\n\r\n" in answer and len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 6
    head_part, _, json_part = answer.partition(b"\r\n\r\n")
    assert b"x-request-id" in head_part and b"request_timeout" in json_part


def _content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/chat/completions", 405), ("POST", "/nope", 404)])
def test_wrong_routes_are_json_with_an_id(stack: Stack, method: str, path: str, status: int) -> None:
    resp = httpx.request(method, f"{stack.base_url}{path}", timeout=10)
    assert resp.status_code == status
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert stack.request_row(resp.headers["x-request-id"])["status"] == status


def test_answers_carry_the_fields_openais_schema_requires(stack: Stack) -> None:
    resp = post(stack, b'{"model": "demo-model", ' + MESSAGES + b"}")
    message = resp.json()["choices"][0]["message"]
    assert message["refusal"] is None and message["role"] == "assistant" and "content" in message
    lines = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    ).text.splitlines()
    chunks = [line for line in lines if line.startswith("data: {")]
    assert chunks and all('"object":"chat.completion.chunk"' in c for c in chunks)
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        assert client.models.list().data  # and the SDK still reads every shape


def test_anthropic_stream_starts_with_usage_counts(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base_url}/messages",
        json={"model": "demo-model", "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": DEMO_KEY},
        timeout=20,
    )
    start = next(line for line in resp.text.splitlines() if line.startswith("data: ") and "message_start" in line)
    assert '"usage":{"input_tokens":0,"output_tokens":0' in start


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", b'{"model": "embed-model", ' + MESSAGES + b"}"),
        ("/messages", b'{"model": "embed-model", "max_tokens": 8, ' + MESSAGES + b"}"),
        ("/embeddings", b'{"model": "demo-model", "input": "x"}'),
    ],
)
def test_a_model_answers_only_in_its_mode(stack: Stack, path: str, body: bytes) -> None:
    resp = post(stack, body, path=path)
    assert resp.status_code == 400, resp.text
    assert " model; call it on /v1/" in resp.text  # the error names the endpoint to use
    assert stack.request_row(resp.headers["x-request-id"])["status"] == 400


def test_a_stream_cut_by_the_upstream_ends_with_a_clean_error(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "stream": True, "messages": [{"role": "user", "content": "x [mock:cut_after=2]"}]},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    )
    error = [line for line in resp.text.splitlines() if line.startswith('data: {"error"')]
    assert len(error) == 1 and resp.text.rstrip().endswith(error[0])
    message = json.loads(error[0][len("data: ") :])["error"]["message"]
    assert message == "The upstream closed the connection before its answer was complete."
    # What the upstream generated before it cut the stream is billed: the prompt and its two words,
    # counted with gpt-3.5-turbo's own tokenizer.
    row = stack.request_row(resp.headers["x-request-id"])
    streamed = tokens.count_text("Sluice routes", tokens.encoding("cl100k_base"))
    assert row["status"] == 502 and row["completion_tokens"] == streamed and row["prompt_tokens"] > 0
    assert row["cost_pico_usd"] > 0 and row["usage_source"] == "counted"
