"""The shared response cache through the whole gateway: two ingress
processes, the cache stage and the provider over a real nats-server, the
answers kept in JetStream, the mock upstream counting every call."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from services.cli.nats_server import free_port
from tests.stack import DEMO_KEY, Stack

EXTRA = """
[[models]]
name = "kept"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@kept/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
"""
AUTH = {"authorization": f"Bearer {DEMO_KEY}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("cache"), timeout_s=20, extra_config=EXTRA, extra_http_ports=[free_port()])
    s.start()
    yield s
    s.stop()


def second_ingress(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.layout.extra_http_ports[0]}/v1"


def upstream_calls(stack: Stack) -> int:
    return stack.mock_stats()["by_upstream"].get("kept", 0)


def ask(base_url: str, prompt: str, cache_control: str | None = "max-age=300", **body: object) -> httpx.Response:
    headers = AUTH | ({"cache-control": cache_control} if cache_control else {})
    payload = {"model": "kept", "messages": [{"role": "user", "content": prompt}], **body}
    return httpx.post(f"{base_url}/chat/completions", headers=headers, json=payload, timeout=20)


def fresh(text: str = "") -> str:
    return f"{text} {uuid.uuid4().hex}"


def test_the_second_identical_request_is_a_hit_with_no_upstream_call_from_either_ingress(stack: Stack) -> None:
    prompt = fresh("what is two plus two")
    before = upstream_calls(stack)
    first = ask(stack.base_url, prompt)
    assert first.status_code == 200 and first.headers["x-sluice-cache"] == "miss"
    second = ask(second_ingress(stack), prompt)  # another ingress process: the cache is shared
    third = ask(stack.base_url, prompt, temperature=None)
    assert second.status_code == 200 and second.headers["x-sluice-cache"] == "hit"
    assert third.headers["x-sluice-cache"] == "hit"
    assert upstream_calls(stack) - before == 1
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert second.json()["usage"]["total_tokens"] == 0  # nothing was processed for it
    missed = stack.request_row(first.headers["x-request-id"])
    hit = stack.request_row(second.headers["x-request-id"])
    assert (missed["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["cost_pico_usd"] == 0 and hit["cost_saved_pico_usd"] == missed["cost_pico_usd"] > 0
    assert hit["deployment"] == "kept" and hit["model_group"] == "kept"


def test_a_streamed_hit_arrives_as_several_chunks(stack: Stack) -> None:
    prompt = fresh("tell me a story [mock:chunks=11]")
    assert ask(stack.base_url, prompt).status_code == 200  # kept from a non-streamed call
    before = upstream_calls(stack)
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_streaming_response.create(
            model="kept",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            extra_headers={"cache-control": "max-age=300"},
        )
        with raw as response:
            assert response.headers["x-sluice-cache"] == "hit"
            chunks = [c for c in response.parse() if c.choices and c.choices[0].delta.content]
    assert len(chunks) > 3
    assert "".join(c.choices[0].delta.content for c in chunks).startswith("Sluice routes this answer")
    assert upstream_calls(stack) == before


def test_no_store_bypasses_the_cache_both_ways(stack: Stack) -> None:
    prompt = fresh("no store please")
    before = upstream_calls(stack)
    assert "x-sluice-cache" not in ask(stack.base_url, prompt, "no-store").headers
    assert ask(stack.base_url, prompt).headers["x-sluice-cache"] == "miss"  # nothing was kept
    assert "x-sluice-cache" not in ask(stack.base_url, prompt, "no-store").headers  # nor read
    assert upstream_calls(stack) - before == 3


@pytest.mark.parametrize("status", [429, 500])
def test_errors_are_never_kept(stack: Stack, status: int) -> None:
    prompt = fresh("fails first")
    put = httpx.put(f"{stack.mock_url}/mock/upstreams/kept", json={"directives": f"[mock:status={status}]"})
    put.raise_for_status()
    try:
        assert ask(stack.base_url, prompt).status_code == status
    finally:
        httpx.delete(f"{stack.mock_url}/mock/upstreams/kept").raise_for_status()
    before = upstream_calls(stack)
    again = ask(stack.base_url, prompt)
    assert again.status_code == 200 and again.headers["x-sluice-cache"] == "miss"
    assert upstream_calls(stack) - before == 1


def test_a_cut_stream_is_never_kept(stack: Stack) -> None:
    prompt = fresh("cut me")
    put = httpx.put(f"{stack.mock_url}/mock/upstreams/kept", json={"directives": "[mock:cut_after=3]"})
    put.raise_for_status()
    try:
        with (
            openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client,
            pytest.raises(openai.APIError),
        ):
            for _ in client.chat.completions.create(
                model="kept",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                extra_headers={"cache-control": "max-age=300"},
            ):
                pass
    finally:
        httpx.delete(f"{stack.mock_url}/mock/upstreams/kept").raise_for_status()
    before = upstream_calls(stack)
    again = ask(stack.base_url, prompt, stream=True)
    assert again.status_code == 200 and again.headers["x-sluice-cache"] == "miss"
    assert upstream_calls(stack) - before == 1


def test_a_tenant_without_the_cache_is_never_cached(stack: Stack) -> None:
    from tests.stack import REDACT_KEY  # tenant "careful" has no cache policy

    prompt = fresh("careful")
    for _ in range(2):
        r = httpx.post(
            f"{stack.base_url}/chat/completions",
            headers={"authorization": f"Bearer {REDACT_KEY}", "cache-control": "max-age=300"},
            json={"model": "kept", "messages": [{"role": "user", "content": prompt}]},
            timeout=20,
        )
        assert r.status_code == 200 and "x-sluice-cache" not in r.headers
