"""``/services/<slug>/...`` in process: ingress.rest_endpoint with fake
mirrors and a scripted bus session. What the door refuses (and records),
what it publishes, and how the replies become the HTTP answer."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from ingress import rest_endpoint
from ingress.mailbox import Mailbox
from ingress.replies import DISCONNECTED
from ingress.rest_endpoint import FLUSH_BYTES, MAX_BACKLOG, RestDoor
from schemas.chat import Delta, Usage
from schemas.control import ApiKey, Secret
from schemas.errors import GatewayBusy, UpstreamError
from schemas.replies import Chunk, Failure, Final
from schemas.rest import RestCall, RestHead, RestInstance, RestResult, RestService
from services import flow_window
from services.forwarded import Proxies
from services.keys import hash_key

SECRET = "sk-rest-unit-0123456789"
KEY = ApiKey(id="k1", tenant_id="acme", secrets=[Secret(hash_key(SECRET))])
DOC = json.dumps({"openapi": "3.1.0", "paths": {"/items/{id}": {"get": {}}, "/items": {"post": {}}}}).encode()
INSTANCES = [RestInstance(url="http://127.0.0.1:9")]
# A reply the scripted session waits for (nothing comes until the client leaves).
WAIT = object()


def service(slug: str = "shop", **fields: Any) -> RestService:
    return RestService(slug=slug, instances=INSTANCES, openapi=DOC, **fields)


class FakeGateway:
    def __init__(self, *services: RestService, max_payload: int = 1 << 20) -> None:
        self.keys = SimpleNamespace(by_hash={hash_key(SECRET): KEY})
        self.rest_services = SimpleNamespace(items={s.key: s for s in services})
        self.settings = SimpleNamespace(body_timeout_s=1.0, request_timeout_s=3.0, stream_idle_timeout_s=3.0)
        self.nc = SimpleNamespace(max_payload=max_payload)
        self.rows: list[dict[str, Any]] = []

    def record(self, request_id: str, received_ns: int, api: str, model: str, *args: Any, **kw: Any) -> None:
        reply = args[1]
        self.rows.append({"api": api, "model": model, "reply": reply, **kw})


class ScriptedSession:
    """A BusSession whose replies are a script."""

    made: list[ScriptedSession] = []
    script: list[Any] = []
    # Whether the scripted replies are there already when one is taken (a burst).
    together = False
    # Replies waiting unread in the session's queue (a client slower than the upstream).
    backlog = 0

    def __init__(self, gw: Any, api: str, model: str, stream: bool, received_ns: int, request_id: str, **kw: Any):
        self.id, self.api, self.model, self.kw = request_id, api, model, kw
        self.queue: Mailbox[Any] = Mailbox()
        for _ in range(ScriptedSession.backlog):
            self.queue.put_nowait(b"")
        self.replies = list(ScriptedSession.script)
        self.published: tuple[str | None, RestCall] | None = None
        self.cancelled = self.closed = False
        self.recorded: list[Any] = []
        self.key_id = self.tenant_id = ""
        self.flow_window = 0
        # What the door said it wrote on of the body, write by write.
        self.written: list[int] = []
        ScriptedSession.made.append(self)

    async def publish(
        self, authorization: str | None, *, rest: RestCall, traceparent: str = "", flow_window: int = 0
    ) -> None:
        self.published = (authorization, rest)
        self.flow_window = flow_window

    async def wrote(self, n: int) -> None:
        self.written.append(n)

    def first_timeout(self) -> float:
        return 2.0

    def has_more(self) -> bool:
        return ScriptedSession.together and bool(self.replies) and self.replies[0] is not WAIT

    async def next_reply(self, timeout_s: float) -> Any:
        if self.replies and self.replies[0] is not WAIT:
            return self.replies.pop(0)
        got = await self.queue.get(timeout_s)
        return None if got is DISCONNECTED else got

    async def cancel(self) -> None:
        self.cancelled = True

    def record(self, reply: Any) -> None:
        self.recorded.append(reply)

    def close(self) -> None:
        self.closed = True


class Client:
    """Drives one ASGI request through the door."""

    def __init__(self, gw: FakeGateway, proxies: str = "127.0.0.1") -> None:
        self.gw = gw
        self.door = RestDoor(gw, new_session=ScriptedSession, proxies=Proxies(proxies))  # type: ignore[arg-type]

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: list[bytes] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        key: str | None = SECRET,
        replies: list[Any] | None = None,
        leave_after: int | None = None,
        query: bytes = b"",
        busy: Any = None,
        together: bool = False,
        backlog: int = 0,
        peer: tuple[str, str] = ("192.0.2.7", "http"),
        stuck_after: int | None = None,
    ) -> tuple[list[dict[str, Any]], ScriptedSession | None]:
        """``peer``: the socket's address and scheme; ``stuck_after``: the
        client stops reading after that many writes of the body."""
        ScriptedSession.made.clear()
        ScriptedSession.script = replies or []
        ScriptedSession.together = together
        ScriptedSession.backlog = backlog
        parts = list(body or [b""])
        sent: list[dict[str, Any]] = []
        left = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if parts:
                chunk = parts.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            bodies = [m for m in sent if m["type"] == "http.response.body"]
            if stuck_after is not None and len(bodies) >= stuck_after:
                await asyncio.Event().wait()  # the server waits for a socket that never drains
            sent.append(message)
            bodies = [m for m in sent if m["type"] == "http.response.body"]
            if leave_after is not None and len(bodies) >= leave_after:
                left.set()

        auth = [(b"authorization", f"Bearer {key}".encode())] if key else []
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": auth + (headers or []),
            "sluice.received_ns": 1,
            "sluice.request_id": "req-1",
            "sluice.peer": peer,
        }
        await asyncio.wait_for(self.door.serve(scope, receive, send, busy=busy), 5)
        return sent, (ScriptedSession.made[0] if ScriptedSession.made else None)


def head(sent: list[dict[str, Any]]) -> tuple[int, dict[bytes, bytes]]:
    start = sent[0]
    assert start["type"] == "http.response.start"
    return start["status"], dict(start["headers"])


def error(sent: list[dict[str, Any]]) -> tuple[int, str]:
    status, _ = head(sent)
    return status, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]["code"]


def chunk(seq: int, data: bytes, head: RestHead | None = None, deployment: str = "") -> Chunk:
    return Chunk(id="req-1", seq=seq, delta=Delta(), head=head, data=data, deployment=deployment)


def final(seq: int, data: bytes = b"", **rest: Any) -> Final:
    return Final(id="req-1", seq=seq, model="", usage=Usage(), rest=RestResult(**rest), data=data)


async def test_the_call_is_published_with_its_route_and_headers_and_its_answer_streams_part_by_part() -> None:
    client = Client(FakeGateway(service()))
    replies = [
        chunk(0, b"", RestHead(200, [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")]), "i-1"),
        chunk(1, b"data: 1\n\n"),
        chunk(2, b"data: 2\n\n"),
        final(3, b"data: end\n\n", response_bytes=27, status=200),
    ]
    sent, session = await client.call(
        "GET", "/services/shop/items/42", query=b"x=1", headers=[(b"accept", b"text/event-stream")], replies=replies
    )
    assert session is not None and session.published is not None
    authorization, call = session.published
    assert authorization == f"Bearer {SECRET}"
    assert (call.service, call.version, call.method, call.path, call.route) == (
        "shop",
        1,
        "GET",
        "/items/42?x=1",
        "/items/{id}",
    )
    assert call.headers == [
        ("accept", "text/event-stream"),
        ("x-forwarded-for", "192.0.2.7"),
        ("x-forwarded-proto", "http"),
    ]
    assert call.body == b"" and session.flow_window == flow_window.WINDOW
    assert session.model == "service:shop" and session.api == "rest"
    status, headers = head(sent)
    assert status == 200 and headers[b"content-type"] == b"text/event-stream"
    assert headers[b"x-request-id"] == b"req-1" and headers[b"x-sluice-deployment"] == b"i-1"
    assert b"transfer-encoding" not in headers
    # Each part as it came, the end closing the body.
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [
        (b"data: 1\n\n", True),
        (b"data: 2\n\n", True),
        (b"data: end\n\n", False),
    ]
    assert session.closed and not session.cancelled and client.gw.rows == []


async def test_parts_that_arrived_together_go_out_in_one_write_up_to_a_bound() -> None:
    client = Client(FakeGateway(service()))
    big = b"x" * (FLUSH_BYTES // 2 + 1)
    replies = [
        chunk(0, b"a", RestHead(200)),
        chunk(1, b"b"),
        chunk(2, big),
        chunk(3, big),
        chunk(4, b"c"),
        final(5, b"d"),
    ]
    sent, _ = await client.call("GET", "/services/shop/items/1", replies=replies, together=True)
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [
        (b"ab" + big + big, True),
        (b"cd", False),
    ]


async def test_a_small_answer_comes_in_the_final_alone() -> None:
    client = Client(FakeGateway(service()))
    replies = [final(0, b'{"id": 1}', head=RestHead(201, [("content-type", "application/json")]), response_bytes=9)]
    sent, session = await client.call("POST", "/services/shop/items", body=[b'{"name":', b'"x"}'], replies=replies)
    assert session is not None and session.published is not None
    assert session.published[1].body == b'{"name":"x"}' and session.published[1].route == "/items"
    assert head(sent)[0] == 201
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [(b'{"id": 1}', False)]


async def test_a_failure_before_the_head_is_a_json_error_with_its_status() -> None:
    client = Client(FakeGateway(service()))
    failure = Failure.from_error("req-1", UpstreamError("no instance answered", code="upstream_unreachable"))
    sent, session = await client.call("GET", "/services/shop/items/1", replies=[failure])
    assert error(sent) == (502, "upstream_unreachable")
    assert session is not None and session.recorded == [failure]


async def test_a_failure_after_the_head_cuts_the_body_short() -> None:
    client = Client(FakeGateway(service()))
    failure = Failure.from_error("req-1", UpstreamError("the instance went away"), seq=2)
    replies = [chunk(0, b"part", RestHead(200)), failure]
    sent, session = await client.call("GET", "/services/shop/items/1", replies=replies)
    assert head(sent)[0] == 200
    # The part that came, and no end of the body: the server closes the connection instead.
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [(b"part", True)]
    assert session is not None and session.recorded == [failure]


async def test_a_client_that_leaves_mid_answer_cancels_the_call() -> None:
    client = Client(FakeGateway(service()))
    sent, session = await client.call(
        "GET", "/services/shop/items/1", replies=[chunk(0, b"first", RestHead(200)), WAIT], leave_after=1
    )
    assert [m["body"] for m in sent[1:]] == [b"first"]
    assert session is not None and session.cancelled and session.closed


async def test_the_key_comes_first_then_the_service() -> None:
    gw = FakeGateway(service())
    client = Client(gw)
    sent, session = await client.call("GET", "/services/shop/items/1", key=None)
    assert error(sent) == (401, "missing_api_key") and session is None
    sent, _ = await client.call("GET", "/services/shop/items/1", key="sk-wrong")
    assert error(sent) == (401, "invalid_api_key")
    sent, _ = await client.call("GET", "/services/nope/items/1")
    assert error(sent) == (404, "service_not_found")
    row = gw.rows[-1]
    assert row["api"] == "rest" and row["model"] == "service:nope"
    assert row["rest"].service == "nope" and row["reply"].key_id == "k1" and row["reply"].tenant_id == "acme"


async def test_x_api_key_is_a_gateway_key_too_and_neither_is_passed_on() -> None:
    client = Client(FakeGateway(service()))
    replies = [final(0, b"", head=RestHead(204))]
    sent, session = await client.call(
        "DELETE", "/services/shop/items/1", key=None, headers=[(b"x-api-key", SECRET.encode())], replies=replies
    )
    assert head(sent)[0] == 204
    assert session is not None and session.published is not None
    assert session.published[0] == f"Bearer {SECRET}"
    assert [name for name, _ in session.published[1].headers] == ["x-forwarded-for", "x-forwarded-proto"]


async def test_lifecycle_drafts_retired_and_deprecated_services() -> None:
    gw = FakeGateway(
        service("draft", state="draft"),
        service("old", state="retired", successor="new"),
        service(
            "aging",
            state="deprecated",
            deprecated_at_ms=1_700_000_000_000,
            successor="new",
            sunset_at_ms=1_900_000_000_000,
        ),
    )
    client = Client(gw)
    assert error((await client.call("GET", "/services/draft/x"))[0]) == (404, "service_not_found")
    sent, _ = await client.call("GET", "/services/old/x")
    assert error(sent) == (410, "service_retired")
    assert head(sent)[1][b"link"] == b'</services/new>; rel="successor-version"'
    sent, _ = await client.call("GET", "/services/aging/x", replies=[final(0, b"ok", head=RestHead(200))])
    status, headers = head(sent)
    assert status == 200 and headers[b"deprecation"] == b"@1700000000" and b"sunset" in headers
    assert headers[b"link"] == b'</services/new>; rel="successor-version"'


async def test_a_version_segment_selects_that_version() -> None:
    gw = FakeGateway(service(), service(version=2, methods=["GET"]))
    client = Client(gw)
    _, session = await client.call("GET", "/services/shop/v2/items/9", replies=[final(0, head=RestHead(200))])
    assert session is not None and session.published is not None
    call = session.published[1]
    assert (call.version, call.path, call.route) == (2, "/items/9", "/items/{id}")
    assert session.model == "service:shop/v2"
    _, session = await client.call("GET", "/services/shop/v3/items/9", replies=[final(0, head=RestHead(200))])
    assert session is not None and session.published is not None
    assert (session.published[1].version, session.published[1].path) == (1, "/v3/items/9")


async def test_a_method_the_service_does_not_take_is_a_405_with_allow_and_its_row_names_the_route() -> None:
    gw = FakeGateway(service(methods=["GET", "HEAD"]))
    sent, session = await Client(gw).call("POST", "/services/shop/items/3")
    assert error(sent) == (405, "method_not_allowed") and head(sent)[1][b"allow"] == b"GET, HEAD"
    assert session is None
    call = gw.rows[-1]["rest"]
    assert (call.service, call.method, call.route) == ("shop", "POST", "/items/{id}")


async def test_a_body_past_the_cap_is_a_413_declared_or_while_read() -> None:
    gw = FakeGateway(service(max_request_bytes=10))
    client = Client(gw)
    sent, _ = await client.call("POST", "/services/shop/items", headers=[(b"content-length", b"11")], body=[b"x" * 11])
    assert error(sent) == (413, "request_too_large")
    parts = [b"x" * 6, b"x" * 6, b"never read"]
    sent, session = await client.call("POST", "/services/shop/items", body=parts)
    assert error(sent) == (413, "request_too_large") and session is None
    assert gw.rows[-1]["rest"].route == "/items"


async def test_the_bus_caps_a_body_the_service_would_take() -> None:
    gw = FakeGateway(service(), max_payload=200 * 1024)
    sent, _ = await Client(gw).call("POST", "/services/shop/items", body=[b"x" * 100 * 1024])
    assert error(sent) == (413, "request_too_large")


async def test_an_unsafe_path_is_refused_before_anything_is_published() -> None:
    gw = FakeGateway(service())
    sent, session = await Client(gw).call("GET", "/services/shop/%2e%2e/admin")
    assert error(sent) == (400, "invalid_path") and session is None


async def test_a_busy_process_refuses_with_a_row_naming_the_service() -> None:
    gw = FakeGateway(service())
    busy = GatewayBusy("busy", retry_after_s=1)
    sent, session = await Client(gw).call("GET", "/services/shop/items/1", busy=busy)
    assert error(sent) == (503, "gateway_busy") and head(sent)[1][b"retry-after"] == b"1"
    assert session is None and gw.rows[-1]["rest"].service == "shop"


async def test_a_client_that_reads_far_slower_than_the_upstream_sends_is_cut_off() -> None:
    client = Client(FakeGateway(service()))
    replies = [chunk(0, b"first", RestHead(200)), chunk(1, b"second")]
    sent, session = await client.call("GET", "/services/shop/items/1", replies=replies, backlog=MAX_BACKLOG + 1)
    assert [(m["body"], m.get("more_body", False)) for m in sent[1:]] == [(b"first", True)]
    assert session is not None and session.cancelled
    sent, session = await client.call(
        "GET", "/services/shop/items/1", replies=[*replies, final(2)], backlog=MAX_BACKLOG
    )
    assert sent[-1] == {"type": "http.response.body", "body": b""}
    assert session is not None and not session.cancelled


async def test_each_write_of_the_body_is_told_to_the_session_which_paces_the_provider() -> None:
    client = Client(FakeGateway(service()))
    big = b"x" * FLUSH_BYTES
    replies = [chunk(0, b"a", RestHead(200)), chunk(1, big), chunk(2, b"bc"), final(3, b"tail")]
    sent, session = await client.call("GET", "/services/shop/items/1", replies=replies)
    assert [len(m["body"]) for m in sent[1:]] == [1, FLUSH_BYTES, 2, 4]
    # What went out with more to come is credited; the end needs none.
    assert session is not None and session.written == [1, FLUSH_BYTES, 2]


async def test_a_client_that_stops_reading_is_cut_after_the_services_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rest_endpoint, "WRITE_GRACE_S", 0.05)
    client = Client(FakeGateway(service(read_timeout_s=0.2)))
    replies = [chunk(0, b"first", RestHead(200)), chunk(1, b"second"), final(2)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent, session = await client.call("GET", "/services/shop/items/1", replies=replies, stuck_after=1)
    assert 0.25 <= loop.time() - started < 2
    assert [m["body"] for m in sent[1:]] == [b"first"]
    assert session is not None and session.cancelled and session.closed


async def test_the_proxy_headers_are_the_gateways_never_the_callers_as_given() -> None:
    spoofed = [
        (b"host", b"shop.example:8443"),
        (b"x-forwarded-for", b"6.6.6.6"),
        (b"x-forwarded-for", b"10.0.0.9"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"evil.example"),
    ]
    replies = [final(0, b"", head=RestHead(204))]

    async def forwarded(client: Client, peer: tuple[str, str]) -> dict[str, str]:
        _, session = await client.call("GET", "/services/shop/items/1", headers=spoofed, replies=replies, peer=peer)
        assert session is not None and session.published is not None
        got = [(k, v) for k, v in session.published[1].headers if k.startswith("x-forwarded-")]
        assert len(got) == len({k for k, _ in got}), "each once"
        return dict(got)

    # A caller the gateway does not trust as a proxy: all three from its connection.
    direct = await forwarded(Client(FakeGateway(service())), ("203.0.113.5", "http"))
    assert direct == {
        "x-forwarded-for": "203.0.113.5",
        "x-forwarded-proto": "http",
        "x-forwarded-host": "shop.example:8443",
    }
    # A proxy it trusts: its chain, with its own address appended; its proto and host stand.
    proxied = await forwarded(Client(FakeGateway(service()), proxies="10.1.0.0/16"), ("10.1.2.3", "http"))
    assert proxied == {
        "x-forwarded-for": "6.6.6.6, 10.0.0.9, 10.1.2.3",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "evil.example",
    }


async def test_a_whole_answer_says_what_it_cost_and_a_streamed_one_cannot() -> None:
    client = Client(FakeGateway(service(price_pico_usd=5_000)))
    whole = final(0, b"{}", head=RestHead(200), response_bytes=2)
    whole.cost.call, whole.attempts = 5_000, 1
    sent, _ = await client.call("GET", "/services/shop/items/1", replies=[whole])
    headers = head(sent)[1]
    assert headers[b"x-sluice-cost-pico-usd"] == b"5000" and headers[b"x-sluice-attempts"] == b"1"
    streamed = [chunk(0, b"{", RestHead(200), "i-1"), final(1, b"}", response_bytes=2)]
    sent, _ = await client.call("GET", "/services/shop/items/1", replies=streamed)
    assert b"x-sluice-cost-pico-usd" not in head(sent)[1], "its head went out before its end"
