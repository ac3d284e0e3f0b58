"""The mock upstream's REST service (/rest/echo/...), as a client meets it:
the echo of every method, downloads, event streams, statuses, a dropped
connection, a named instance made to fail, and what it counts."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.unit.mock_server import MockServer


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    server = MockServer()
    yield server
    server.stop()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_is_echoed_with_what_it_sent(mock: MockServer, method: str) -> None:
    before = mock.rest_calls().get(f"{method} /items", 0)
    resp = httpx.request(method, f"{mock.url}/rest/echo/items/7?x=1&y=%20", content=b"hello", headers={"x-a": "b"})
    assert resp.status_code == 200
    echo = resp.json()
    assert echo["method"] == method and echo["path"] == "/rest/echo/items/7" and echo["query"] == "x=1&y=%20"
    assert echo["headers"]["x-a"] == "b" and echo["body"] == "hello" and echo["base64"] is False
    assert mock.rest_calls()[f"{method} /items"] == before + 1


def test_a_body_that_is_not_utf8_comes_back_in_base64(mock: MockServer) -> None:
    echo = httpx.post(f"{mock.url}/rest/echo/bin", content=b"\xff\x00\xfe").json()
    assert echo["base64"] is True and base64.b64decode(echo["body"]) == b"\xff\x00\xfe"


def test_a_download_has_the_size_asked_with_or_without_its_length(mock: MockServer) -> None:
    resp = httpx.get(f"{mock.url}/rest/echo/download?mb=2")
    assert resp.headers["content-length"] == str(2 * 1024 * 1024) and len(resp.content) == 2 * 1024 * 1024
    chunked = httpx.get(f"{mock.url}/rest/echo/download?kb=100&chunked=1")
    assert "content-length" not in chunked.headers and len(chunked.content) == 100 * 1024


def test_events_come_apart_by_their_gap(mock: MockServer) -> None:
    seen: list[float] = []
    with httpx.stream("GET", f"{mock.url}/rest/echo/sse?events=3&gap_ms=150") as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        for line in resp.iter_lines():
            if line.startswith("data: "):
                seen.append(time.monotonic())
    assert len(seen) == 3 and seen[2] - seen[0] >= 0.25


def test_a_status_is_answered_as_asked(mock: MockServer) -> None:
    assert httpx.get(f"{mock.url}/rest/echo/status/418").status_code == 418
    assert httpx.delete(f"{mock.url}/rest/echo/status/204").status_code == 204


def test_a_dropped_request_gets_no_answer_but_is_counted(mock: MockServer) -> None:
    before = mock.rest_calls().get("POST /drop", 0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{mock.url}/rest/echo/drop", content=b"x")
    assert mock.rest_calls()["POST /drop"] == before + 1


def test_a_named_instance_fails_as_set_and_counts_apart(mock: MockServer) -> None:
    assert httpx.put(f"{mock.url}/mock/upstreams/down", json={"directives": "[mock:status=503]"}).status_code == 200
    try:
        assert httpx.get(f"{mock.url}/@down/rest/echo/x").status_code == 503
        assert httpx.get(f"{mock.url}/@up/rest/echo/x").json()["path"] == "/@up/rest/echo/x"
        assert mock.stats()["by_upstream"]["down"] >= 1
    finally:
        httpx.delete(f"{mock.url}/mock/upstreams/down")


def test_a_client_that_leaves_a_download_is_counted_as_cancelled(mock: MockServer) -> None:
    before = mock.stats()["rest"]["cancelled"]
    with httpx.stream("GET", f"{mock.url}/rest/echo/download?mb=200") as resp:
        next(resp.iter_bytes())
    deadline = time.monotonic() + 5
    while mock.stats()["rest"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the mock never saw its client leave"
        time.sleep(0.05)
