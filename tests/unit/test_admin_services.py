"""/admin/v1/services in process: the Litestar admin app over an in-memory
KV writer. Who may do what, the lifecycle's moves, the OpenAPI document's
upload and fetch (from a local server), config-owned records left alone."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from litestar.exceptions import LitestarDeprecationWarning
from litestar.testing import AsyncTestClient

from ingress.admin import app as admin_app
from ingress.admin.store import ControlStore
from schemas import subjects
from schemas.admin_services import ServiceCreate
from schemas.control import ApiKey, Secret
from schemas.rest import RestInstance, RestService
from services import rest_records
from services.bus.kv import KvMirror
from services.bus.kv_writer import Conflict
from services.keys import hash_key

GATEWAY_ADMIN = "sk-admin-unit-0123456789"
TENANT_ADMIN = "sk-tenant-admin-unit-0123456789"
CALLER = "sk-caller-unit-0123456789"
KEYS = {
    hash_key(GATEWAY_ADMIN): ApiKey(
        id="root", tenant_id="", role="gateway_admin", secrets=[Secret(hash_key(GATEWAY_ADMIN))]
    ),
    hash_key(TENANT_ADMIN): ApiKey(
        id="ta", tenant_id="acme", role="tenant_admin", secrets=[Secret(hash_key(TENANT_ADMIN))]
    ),
    hash_key(CALLER): ApiKey(id="c", tenant_id="acme", secrets=[Secret(hash_key(CALLER))]),
}
DOC = {
    "openapi": "3.1.0",
    "info": {"title": "Shop", "version": "1"},
    "paths": {"/items/{id}": {"get": {}}, "/items": {}},
}
BODY = {"slug": "shop", "instances": [{"url": "http://127.0.0.1:9000/api"}], "title": "Shop"}


class FakeWriter:
    """KvWriter's reads and revision-checked writes, in memory; the audit trail as a list."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[Any, int]] = {}
        self.revision = 0
        self.audit: list[tuple[str, str, str]] = []

    async def read(self, bucket: str, name: str, decode: Any) -> tuple[Any, int]:
        return self.entries.get((bucket, name), (None, 0))

    async def write(
        self, bucket: str, name: str, record: Any, *, revision: int, actor: str, action: str, **_: Any
    ) -> int:
        held = self.entries.get((bucket, name))
        if (held[1] if held else 0) != revision:
            raise Conflict(name)
        self.revision += 1
        self.entries[(bucket, name)] = (record, self.revision)
        self.audit.append((actor, action, name))
        return self.revision

    async def delete(self, bucket: str, name: str, *, revision: int, actor: str, **_: Any) -> None:
        if self.entries.get((bucket, name), (None, 0))[1] != revision:
            raise Conflict(name)
        del self.entries[(bucket, name)]
        self.audit.append((actor, "delete", name))


@pytest.fixture
async def admin() -> AsyncIterator[tuple[AsyncTestClient, FakeWriter, ControlStore]]:
    buckets = [
        subjects.KV_TENANTS, subjects.KV_KEYS, subjects.KV_SUBSCRIPTIONS, subjects.KV_APPROVAL_RULES,
        subjects.KV_KEY_USAGE, subjects.KV_PROMPTS, subjects.KV_PROMPT_VERSIONS, subjects.KV_MCP_SERVERS,
        subjects.KV_MCP_CATALOG, subjects.KV_SERVICES,
    ]  # fmt: skip
    writer = FakeWriter()
    store = ControlStore(writer, {b: KvMirror(b, lambda raw: raw) for b in buckets})  # type: ignore[arg-type]
    config_owned = RestService(slug="billing", instances=[RestInstance(url="http://127.0.0.1:9001")], owner="config")
    writer.entries[(subjects.KV_SERVICES, "billing.v1")] = (config_owned, 1)
    store.services.mirror.apply("billing.v1", config_owned)
    with warnings.catch_warnings():
        # The admin app's existing handlers infer their dependencies, which
        # Litestar 2 warns of (the ingress process runs without -W error).
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        app = admin_app.build(SimpleNamespace(keys=SimpleNamespace(by_hash=KEYS)), store)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        yield client, writer, store


