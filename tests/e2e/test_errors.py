"""Bad input and failing upstreams: OpenAI error JSON, the right status, a
recorded request, and a gateway that keeps serving."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import httpx
import openai
import pytest

from ingress.body_coding import zstd
from tests.stack import DEMO_KEY, LIMITED_KEY, Stack


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def post(stack: Stack, content: bytes, key: str | None = DEMO_KEY) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(f"{stack.base_url}/chat/completions", content=content, headers=headers, timeout=20)


def assert_openai_error(resp: httpx.Response, status: int, type_: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] == type_
    assert err["message"] and "code" in err
    return err


def assert_recorded(stack: Stack, resp: httpx.Response, status: int) -> dict:
    row = stack.request_row(resp.headers["x-request-id"])
    assert row["status"] == status
    return row


def assert_still_serving(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "ok?"}])
    assert resp.choices[0].message.content


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"this is not json", "parse the JSON"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "`model`"),
        (b'{"model": "demo-model"}', "`messages`"),
        (b'{"model": "demo-model", "messages": []}', "at least one"),
        (b'{"model": "demo-model", "messages": "hi"}', "messages"),
    ],
)
def test_bad_body_is_400(stack: Stack, client: openai.OpenAI, body: bytes, fragment: str) -> None:
    resp = post(stack, body)
    err = assert_openai_error(resp, 400, "invalid_request_error")
    assert fragment in err["message"]
    assert_recorded(stack, resp, 400)
    assert_still_serving(client)


def test_body_over_limit_is_413(stack: Stack, client: openai.OpenAI) -> None:
    big = b'{"model": "demo-model", "messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}'
    resp = post(stack, big)
    assert_openai_error(resp, 413, "invalid_request_error")
    assert_recorded(stack, resp, 413)
    assert_still_serving(client)


def compressed(body: bytes, coding: str) -> bytes:
    return {"gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstd.compress}[coding](body)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_a_compressed_body_is_read_and_one_that_inflates_past_the_limit_is_413(
    stack: Stack, client: openai.OpenAI, coding: str
) -> None:
    body = b'{"model": "demo-model", "messages": [{"role": "user", "content": "compressed hello"}]}'
    headers = {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json", "content-encoding": coding}
    url = f"{stack.base_url}/chat/completions"
    resp = httpx.post(url, content=compressed(body, coding), headers=headers, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"]
    # 1 MB of spaces inflates from about 1 KB: refused as it inflates, never held (the limit is 64 KB here).
    bomb = b'{"model": "demo-model", "messages": [{"role": "user", "content": "' + b" " * 1_000_000 + b'"}]}'
    resp = httpx.post(url, content=compressed(bomb, coding), headers=headers, timeout=20)
    assert_openai_error(resp, 413, "invalid_request_error")
    resp = httpx.post(url, content=compressed(body, coding)[:-8], headers=headers, timeout=20)  # cut short
    assert assert_openai_error(resp, 400, "invalid_request_error")["code"] == "invalid_content_encoding"
    assert_still_serving(client)


def test_a_body_in_an_unknown_encoding_is_415(stack: Stack) -> None:
    headers = {"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json", "content-encoding": "br"}
    resp = httpx.post(f"{stack.base_url}/chat/completions", content=b"\x00\x01", headers=headers, timeout=20)
    assert assert_openai_error(resp, 415, "invalid_request_error")["code"] == "unsupported_content_encoding"


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_missing_or_wrong_key_is_401(stack: Stack, key: str | None) -> None:
    resp = post(stack, b'{"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]}', key=key)
    assert_openai_error(resp, 401, "authentication_error")
    assert_recorded(stack, resp, 401)


def test_sdk_sees_authentication_error(stack: Stack) -> None:
    with (
        openai.OpenAI(base_url=stack.base_url, api_key="sk-wrong", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "hi"}])


def test_unknown_model_is_404(stack: Stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"
    assert_recorded(stack, info.value.response, 404)


def test_model_outside_key_scope_is_403(stack: Stack) -> None:
    with (
        openai.OpenAI(base_url=stack.base_url, api_key=LIMITED_KEY, max_retries=0) as limited,
        pytest.raises(openai.PermissionDeniedError),
    ):
        limited.chat.completions.create(model="other-model", messages=[{"role": "user", "content": "hi"}])


def test_unreachable_upstream_is_502(stack: Stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="dead-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert info.value.code == "upstream_unreachable"
    row = assert_recorded(stack, info.value.response, 502)
    assert row["deployment"] == "dead-model"
    assert_still_serving(client)


def test_upstream_timeout_is_504(stack: Stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="short-timeout-model", messages=[{"role": "user", "content": "hi [mock:latency_ms=2000]"}]
        )
    assert info.value.status_code == 504
    assert info.value.code == "upstream_timeout"
    assert_recorded(stack, info.value.response, 504)


@pytest.mark.parametrize(
    ("status", "exc"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)
def test_upstream_error_status_passes_through(stack: Stack, client: openai.OpenAI, status: int, exc: type) -> None:
    with pytest.raises(exc) as info:
        client.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": f"hi [mock:status={status}]"}]
        )
    assert info.value.status_code == status
    if status == 429:
        assert info.value.response.headers["retry-after"] == "2"
    row = assert_recorded(stack, info.value.response, status)
    assert row["prompt_tokens"] == 0 and row["cost_pico_usd"] == 0  # a refusal bills nothing


def test_upstream_error_on_stream_before_first_chunk_keeps_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "hi [mock:status=429]"}], stream=True
        )


def test_stream_cut_midway_ends_with_error_event(stack: Stack, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "hi [mock:cut_after=3]"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Sluice", " routes", " this"]  # the role chunk, then three words
    assert_still_serving(client)


def test_gateway_deadline_answers_504_not_a_hang(stack: Stack, client: openai.OpenAI) -> None:
    # The stack's request timeout is 3 s; this upstream would answer after 10 s.
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="demo-model", messages=[{"role": "user", "content": "hi [mock:latency_ms=10000]"}]
        )
    assert info.value.status_code == 504
    assert_recorded(stack, info.value.response, 504)


def test_unknown_path_is_404_json(stack: Stack) -> None:
    resp = httpx.get(f"{stack.base_url}/nothing-here")
    assert_openai_error(resp, 404, "invalid_request_error")
