"""REST services over ``/admin/v1/services`` on the whole stack: a record
made here lands in KV (every stage's watch sees it), callers reach it once
published, its lifecycle reaches them as headers and a 410, and its
OpenAPI document (fetched from a server on loopback) gives the route
templates its calls' rows record."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from schemas import subjects
from schemas.rest import RestService, decode_service
from services.bus.kv import kv_key
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

DOC = {"openapi": "3.1.0", "info": {"title": "Echo", "version": "1"}, "paths": {"/orders/{id}": {"get": {}}}}


def admin(stack: Stack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.request(method, f"{stack.admin_url}/services{path}", headers=headers, timeout=15, **kwargs)


def call(stack: Stack, path: str) -> httpx.Response:
    url = f"http://127.0.0.1:{stack.layout.http_port}/services/{path}"
    return httpx.get(url, headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=10)


def eventually(attempt: Callable[[], httpx.Response], ok: Callable[[httpx.Response], bool]) -> httpx.Response:
    """Every stage follows the record through its own watch of the bucket: a
    call right after a change may still meet the record before it."""
    deadline = time.monotonic() + 10
    while True:
        resp = attempt()
        if ok(resp) or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


async def stored(stack: Stack, key: str) -> RestService | None:
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_SERVICES)
        try:
            entry = await kv.get(kv_key(key))
        except Exception:  # deleted or never there
            return None
        return decode_service(entry.value) if entry.value else None
    finally:
        await nc.close()


class _Docs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(DOC).encode()
        self.send_response(200 if self.path == "/openapi.json" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def docs_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Docs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/openapi.json"
    server.shutdown()
    server.server_close()


def test_a_service_registered_here_is_stored_published_documented_and_called(stack: Stack, docs_url: str) -> None:
    slug = f"orders-{time.monotonic_ns() % 10**8}"
    body = {"slug": slug, "title": "Orders", "instances": [{"url": f"{stack.mock_url}/rest/echo"}]}
    made = admin(stack, "POST", "", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "draft"
    record = asyncio.run(stored(stack, f"{slug}.v1"))
    assert record is not None and record.owner == "api" and record.instances[0].url.endswith("/rest/echo")
    assert call(stack, f"{slug}/orders/1").json()["error"]["code"] == "service_not_found"  # a draft
    fetched = admin(stack, "POST", f"/{slug}/openapi/fetch", json={"url": docs_url})
    assert fetched.status_code == 200, fetched.text
    assert (fetched.json()["openapi_paths"], fetched.json()["openapi_url"]) == (1, docs_url)
    assert admin(stack, "GET", f"/{slug}/openapi").json() == DOC
    assert admin(stack, "POST", f"/{slug}/publish").json()["state"] == "published"
    answer = eventually(lambda: call(stack, f"{slug}/orders/42?x=1"), lambda r: r.status_code == 200)
    assert answer.status_code == 200, answer.text
    echoed = answer.json()
    assert (echoed["method"], echoed["path"], echoed["query"]) == ("GET", "/rest/echo/orders/42", "x=1")
    assert "authorization" not in echoed["headers"]  # the gateway key stays at the gateway
    row = stack.request_row(answer.headers["x-request-id"])
    assert (row["api"], row["rest_service"], row["http_method"], row["route"], row["status"]) == (
        "rest",
        slug,
        "GET",
        "/orders/{id}",
        200,
    )


def test_the_lifecycle_reaches_callers_as_headers_then_a_410(stack: Stack) -> None:
    slug = f"aging-{time.monotonic_ns() % 10**8}"
    instances = [{"url": f"{stack.mock_url}/rest/echo"}]
    for version in (1, 2):
        made = admin(stack, "POST", "", json={"slug": slug, "version": version, "instances": instances})
        assert made.status_code == 201, made.text
        assert admin(stack, "POST", f"/{slug}/publish?version={version}").status_code == 200
    deprecated = admin(
        stack, "POST", f"/{slug}/deprecate", json={"sunset_at": "2031-01-01T00:00:00Z", "successor": f"{slug}/v2"}
    )
    assert deprecated.status_code == 200, deprecated.text
    answer = eventually(lambda: call(stack, f"{slug}/x"), lambda r: "deprecation" in r.headers)
    assert answer.status_code == 200 and answer.headers["sunset"] == "Wed, 01 Jan 2031 00:00:00 GMT"
    assert answer.headers["link"] == f'</services/{slug}/v2>; rel="successor-version"'
    assert call(stack, f"{slug}/v2/x").json()["path"] == "/rest/echo/x"
    assert admin(stack, "POST", f"/{slug}/retire", json={}).status_code == 200
    gone = eventually(lambda: call(stack, f"{slug}/x"), lambda r: r.status_code == 410)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "service_retired"
    assert admin(stack, "DELETE", f"/{slug}?version=2").json() == {"id": f"{slug}.v2", "deleted": True}
    assert asyncio.run(stored(stack, f"{slug}.v2")) is None
