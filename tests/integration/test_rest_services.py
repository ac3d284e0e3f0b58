"""REST services through the whole gateway (issue 27): one stack with two
services of the mock's REST echo. ``echo`` has the mock and a dead port
(weighted so that most first tries go to the dead one); ``pair`` has two
live instances of the mock (``/@a``, ``/@b``), so a call that may be tried
again would be.

A GET fails over to the live instance; a POST whose body reached an
instance is never sent to another (the mock counts one); a 50 MB download
streams through with the ingress's and the pipeline's memory flat, at full
speed and to a client reading at ~5 MB/s (the service is paused, not read
ahead, and the answer is not cut at the request's deadline: ``paced`` has a
5 s deadline); SSE events arrive one by one; the rows in ClickHouse say
what the mock saw; the service gets the gateway's proxy headers; a client
that leaves mid-download ends the call upstream."""

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

# Its calls' deadline is the stack's request timeout (5 s): connect and read take less.
[[services]]
slug = "paced"
openapi = '%(doc)s'
instances = [{ url = "http://127.0.0.1:{mock}/rest/echo" }]
connect_timeout_s = 1
read_timeout_s = 2
price_pico_usd = 3000
"""
    # The TOML's own braces doubled for the Stack's format(); {dead} and {mock} are its ports.
    .replace("{ ", "{{ ").replace(" }", " }}")
    % {"doc": _DOC_TEXT}
)
MB = 1024 * 1024
# What a 50 MB download may add to a process's resident memory: far below
# its size (the ingress is paced a window at a time, 1 MB).
RSS_MARGIN = 15 * MB


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


class PeakRss:
    """The ingress's and pipeline's resident memory before, and at its
    highest while the block runs (sampled every 50 ms)."""

    def __init__(self, stack: Stack) -> None:
        self.pids = {n: p for n, p in stack.supervisor.pids().items() if n.startswith(("ingress", "pipeline"))}
        assert any(n.startswith("ingress") for n in self.pids), self.pids
        assert any(n.startswith("pipeline") for n in self.pids), self.pids
        self.before = {n: rss(p) for n, p in self.pids.items()}
        self.peak = dict(self.before)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            for n, p in self.pids.items():
                self.peak[n] = max(self.peak[n], rss(p))
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join()

    def assert_flat(self) -> None:
        grown = {n: (self.peak[n] - self.before[n]) // MB for n in self.pids}
        assert all(self.peak[n] - self.before[n] < RSS_MARGIN for n in self.pids), f"MB grown at peak: {grown}"


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
    client.get("/echo/download", params={"mb": 4})  # warm: buffers and code paths any download uses
    size = 0
    with PeakRss(stack) as memory, client.stream("GET", "/echo/download", params={"mb": 50}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/octet-stream"
        assert "x-sluice-cost-pico-usd" not in resp.headers, "a streamed answer's head goes before its cost"
        for part in resp.iter_raw():
            size += len(part)
    assert size == 50 * MB
    memory.assert_flat()
    row = stack.request_row(resp.headers["x-request-id"])
    assert (row["route"], row["status"], row["response_bytes"]) == ("/download", 200, 50 * MB)


def test_a_slow_reader_pauses_the_service_past_the_deadline_with_memory_flat(
    stack: Stack, client: httpx.Client
) -> None:
    """A client taking a download at ~5 MB/s for 6 s (30 MB, past the
    call's 5 s deadline), then leaving: nothing holds what it has not read,
    the service's writes wait for it, and the answer is cut only by its
    leaving. (200 MB: what sockets buffer on the way must not let the
    service finish before the client leaves.)"""
    client.get("/paced/download", params={"mb": 4})  # warm
    paused = rest_stats(stack)["paused_writes"]
    cancelled, completed = rest_stats(stack)["cancelled"], rest_stats(stack)["completed"]
    read, rate, began = 0, 5 * MB, time.monotonic()
    with PeakRss(stack) as memory, client.stream("GET", "/paced/download", params={"mb": 200}) as resp:
        assert resp.status_code == 200
        for part in resp.iter_raw(64 * 1024):
            read += len(part)
            ahead = read / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - began > 6.0:
                break
        request_id = resp.headers["x-request-id"]
    assert 20 * MB < read < 40 * MB, f"read {read // MB} MB in 6 s"
    memory.assert_flat()
    assert rest_stats(stack)["paused_writes"] > paused, "the service sent as fast as it could: nothing paused it"
    deadline = time.monotonic() + 10
    while rest_stats(stack)["cancelled"] == cancelled:
        assert time.monotonic() < deadline, "the upstream download kept going after its client left"
        time.sleep(0.05)
    assert rest_stats(stack)["completed"] == completed, "the service was read to its end: nothing paced it"
    row = stack.request_row(request_id)
    assert (row["client_disconnected"], row["status"], row["route"]) == (1, 499, "/download")


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
    # What the provider sent on before the client left: at least the megabyte the client read.
    assert MB <= row["response_bytes"] < 200 * MB


def test_the_service_gets_the_gateways_proxy_headers_and_a_whole_answer_its_cost(client: httpx.Client) -> None:
    """From loopback (a proxy the gateway trusts by default), the caller's
    chain goes on with its address appended; the Host is the one asked for."""
    resp = client.get("/paced/items/1", headers={"x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "gopher"})
    assert resp.status_code == 200 and resp.headers["x-sluice-cost-pico-usd"] == "3000"
    got = resp.json()["headers"]
    assert got["x-forwarded-for"] == "6.6.6.6, 127.0.0.1" and got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == client.base_url.netloc.decode()
