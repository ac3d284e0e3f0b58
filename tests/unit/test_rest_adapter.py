"""The REST adapter (``services.providers.rest``) against the mock's REST
service served on loopback: what an instance gets (header rules, hop-by-hop
headers, the gateway's key never), the answer streamed as it is read (the
head, then slices; an SSE event the moment it is sent; a small answer whole
on the Final), the response cap, which failures another instance may try,
a cancel closing the upstream at once, a whole request's walk through
``RequestCall``, and the instances' health checks."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas import bus
from schemas.chat import Delta
from schemas.envelope import Deployment, Envelope
from schemas.errors import InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from schemas.replies import Chunk, Failure, Final
from schemas.rest import HeaderRule, RestCall, RestHead, RestInstance, RestService
from services.cli.nats_server import free_port
from services.flow_window import WINDOW, SendWindow
from services.providers.attempts import Try, WalkFailed
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import make_upstream_http
from services.providers.logged_answer import logged_answer
from services.providers.request_call import RequestCall
from services.providers.rest.call import RESPONSE_TOO_LARGE, RestCaller
from services.providers.rest.client import SLICE, RestClient
from services.providers.rest.headers import response_headers
from services.providers.rest.health import HealthChecks
from services.reply_log import MAX_BYTES, ReplyLog
from services.rest_routing import deployment_name
from tests.unit.mock_server import MockServer

SERVICE = RestService(
    slug="echo",
    instances=[RestInstance(url="http://127.0.0.1:1/rest/echo")],
    add_headers=[HeaderRule(name="X-Upstream-Key", env="H2_TEST_UPSTREAM_KEY", prefix="Key ")],
    strip_headers=["authorization", "cookie", "x-secret"],
    connect_timeout_s=2.0,
    read_timeout_s=5.0,
    price_pico_usd=7_000,
)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    server = MockServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[RestClient]:
    c = RestClient()
    yield c
    await c.aclose()


class Body:
    """What ``on_body`` was handed, and when."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.parts: list[tuple[RestHead | None, bytes, float]] = []
        self.delay_s = delay_s

    async def __call__(self, head: RestHead | None, data: bytes) -> None:
        self.parts.append((head, data, time.monotonic()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    @property
    def data(self) -> bytes:
        return b"".join(d for _, d, _ in self.parts)


def instance(base_url: str, index: int = 0) -> Deployment:
    return Deployment(name=f"rest:echo.v1:{index}", provider="rest", base_url=base_url, upstream_model="echo")


def caller(client: RestClient, service: RestService = SERVICE) -> RestCaller:
    return RestCaller(client, {service.key: service})


async def call(
    client: RestClient, base: str, rest: RestCall, on_body: Body | None = None, **kwargs: object
) -> CallOutcome:
    return await caller(client, kwargs.pop("service", SERVICE)).call(  # type: ignore[arg-type]
        instance(base), rest, CallProgress(), on_body or Body(), **kwargs
    )


def echo_of(outcome: CallOutcome) -> dict:
    return json.loads(outcome.data)


async def test_an_instance_gets_the_callers_request_less_what_is_never_forwarded(
    mock: MockServer, client: RestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2_TEST_UPSTREAM_KEY", "s3cret")
    headers = [
        ("authorization", "Bearer sk-gateway-key"),
        ("x-api-key", "sk-gateway-key"),
        ("cookie", "session=1"),
        ("x-secret", "no"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("host", "evil.example"),
        ("x-sluice-deployment", "rest:echo.v1:1"),
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-prefix", "/evil"),
        ("x-forwarded-for", "10.0.0.1, 127.0.0.1"),
        ("x-upstream-key", "the caller's own"),
        ("accept", "application/json"),
        ("x-custom", "one"),
        ("x-custom", "two"),
    ]
    body = Body()
    rest = RestCall(service="echo", method="PATCH", path="/items/7?q=a%20b", headers=headers, body=b'{"a": 1}')
    outcome = await call(client, f"{mock.url}/rest/echo", rest, body)
    assert not body.parts, "a small answer rides on the Final alone"
    assert outcome.rest is not None and outcome.rest.status == 200 and outcome.rest.head is not None
    assert outcome.rest.response_bytes == len(outcome.data)
    echo = echo_of(outcome)
    assert echo["method"] == "PATCH" and echo["path"] == "/rest/echo/items/7" and echo["query"] == "q=a%20b"
    assert echo["body"] == '{"a": 1}'
    got = echo["headers"]
    for never in ("authorization", "x-api-key", "cookie", "x-secret", "keep-alive", "te", "upgrade", "forwarded"):
        assert never not in got, never
    assert not any(name.startswith("x-sluice-") for name in got)
    assert got["host"] == f"127.0.0.1:{mock.port}"
    assert got["x-forwarded-for"] == "10.0.0.1, 127.0.0.1" and got["x-forwarded-prefix"] == "/services/echo"
    assert got["x-upstream-key"] == "Key s3cret", "the service's rule replaces the caller's header"
    assert got["accept"] == "application/json" and got["x-custom"] == "one, two"
    assert "user-agent" not in got and "accept-encoding" not in got, "no header of the gateway's own client"
    assert got["content-length"] == "8" and "content-type" not in got
    # The answer's head as the caller gets it: hop-by-hop headers out.
    names = [name for name, _ in outcome.rest.head.headers]
    assert "content-type" in names and "content-length" not in names
    assert outcome.cost.call == 7_000 and outcome.model == "service:echo"


async def test_a_rule_whose_variable_is_unset_sends_nothing(
    mock: MockServer, client: RestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("H2_TEST_UPSTREAM_KEY", raising=False)
    outcome = await call(client, f"{mock.url}/rest/echo", RestCall(service="echo", path="/x"))
    assert "x-upstream-key" not in echo_of(outcome)["headers"]


async def test_a_binary_body_passes_byte_for_byte(mock: MockServer, client: RestClient) -> None:
    raw = bytes(range(256)) * 10
    outcome = await call(client, f"{mock.url}/rest/echo", RestCall(service="echo", method="PUT", path="/b", body=raw))
    echo = echo_of(outcome)
    assert echo["base64"] is True and base64.b64decode(echo["body"]) == raw


@pytest.mark.parametrize(
    "path", ["/../admin", "/a/%2e%2e/b", "/a/..%2fb", "/a/..;/b", "/a\\..", "/a b", "/a\r\nx: y", "x", "/%zz"]
)
async def test_a_path_that_could_leave_the_base_is_refused_unsent(
    mock: MockServer, client: RestClient, path: str
) -> None:
    before = mock.rest_calls()
    with pytest.raises(CallFailed) as failed:
        await call(client, f"{mock.url}/rest/echo", RestCall(service="echo", path=path))
    assert isinstance(failed.value.error, InvalidRequest) and not failed.value.repeatable
    assert mock.rest_calls() == before


async def test_a_header_that_could_smuggle_another_is_refused(mock: MockServer, client: RestClient) -> None:
    with pytest.raises(CallFailed) as failed:
        rest = RestCall(service="echo", path="/x", headers=[("x-a", "b\r\nx-injected: 1")])
        await call(client, f"{mock.url}/rest/echo", rest)
    assert isinstance(failed.value.error, InvalidRequest)


async def test_a_download_streams_in_slices_as_it_is_read(mock: MockServer, client: RestClient) -> None:
    body = Body()
    outcome = await call(client, f"{mock.url}/rest/echo", RestCall(service="echo", path="/download?mb=5"), body)
    heads = [h for h, _, _ in body.parts if h is not None]
    assert len(heads) == 1 and body.parts[0][0] is heads[0] and heads[0].status == 200
    assert ("content-type", "application/octet-stream") in heads[0].headers
    assert len(body.data) == 5 * 1024 * 1024 and max(len(d) for _, d, _ in body.parts) <= SLICE
    assert len(body.parts) >= 5 * 1024 * 1024 // SLICE
    assert outcome.rest is not None and outcome.rest.head is None and outcome.data == b""
    assert outcome.rest.response_bytes == 5 * 1024 * 1024 and outcome.rest.status == 200


async def test_events_pass_one_by_one_as_the_service_sends_them(mock: MockServer, client: RestClient) -> None:
    body = Body()
    await call(client, f"{mock.url}/rest/echo", RestCall(service="echo", path="/sse?events=4&gap_ms=200"), body)
    events = [(d, at) for _, d, at in body.parts if d]
    assert body.parts[0][0] is not None and ("content-type", "text/event-stream") in body.parts[0][0].headers
    assert [d.count(b"data: ") for d, _ in events] == [1, 1, 1, 1], "each event alone, none held for the next"
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(events)]
    assert all(gap >= 0.15 for gap in gaps), gaps


async def test_an_answer_past_the_cap_by_its_length_fails_before_its_head(mock: MockServer, client: RestClient) -> None:
    small = RestService(slug="echo", max_response_bytes=100_000)
    body = Body()
    with pytest.raises(CallFailed) as failed:
        await call(
            client, f"{mock.url}/rest/echo", RestCall(service="echo", path="/download?mb=1"), body, service=small
        )
    assert failed.value.error.code == RESPONSE_TOO_LARGE and failed.value.error.status == 502
    assert not failed.value.repeatable and not body.parts


async def test_a_streamed_answer_past_the_cap_is_cut_there(mock: MockServer, client: RestClient) -> None:
    small = RestService(slug="echo", max_response_bytes=100_000)
    body = Body()
    rest = RestCall(service="echo", path="/download?mb=1&chunked=1")
    with pytest.raises(CallFailed) as failed:
        await call(client, f"{mock.url}/rest/echo", rest, body, service=small)
    assert failed.value.error.code == RESPONSE_TOO_LARGE and not failed.value.repeatable
    assert body.parts[0][0] is not None and len(body.data) == 100_000


async def test_an_upstream_status_is_the_answer(mock: MockServer, client: RestClient) -> None:
    for method, code in (("GET", 404), ("POST", 500), ("DELETE", 204), ("POST", 503)):
        outcome = await call(
            client, f"{mock.url}/rest/echo", RestCall(service="echo", method=method, path=f"/status/{code}")
        )
        assert outcome.rest is not None and outcome.rest.status == code and outcome.rest.head is not None


async def test_an_idempotent_call_moves_on_from_a_502_to_504_while_an_instance_is_left(
    mock: MockServer, client: RestClient
) -> None:
    rest = RestCall(service="echo", method="GET", path="/status/503")
    with pytest.raises(CallFailed) as failed:
        await call(client, f"{mock.url}/rest/echo", rest)
    assert failed.value.repeatable and failed.value.error.status == 503
    last = await call(client, f"{mock.url}/rest/echo", rest, may_fail_over=False)
    assert last.rest is not None and last.rest.status == 503, "the last instance's answer is relayed as it is"


async def test_nothing_sent_may_go_to_another_instance_whatever_the_method(client: RestClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}/rest/echo"
    for method in ("POST", "GET"):
        with pytest.raises(CallFailed) as failed:
            await call(client, dead, RestCall(service="echo", method=method, path="/x", body=b"b"))
        assert isinstance(failed.value.error, UpstreamUnreachable) and failed.value.repeatable


async def test_a_post_that_reached_the_instance_is_never_tried_again(mock: MockServer, client: RestClient) -> None:
    before = mock.rest_calls().get("POST /drop", 0)
    with pytest.raises(CallFailed) as failed:
        await call(client, f"{mock.url}/rest/echo", RestCall(service="echo", method="POST", path="/drop", body=b"x"))
    assert isinstance(failed.value.error, UpstreamError) and not failed.value.repeatable
    assert mock.rest_calls()["POST /drop"] == before + 1
    quick = RestService(slug="echo", read_timeout_s=0.2)
    with pytest.raises(CallFailed) as slow:
        rest = RestCall(service="echo", method="POST", path="/slow?ms=1000")
        await call(client, f"{mock.url}/rest/echo", rest, service=quick)
    assert isinstance(slow.value.error, UpstreamTimeout) and not slow.value.repeatable
    with pytest.raises(CallFailed) as get:
        rest = RestCall(service="echo", method="GET", path="/slow?ms=1000")
        await call(client, f"{mock.url}/rest/echo", rest, service=quick)
    assert get.value.repeatable, "an idempotent call may"


async def test_a_cancelled_call_closes_the_upstream_at_once(mock: MockServer, client: RestClient) -> None:
    before = mock.stats()["rest"]["cancelled"]
    body = Body()
    rest = RestCall(service="echo", path="/download?mb=200&chunked=1")
    task = asyncio.create_task(call(client, f"{mock.url}/rest/echo", rest, body))
    while not body.parts:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 3
    while mock.stats()["rest"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the instance never saw the gateway leave"
        await asyncio.sleep(0.02)
    assert len(body.data) < 50 * 1024 * 1024


# ---- a whole request through RequestCall: chunks, Final, the walk over instances


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.tries: list[Try] = []

    async def send(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    async def tried(self, t: Try, _says_health: bool) -> None:
        self.tries.append(t)


def request(rest: RestCall, *bases: str, deadline_s: float = 30.0) -> Envelope:
    now = time.time_ns()
    return Envelope(
        reply="_INBOX.test",
        api="rest",
        rest=rest,
        id="req-rest",
        received_at_ns=now,
        deadline_ns=now + int(deadline_s * 1e9),
        candidates=[instance(base, i) for i, base in enumerate(bases)],
    )


async def run(client: RestClient, env: Envelope) -> tuple[Recorder, RequestCall, Final | Failure]:
    rec = Recorder()
    req = RequestCall(env, make_upstream_http(), rec.send, rec.tried, rest=caller(client))
    try:
        outcome = await req.run()
    except (WalkFailed, TimeoutError) as exc:
        return rec, req, await req.failure(exc)
    return rec, req, await req.final(outcome)


async def test_a_get_fails_over_from_a_dead_instance(mock: MockServer, client: RestClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}/rest/echo"
    env = request(RestCall(service="echo", path="/items/1"), dead, f"{mock.url}/rest/echo")
    rec, _, final = await run(client, env)
    assert isinstance(final, Final) and final.rest is not None and final.rest.status == 200
    assert [t.status for t in rec.tries] == [502, 200] and final.deployment == "rest:echo.v1:1"
    assert final.rest.head is not None and b'"/rest/echo/items/1"' in final.data and not rec.chunks
    assert final.cost is not None and final.cost.call == 7_000 and final.attempts == 2


async def test_a_post_whose_body_reached_an_instance_gets_one_try(mock: MockServer, client: RestClient) -> None:
    before = mock.rest_calls().get("POST /drop", 0)
    base = f"{mock.url}/rest/echo"
    env = request(RestCall(service="echo", method="POST", path="/drop", body=b"{}"), base, base)
    rec, _, failure = await run(client, env)
    assert isinstance(failure, Failure) and failure.status == 502 and failure.cost is None
    assert len(rec.tries) == 1 and mock.rest_calls()["POST /drop"] == before + 1


async def test_a_streamed_answer_goes_out_as_chunks_past_the_requests_deadline(
    mock: MockServer, client: RestClient
) -> None:
    rest = RestCall(service="echo", path="/sse?events=3&gap_ms=300")
    rec, _, final = await run(client, request(rest, f"{mock.url}/rest/echo", deadline_s=0.4))
    assert isinstance(final, Final), "once the head came, the read timeout alone bounds the wait"
    assert [c.seq for c in rec.chunks] == list(range(len(rec.chunks))) and final.seq == len(rec.chunks)
    first = rec.chunks[0]
    assert first.head is not None and first.head.status == 200 and first.deployment == "rest:echo.v1:0"
    assert all(c.head is None for c in rec.chunks[1:])
    assert b"".join(c.data for c in rec.chunks).count(b"data: ") == 3
    assert final.rest is not None and final.rest.head is None and final.rest.status == 200
    assert final.rest.response_bytes == sum(len(c.data) for c in rec.chunks) and final.data == b""


async def test_a_service_that_is_not_registered_is_a_404(client: RestClient) -> None:
    env = request(RestCall(service="nope", path="/x"), "http://127.0.0.1:1")
    _, _, failure = await run(client, env)
    assert isinstance(failure, Failure) and failure.status == 404


async def test_the_call_log_keeps_the_head_and_the_bodys_first_bytes(mock: MockServer, client: RestClient) -> None:
    env = request(RestCall(service="echo", path="/download?kb=200&chunked=1"), f"{mock.url}/rest/echo")
    env.call_log_max_bytes = 1000
    _, req, final = await run(client, env)
    logged = json.loads(logged_answer(req, final))
    assert logged["status"] == 200 and len(logged["body"]) > 0
    assert len(req.rest_logged) == 1000


# ---- health checks


async def test_health_checks_tell_which_instances_answer(mock: MockServer, client: RestClient) -> None:
    service = RestService(
        slug="echo",
        instances=[
            RestInstance(url=f"{mock.url}/rest/echo", health_path="/status/200"),
            RestInstance(url=f"{mock.url}/rest/echo", health_path="/status/503"),
            RestInstance(url=f"http://127.0.0.1:{free_port()}", health_path="/health"),
            RestInstance(url=f"{mock.url}/rest/echo"),
        ],
    )
    checks = HealthChecks(client, {service.key: service})
    outcomes = await checks.check_all()
    assert [(o.deployment, o.ok) for o in outcomes] == [
        (deployment_name(service, 0), True),
        (deployment_name(service, 1), False),
        (deployment_name(service, 2), False),
    ]
    assert deployment_name(service, 1) == "rest:echo.v1:1"
    assert all(o.ttfb_ns == 0 and not o.replica for o in outcomes), "no latency, no in-flight count"


def test_the_reply_log_keeps_a_long_downloads_last_window_only() -> None:
    """The provider keeps each request's replies for a replay: a 50 MB
    download's keep at most ``MAX_BYTES`` (a paced answer's window and
    more), not the body."""
    log = ReplyLog()
    data = bytes(SLICE)
    for seq in range(50 * 1024 * 1024 // SLICE):
        log.sent("req-big", "_INBOX.x", bus.encode(Chunk(id="req-big", seq=seq, delta=Delta(), data=data)))
    kept = log.replies("req-big")
    assert kept is not None
    _, payloads, dropped = kept
    assert WINDOW < sum(len(p) for p in payloads) <= MAX_BYTES
    assert dropped >= 50 * 1024 * 1024 // SLICE - MAX_BYTES // SLICE
    assert bus.decode_reply(payloads[-1]).seq == 50 * 1024 * 1024 // SLICE - 1


async def test_a_head_is_answered_whole_whatever_length_it_announces(mock: MockServer, client: RestClient) -> None:
    small = RestService(slug="echo", max_response_bytes=1000)
    rest = RestCall(service="echo", method="HEAD", path="/download?mb=2")
    outcome = await call(client, f"{mock.url}/rest/echo", rest, service=small)
    assert outcome.rest is not None and outcome.rest.status == 200 and outcome.data == b""


def test_a_redirect_into_the_instance_points_at_the_gateway_instead() -> None:
    raw = [
        (b"Location", b"http://10.1.2.3:9000/api/users/7?x=1"),
        (b"Connection", b"close, x-trace"),
        (b"X-Trace", b"abc"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Transfer-Encoding", b"chunked"),
    ]
    got = response_headers(raw, "http://10.1.2.3:9000/api/", "/services/users")
    assert got == [("location", "/services/users/users/7?x=1"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
    elsewhere = response_headers([(b"location", b"https://example.com/x")], "http://10.1.2.3:9000/api", "/s")
    assert elsewhere == [("location", "https://example.com/x")]
    sibling = response_headers([(b"location", b"http://10.1.2.3:9000/apix")], "http://10.1.2.3:9000/api", "/s")
    assert sibling == [("location", "http://10.1.2.3:9000/apix")]


# ---- a paced answer (services.flow_window): read from the service only as credit comes


async def test_a_paced_download_is_read_only_as_fast_as_credit_comes(mock: MockServer, client: RestClient) -> None:
    """A requester that takes 16 MB at ~40 MB/s: the adapter never sends a
    window past its credit, and the service's writes wait (TCP backpressure)."""
    window = SendWindow(4 * SLICE)
    ahead: list[int] = []

    class Paced(Body):
        async def __call__(self, head: RestHead | None, data: bytes) -> None:
            ahead.append(window.sent + len(data) - window.granted)
            await super().__call__(head, data)

    async def requester() -> None:
        while True:  # takes everything sent so far, 100 times a second
            await asyncio.sleep(0.01)
            window.grant(window.sent)

    before = mock.stats()["rest"]["paused_writes"]
    body = Paced()
    taking = asyncio.create_task(requester())
    try:
        rest = RestCall(service="echo", path="/download?mb=16&chunked=1")
        outcome = await call(client, f"{mock.url}/rest/echo", rest, body, flow=window)
    finally:
        taking.cancel()
    assert outcome.rest is not None and outcome.rest.response_bytes == len(body.data) == 16 * 1024 * 1024
    assert max(ahead) <= window.size + SLICE, "never more than a window past the credit"
    assert mock.stats()["rest"]["paused_writes"] > before, "the service was paused, not read ahead"


async def test_a_window_that_stays_shut_ends_the_call_and_its_connection(mock: MockServer, client: RestClient) -> None:
    """A requester that never grants: past the service's read timeout the
    call ends as a slow reader (tried nowhere else), the service's connection closed."""
    quick = RestService(slug="echo", read_timeout_s=0.3)
    before = mock.stats()["rest"]["cancelled"]
    body = Body()
    started = time.monotonic()
    with pytest.raises(CallFailed) as failed:
        rest = RestCall(service="echo", path="/download?mb=200&chunked=1")
        await call(client, f"{mock.url}/rest/echo", rest, body, service=quick, flow=SendWindow(4 * SLICE))
    assert failed.value.error.code == "slow_reader" and not failed.value.repeatable
    assert 0.3 <= time.monotonic() - started < 3 and len(body.data) < 5 * SLICE
    deadline = time.monotonic() + 3
    while mock.stats()["rest"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the service kept sending to no one"
        await asyncio.sleep(0.02)


async def test_a_requester_that_paces_gets_a_window_and_one_that_does_not_none(
    mock: MockServer, client: RestClient
) -> None:
    rest = RestCall(service="echo", path="/download?mb=200&chunked=1")
    paced = request(rest, f"{mock.url}/rest/echo")
    paced.flow_window = 4 * SLICE
    quick = RestService(slug="echo", read_timeout_s=0.3)
    rec = Recorder()
    req = RequestCall(paced, make_upstream_http(), rec.send, rec.tried, rest=caller(client, quick))
    assert req.window is not None and req.window.size == 4 * SLICE
    with pytest.raises(WalkFailed) as failed:
        await req.run()
    assert failed.value.error.code == "slow_reader" and sum(len(c.data) for c in rec.chunks) < 5 * SLICE
    assert [t.status for t in rec.tries] == [503]
    unpaced = RequestCall(request(rest, mock.url), make_upstream_http(), rec.send, rec.tried, rest=caller(client))
    assert unpaced.window is None


async def test_a_small_answer_whose_body_never_comes_whole_fails_as_cut_short(client: RestClient) -> None:
    """A head announcing 10 bytes, 3 of them, then the connection closes:
    read whole for the Final, the call fails as cut short (never retried)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(CallFailed) as failed:
            await call(client, f"http://127.0.0.1:{port}", RestCall(service="echo", path="/x"))
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(failed.value.error, UpstreamError) and not failed.value.repeatable
    assert "before its answer was complete" in failed.value.error.message