def auth(key: str = GATEWAY_ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def code(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


async def test_a_gateway_admin_registers_reads_changes_and_deletes_a_service(admin: Any) -> None:
    client, writer, store = admin
    made = await client.post("/admin/v1/services", json=BODY, headers=auth())
    assert made.status_code == 201, made.text
    out = made.json()
    assert (out["slug"], out["version"], out["path"], out["state"], out["owner"]) == (
        "shop",
        1,
        "/services/shop",
        "draft",
        "api",
    )
    assert out["strip_headers"] == ["authorization", "cookie"] and out["created_at"]
    assert store.services.mirror.items["shop.v1"].instances[0].url == "http://127.0.0.1:9000/api"
    assert code(await client.post("/admin/v1/services", json=BODY, headers=auth())) == (409, "conflict")
    v2 = await client.post("/admin/v1/services", json={**BODY, "version": 2, "state": "published"}, headers=auth())
    assert v2.json()["path"] == "/services/shop/v2"
    changed = await client.patch(
        "/admin/v1/services/shop?version=2",
        json={"rpm": 60, "methods": ["GET"], "strip_headers": ["X-Internal"]},
        headers=auth(),
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["rpm"], changed.json()["methods"], changed.json()["strip_headers"]) == (
        60,
        ["GET"],
        ["x-internal"],
    )
    cleared = await client.patch("/admin/v1/services/shop?version=2", json={"rpm": None}, headers=auth())
    assert cleared.json()["rpm"] is None and cleared.json()["methods"] == ["GET"]
    assert (await client.get("/admin/v1/services/shop", headers=auth())).json()["version"] == 1
    listed = [(s["slug"], s["version"]) for s in (await client.get("/admin/v1/services", headers=auth())).json()]
    assert listed == [("billing", 1), ("shop", 1), ("shop", 2)]
    gone = await client.delete("/admin/v1/services/shop?version=2", headers=auth())
    assert gone.json() == {"id": "shop.v2", "deleted": True}
    assert code(await client.get("/admin/v1/services/shop?version=2", headers=auth())) == (404, "not_found")
    assert [a[1] for a in writer.audit] == ["create", "create", "update", "update", "delete"]


async def test_bad_records_are_refused_with_what_is_wrong(admin: Any) -> None:
    client, _, _ = admin
    for body, where in (
        ({**BODY, "slug": "Bad_Slug"}, "slug"),
        ({**BODY, "instances": []}, "instances"),
        ({**BODY, "instances": [{"url": "ftp://h/x"}]}, "http"),
        ({**BODY, "instances": [{"url": "http://user:pw@h/x"}]}, "credentials"),
        ({**BODY, "add_headers": [{"name": "Connection", "env": "X"}]}, "hop-by-hop"),
        ({**BODY, "add_headers": [{"name": "X-Token", "env": "not a name"}]}, "environment variable"),
        ({**BODY, "methods": ["TRACE"]}, "methods"),
        ({**BODY, "unknown": 1}, "unknown"),
        ({**BODY, "read_timeout_s": 0}, "read_timeout_s"),
    ):
        resp = await client.post("/admin/v1/services", json=body, headers=auth())
        assert resp.status_code == 400, (body, resp.text)
        assert where in resp.json()["error"]["message"], (where, resp.text)
    assert code(await client.get("/admin/v1/services/shop?version=0", headers=auth()))[0] == 400


async def test_tenant_admins_read_but_see_no_drafts_and_write_nothing_and_callers_get_nothing(admin: Any) -> None:
    client, _, _ = admin
    await client.post("/admin/v1/services", json=BODY, headers=auth())
    listed = (await client.get("/admin/v1/services", headers=auth(TENANT_ADMIN))).json()
    assert [s["slug"] for s in listed] == ["billing"]
    assert code(await client.get("/admin/v1/services/shop", headers=auth(TENANT_ADMIN))) == (404, "not_found")
    assert (await client.get("/admin/v1/services/billing", headers=auth(TENANT_ADMIN))).status_code == 200
    for method, path, body in (
        ("POST", "/admin/v1/services", {**BODY, "slug": "other"}),
        ("PATCH", "/admin/v1/services/shop", {"rpm": 1}),
        ("DELETE", "/admin/v1/services/shop", None),
        ("POST", "/admin/v1/services/shop/publish", None),
        ("PUT", "/admin/v1/services/shop/openapi", DOC),
    ):
        resp = await client.request(method, path, json=body, headers=auth(TENANT_ADMIN))
        assert code(resp) == (403, "gateway_admin_only"), (method, path)
    assert code(await client.get("/admin/v1/services", headers=auth(CALLER))) == (403, "not_an_admin")
    assert code(await client.get("/admin/v1/services"))[0] == 401


async def test_the_lifecycle_publish_deprecate_with_sunset_and_successor_then_retire(admin: Any) -> None:
    client, _, store = admin
    await client.post("/admin/v1/services", json=BODY, headers=auth())
    await client.post("/admin/v1/services", json={**BODY, "version": 2}, headers=auth())
    draft_deprecated = await client.post("/admin/v1/services/shop/deprecate", json={}, headers=auth())
    assert code(draft_deprecated) == (409, "invalid_state")
    assert (await client.post("/admin/v1/services/shop/publish", headers=auth())).json()["state"] == "published"
    no_such = await client.post("/admin/v1/services/shop/deprecate", json={"successor": "shop/v7"}, headers=auth())
    assert code(no_such) == (400, "invalid_successor")
    itself = await client.post("/admin/v1/services/shop/deprecate", json={"successor": "shop"}, headers=auth())
    assert code(itself) == (400, "invalid_successor")
    deprecated = await client.post(
        "/admin/v1/services/shop/deprecate",
        json={"sunset_at": "2030-01-01T00:00:00Z", "successor": "shop/v2"},
        headers=auth(),
    )
    out = deprecated.json()
    assert (out["state"], out["successor"], out["sunset_at"]) == ("deprecated", "shop/v2", "2030-01-01T00:00:00Z")
    first = store.services.mirror.items["shop.v1"].deprecated_at_ms
    assert first > 0
    naive = await client.post(
        "/admin/v1/services/shop/deprecate", json={"sunset_at": "2030-01-01T00:00:00"}, headers=auth()
    )
    assert code(naive) == (400, "invalid_time")
    retired = await client.post("/admin/v1/services/shop/retire", json={}, headers=auth())
    assert retired.json()["state"] == "retired" and retired.json()["successor"] == "shop/v2"
    assert store.services.mirror.items["shop.v1"].deprecated_at_ms == first  # since when, kept
    assert code(await client.post("/admin/v1/services/shop/publish", headers=auth())) == (409, "service_retired")
    assert code(await client.post("/admin/v1/services/shop/retire?version=2", json={}, headers=auth())) == (
        409,
        "invalid_state",
    )


async def test_config_owned_services_are_read_only_here(admin: Any) -> None:
    client, writer, _ = admin
    assert (await client.get("/admin/v1/services/billing", headers=auth())).json()["owner"] == "config"
    for method, path, body in (
        ("PATCH", "/admin/v1/services/billing", {"rpm": 1}),
        ("DELETE", "/admin/v1/services/billing", None),
        ("POST", "/admin/v1/services/billing/deprecate", {}),
        ("PUT", "/admin/v1/services/billing/openapi", DOC),
    ):
        resp = await client.request(method, path, json=body, headers=auth())
        assert code(resp) == (409, "owned_by_config"), (method, path)
    assert writer.audit == []


async def test_an_openapi_document_is_uploaded_checked_and_read_back(admin: Any) -> None:
    client, _, store = admin
    await client.post("/admin/v1/services", json=BODY, headers=auth())
    assert code(await client.get("/admin/v1/services/shop/openapi", headers=auth())) == (404, "no_openapi")
    put = await client.put("/admin/v1/services/shop/openapi", content=json.dumps(DOC).encode(), headers=auth())
    assert put.status_code == 200, put.text
    assert (put.json()["openapi_paths"], put.json()["openapi_bytes"]) == (2, len(json.dumps(DOC)))
    got = await client.get("/admin/v1/services/shop/openapi", headers=auth())
    assert got.headers["content-type"].startswith("application/json") and got.json() == DOC
    for bad, expected in (
        (b"not json", "invalid_openapi"),
        (b"[1, 2]", "invalid_openapi"),
        (b'{"openapi": "3.1.0"}', "invalid_openapi"),
        (b'{"paths": []}', "invalid_openapi"),
    ):
        assert code(await client.put("/admin/v1/services/shop/openapi", content=bad, headers=auth())) == (400, expected)
    huge = json.dumps({"paths": {}, "x": "y" * (1 << 20)}).encode()
    assert (await client.put("/admin/v1/services/shop/openapi", content=huge, headers=auth())).status_code == 413
    assert store.services.mirror.items["shop.v1"].openapi == json.dumps(DOC).encode()


class _Docs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/openapi.json":
            body = json.dumps(DOC).encode()
            self.send_response(200)
        elif self.path == "/big.json":
            body = b'{"paths": {}, "x": "' + b"y" * (2 << 20) + b'"}'
            self.send_response(200)
        elif self.path == "/moved":
            body = b""
            self.send_response(302)
            self.send_header("location", "/openapi.json")
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def docs_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Docs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_an_openapi_document_is_fetched_from_the_service_within_bounds(admin: Any, docs_server: str) -> None:
    client, _, store = admin
    await client.post("/admin/v1/services", json=BODY, headers=auth())
    none = await client.post("/admin/v1/services/shop/openapi/fetch", headers=auth())
    assert code(none) == (400, "missing_openapi_url")
    fetched = await client.post(
        "/admin/v1/services/shop/openapi/fetch", json={"url": f"{docs_server}/openapi.json"}, headers=auth()
    )
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["openapi_url"] == f"{docs_server}/openapi.json" and fetched.json()["openapi_paths"] == 2
    assert json.loads(store.services.mirror.items["shop.v1"].openapi) == DOC
    # Again from the URL the service now has.
    assert (await client.post("/admin/v1/services/shop/openapi/fetch", headers=auth())).status_code == 200
    for url, expected in (
        (f"{docs_server}/big.json", (413, "openapi_too_large")),
        (f"{docs_server}/moved", (502, "openapi_fetch_failed")),
        (f"{docs_server}/missing", (502, "openapi_fetch_failed")),
        ("file:///etc/passwd", (400, "invalid_openapi_url")),
        ("http://127.0.0.1:1/openapi.json", (502, "openapi_fetch_failed")),
    ):
        resp = await client.post("/admin/v1/services/shop/openapi/fetch", json={"url": url}, headers=auth())
        assert code(resp) == expected, (url, resp.text)


def test_a_service_registered_deprecated_or_retired_is_so_from_its_registration() -> None:
    # Its callers' Deprecation header says since when: never "@0" (1970).
    for state in ("deprecated", "retired"):
        data = msgspec.convert({**BODY, "state": state}, ServiceCreate)
        assert rest_records.created(data, 1_700_000_000_000).deprecated_at_ms == 1_700_000_000_000
    assert rest_records.created(msgspec.convert(BODY, ServiceCreate), 1_700_000_000_000).deprecated_at_ms == 0
