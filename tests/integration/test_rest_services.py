"""REST services through the whole gateway (issue 27): one stack with two
services of the mock's REST echo. ``echo`` has the mock and a dead port
(weighted so that most first tries go to the dead one); ``pair`` has two
live instances of the mock (``/@a``, ``/@b``), so a call that may be tried
again would be.

A GET fails over to the live instance; a POST whose body reached an
instance is never sent to another (the mock counts one); a 50 MB download
streams through with the ingress's and the pipeline's memory flat; SSE
events arrive one by one; the rows in ClickHouse say what the mock saw;
a client that leaves mid-download ends the call upstream."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import DEMO_KEY, Stack

DOC = {
    "openapi": "3.1.0",
    "info": {"title": "Echo", "version": "1"},
    "paths": {p: {} for p in ("/items", "/items/{id}", "/download", "/sse", "/drop", "/status/{code}")},
}
# The config is formatted ({mock}, {dead}): the document's braces are doubled.
_DOC_TEXT = json.dumps(DOC).replace("{", "{{").replace("}", "}}")
SERVICES = (
    """
[[services]]
slug = "echo"
openapi = '%(doc)s'
instances = [
  { url = "http://127.0.0.1:{dead}/rest/echo", weight = 1000000 },
  { url = "http://127.0.0.1:{mock}/rest/echo", weight = 1 },
]

[[services]]
slug = "pair"
openapi = '%(doc)s'
instances = [{ url = "http://127.0.0.1:{mock}/@a/rest/echo" }, { url = "http://127.0.0.1:{mock}/@b/rest/echo" }]
"""
    # The TOML's own braces doubled for the Stack's format(); {dead} and {mock} are its ports.
    .replace("{ ", "{{ ").replace(" }", " }}")
    % {"doc": _DOC_TEXT}
)
MB = 1024 * 1024
# What a 50 MB download may add to a process's resident memory: far below its size.
RSS_MARGIN = 30 * MB


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("rest"), timeout_s=5.0, extra_config=SERVICES).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"http://127.0.0.1:{stack.layout.http_port}/services",
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    ) as c:
        yield c


def rest_stats(stack: Stack) -> dict:
    return stack.mock_stats()["rest"]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_get_fails_over_from_the_dead_instance_to_the_live_one(stack: Stack, client: httpx.Client) -> None:
    answers = [client.get(f"/echo/items/{n}") for n in range(4)]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert {a.json()["path"] for a in answers} == {f"/rest/echo/items/{n}" for n in range(4)}
    # Every answer came from the mock (instance 1); the first at least after trying the dead port.
    assert {a.headers["x-sluice-deployment"] for a in answers} == {"rest:echo.v1:1"}
    assert int(answers[0].headers["x-sluice-attempts"]) == 2
    row = stack.request_row(answers[0].headers["x-request-id"])
    assert (row["attempts"], row["status"], row["route"]) == (2, 200, "/items/{id}")


def test_a_post_whose_body_reached_an_instance_is_never_sent_again(stack: Stack, client: httpx.Client) -> None:
    before = rest_stats(stack)["calls"]
    refused = client.post("/pair/drop", content=b'{"order": 1}')
    assert refused.status_code == 502, refused.text
    after = rest_stats(stack)["calls"]
    assert after.get("POST /drop", 0) - before.get("POST /drop", 0) == 1
    # A GET that met the same end may be sent again (to the other instance): the mock saw more than one.
    client.get("/pair/drop")
    assert rest_stats(stack)["calls"].get("GET /drop", 0) - before.get("GET /drop", 0) >= 2
    row = stack.request_row(refused.headers["x-request-id"])
    assert (row["http_method"], row["route"], row["attempts"], row["request_bytes"]) == ("POST", "/drop", 1, 12)


def test_a_50_mb_download_streams_through_with_memory_flat(stack: Stack, client: httpx.Client) -> None:
    pids = {n: p for n, p in stack.supervisor.pids().items() if n.startswith(("ingress", "pipeline"))}
    assert any(n.startswith("ingress") for n in pids) and any(n.startswith("pipeline") for n in pids), pids
    client.get("/echo/download", params={"kb": 64})  # warm: buffers and code paths any download uses
    before = {n: rss(p) for n, p in pids.items()}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for n, p in pids.items():
                peak[n] = max(peak[n], rss(p))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size = 0
    try:
        with client.stream("GET", "/echo/download", params={"mb": 50}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "application/octet-stream"
            for part in resp.iter_raw():
                size += len(part)
    finally:
        done.set()
        sampler.join()
    assert size == 50 * MB
    grown = {n: (peak[n] - before[n]) // MB for n in pids}
    assert all(peak[n] - before[n] < RSS_MARGIN for n in pids), f"MB grown at peak: {grown}"
    row = stack.request_row(resp.headers["x-request-id"])
    assert (row["route"], row["status"], row["response_bytes"]) == ("/download", 200, 50 * MB)


def test_server_sent_events_arrive_one_by_one(client: httpx.Client) -> None:
    arrived: list[float] = []
    with client.stream("GET", "/echo/sse", params={"events": 4, "gap_ms": 300}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                arrived.append(time.monotonic())
    assert len(arrived) == 4
    gaps = [b - a for a, b in itertools.pairwise(arrived)]
    assert all(gap > 0.15 for gap in gaps), gaps


def test_the_rows_say_what_the_service_saw(stack: Stack, client: httpx.Client) -> None:
    before = rest_stats(stack)["calls"]
    posted = client.post("/echo/items/7", content=b"x" * 1000, headers={"content-type": "text/plain"})
    got = client.get("/echo/items", params={"page": "2"})
    missing = client.get("/echo/status/404")
    assert (posted.status_code, got.status_code, missing.status_code) == (200, 200, 404)
    assert posted.json()["body"] == "x" * 1000 and got.json()["query"] == "page=2"
    after = rest_stats(stack)["calls"]
    assert after["POST /items"] - before.get("POST /items", 0) == 1
    assert after["GET /items"] - before.get("GET /items", 0) >= 1
    expected = [
        (posted, "POST", "/items/{id}", 200, 1000),
        (got, "GET", "/items", 200, 0),
        (missing, "GET", "/status/{code}", 404, 0),
    ]
    for resp, method, route, status, sent in expected:
        row = stack.request_row(resp.headers["x-request-id"])
        assert (row["api"], row["model"], row["rest_service"], row["rest_version"]) == (
            "rest",
            "service:echo",
            "echo",
            1,
        )
        assert (row["http_method"], row["route"], row["status"]) == (method, route, status)
        assert (row["request_bytes"], row["response_bytes"]) == (sent, len(resp.content))


def test_a_client_that_leaves_mid_download_ends_the_call_upstream(stack: Stack, client: httpx.Client) -> None:
    cancelled = rest_stats(stack)["cancelled"]
    with client.stream("GET", "/echo/download", params={"mb": 200, "chunked": 1}) as resp:
        assert resp.status_code == 200
        read = 0
        for part in resp.iter_raw():
            read += len(part)
            if read >= MB:
                break
        request_id = resp.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while rest_stats(stack)["cancelled"] == cancelled:
        assert time.monotonic() < deadline, "the upstream download kept going after its client left"
        time.sleep(0.05)
    row = stack.request_row(request_id)
    assert (row["client_disconnected"], row["route"]) == (1, "/download")
    assert row["response_bytes"] < 200 * MB
