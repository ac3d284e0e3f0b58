"""The portal's remaining forms on a whole stack, as browsers post them: a
gateway admin registers a REST service (its OpenAPI document uploaded, then
fetched) that callers then reach, and nobody else learns the page exists; a
new key's secret and a person's new link are each shown once, after a
redirect, so a reload makes nothing new; a person changes their password
and their other sessions end; a form with a mistake comes back with it,
tied to its input, and with what was typed (never a password)."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.portal_helpers import PASSWORD, PortalUser, admin_client, csrf_of, origin
from tests.stack import DEMO_KEY, Stack

pytestmark = pytest.mark.timeout(120)
EXTRA = """
[[services]]
slug = "gated-echo"
title = "Gated echo"
instances = [{{ url = "http://127.0.0.1:{mock}/rest/echo" }}]
requires_approval = true
"""
DOC = {"openapi": "3.1.0", "info": {"title": "Orders", "version": "1"}, "paths": {"/orders/{id}": {"get": {}}}}
FETCHED = {"openapi": "3.1.0", "info": {"title": "Orders", "version": "2"}, "paths": {"/a": {}, "/b/{x}": {}}}
NEW_PASSWORD = "another long enough passphrase"


class _Docs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(FETCHED).encode()
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("portal-forms"), timeout_s=20, extra_config=EXTRA).start()
    yield s
    s.stop()


def signed_in(stack: Stack, email: str, tenant: str, role: str = "developer") -> PortalUser:
    """A person invited over the admin API (a gateway admin with no tenant), signed in."""
    with admin_client(stack) as admin:
        made = admin.post("/users", json={"email": email, "role": role} | ({"tenant": tenant} if tenant else {}))
    assert made.status_code == 201, made.text
    person = PortalUser(stack, email)
    person.user_id = made.json()["user"]["id"]
    person.accept(made.json()["link"])
    person.sign_in()
    return person


@pytest.fixture(scope="module")
def people(stack: Stack) -> Iterator[dict[str, PortalUser]]:
    found: dict[str, PortalUser] = {}
    try:
        for name, email, tenant, role in (
            ("root", "root@gateway.test", "", "gateway_admin"),
            ("admin", "admin@demo.test", "demo", "tenant_admin"),
            ("dev", "dev@demo.test", "demo", "developer"),
            ("stranger", "admin@private.test", "private", "tenant_admin"),
        ):
            found[name] = signed_in(stack, email, tenant, role)
        yield found
    finally:
        for person in found.values():
            person.close()


def call(stack: Stack, path: str, secret: str) -> httpx.Response:
    return httpx.get(origin(stack) + path, headers={"authorization": f"Bearer {secret}"}, timeout=20)


def _until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _invalid(page: str) -> list[str]:
    """The names of the inputs a page marks invalid."""
    return re.findall(r'<(?:input|select|textarea)[^>]*name="([^"]+)"[^>]*aria-invalid="true"', page)


def _service_form(csrf: str, slug: str, **fields: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "slug": slug,
        "version": "1",
        "state": "published",
        "title": "Orders <v1>",
        "instance_url_0": "",
        "method_GET": "on",
        "method_POST": "on",
        "connect_timeout_s": "5",
        "read_timeout_s": "60",
        "price_usd": "0.000001",
        "strip_headers": "authorization, cookie",
        **fields,
    }


def test_only_a_gateway_admin_learns_the_services_pages_exist(people: dict[str, PortalUser]) -> None:
    nowhere = people["admin"].get("/portal/admin/nothing-here")
    assert nowhere.status_code == 404
    for who in ("admin", "dev"):
        person = people[who]
        for path in ("/portal/admin/services", "/portal/admin/services/new", "/portal/admin/services/gated-echo.v1"):
            page = person.get(path)
            assert (page.status_code, page.text) == (404, nowhere.text), (who, path)
        made = person.post("/portal/admin/services", person.csrf(), slug="sneaky")
        assert (made.status_code, made.text) == (404, nowhere.text)
    assert "/portal/admin/services" not in people["admin"].get("/portal/admin/users").text


def test_a_gateway_admin_registers_a_service_that_callers_reach(
    stack: Stack, people: dict[str, PortalUser], docs_url: str
) -> None:
    root = people["root"]
    slug = f"orders-{time.monotonic_ns() % 10**8}"
    csrf = csrf_of(root.get("/portal/admin/services/new").text)
    upstream = f"{stack.mock_url}/rest/echo"
    document = ("orders.json", json.dumps(DOC).encode(), "application/json")
    # A mistake comes back on the form, tied to its input, with what was typed.
    wrong = root.http.post(
        "/portal/admin/services",
        data=_service_form(csrf, slug, instance_url_1="ftp://nowhere.test/"),
        files={"openapi_file": document},
    )
    assert wrong.status_code == 400, wrong.text[:500]
    assert _invalid(wrong.text) == ["instance_url_1"] and 'role="alert"' in wrong.text
    assert "Orders &lt;v1&gt;" in wrong.text and f'value="{slug}"' in wrong.text
    made = root.http.post(
        "/portal/admin/services",
        data=_service_form(csrf, slug, instance_url_1=upstream, instance_weight_1="2", openapi_url=docs_url),
        files={"openapi_file": document},
    )
    assert made.status_code == 303, made.text[:800]
    page_path = urlsplit(made.headers["location"]).path
    assert page_path == f"/portal/admin/services/{slug}.v1"
    assert made.headers["location"].endswith("?done=created")
    assert "Service registered." in root.get(page_path, done="created").text
    listed = root.get("/portal/admin/services").text
    assert f"/services/{slug}" in listed and "admin API or portal" in listed and "gated-echo" in listed
    with admin_client(stack) as admin:
        record = admin.get(f"/services/{slug}").json()
    assert (record["state"], record["owner"], record["openapi_paths"], record["price_pico_usd"]) == (
        "published",
        "api",
        1,
        1_000_000,
    )
    assert record["instances"] == [{"url": upstream, "weight": 2.0}] and record["methods"] == ["GET", "POST"]
    _until(
        lambda: call(stack, f"/services/{slug}/orders/7", DEMO_KEY).status_code == 200,
        "callers never reached the service registered in the portal",
    )

    # A change, by the same rules: a bad weight is refused on the form; a new title is saved.
    csrf = csrf_of(root.get(page_path).text)
    edit = {k: v for k, v in _service_form(csrf, slug).items() if k not in ("slug", "version", "state")}
    edit |= {"instance_url_0": upstream, "instance_weight_0": "0"}
    refused = root.http.post(page_path, data=edit)
    assert refused.status_code == 400 and _invalid(refused.text) == ["instance_weight_0"], refused.text[:500]
    saved = root.http.post(page_path, data=edit | {"instance_weight_0": "1", "title": "Orders v1", "rpm": "600"})
    assert saved.status_code == 303, saved.text[:500]
    with admin_client(stack) as admin:
        record = admin.get(f"/services/{slug}").json()
    assert (record["title"], record["rpm"], record["openapi_paths"]) == ("Orders v1", 600, 1)

    # Its document, fetched from where the service serves it; one that is not JSON is refused on the form.
    bad = root.http.post(
        f"{page_path}/openapi", data={"csrf": csrf}, files={"openapi_file": ("x.json", b"not json", "text/plain")}
    )
    assert bad.status_code == 400 and _invalid(bad.text) == ["openapi_file"], bad.text[:500]
    fetched = root.http.post(f"{page_path}/openapi", data={"csrf": csrf, "openapi_url": docs_url})
    assert fetched.status_code == 303, fetched.text[:500]
    with admin_client(stack) as admin:
        record = admin.get(f"/services/{slug}").json()
    assert (record["openapi_paths"], record["openapi_url"]) == (2, docs_url)

    # The config file's service is changed there, and the form says so.
    config_page = root.get("/portal/admin/services/gated-echo.v1")
    assert config_page.status_code == 200 and "comes from the config file" in config_page.text
    changed = root.http.post("/portal/admin/services/gated-echo.v1", data=edit | {"instance_weight_0": "1"})
    assert changed.status_code == 409 and "config file" in changed.text


def _secret(page: str) -> str:
    found = re.search(r'id="key-secret"[^>]*value="([^"]+)"', page)
    assert found is not None, page[:1000]
    return html.unescape(found.group(1))


def test_a_keys_secret_is_shown_once_after_a_redirect(stack: Stack, people: dict[str, PortalUser]) -> None:
    dev, stranger = people["dev"], people["stranger"]
    csrf = dev.csrf()
    blank = dev.post("/portal/apps", csrf, name="   ", description="Keeps <this>")
    assert blank.status_code == 400 and _invalid(blank.text) == ["name"] and "Keeps &lt;this&gt;" in blank.text
    app_id = dev.make_app("Shop")
    app_path = f"/portal/apps/{app_id}"
    nameless = dev.post(f"{app_path}/keys", csrf, name=" ")
    assert nameless.status_code == 400 and _invalid(nameless.text) == ["name"]
    made = dev.post(f"{app_path}/keys", csrf, name="ci")
    assert made.status_code == 303 and "sk-" not in made.headers["location"]
    secret_path = made.headers["location"]
    assert re.fullmatch(rf"{app_path}/keys/[^/]+/secret", secret_path), secret_path
    secret = _secret(dev.get(secret_path).text)
    reloaded = dev.get(secret_path)
    assert reloaded.status_code == 200 and "shown already" in reloaded.text and secret not in reloaded.text
    assert dev.get(app_path).text.count('aria-label="Revoke key ci"') == 1  # the reload made no other key
    assert stranger.get(secret_path).status_code == 404
    # Known and refused for want of a subscription (403), not unknown (401).
    _until(lambda: call(stack, "/services/gated-echo/x", secret).status_code == 403, "the new key was never known")
    # Rotated: the new secret on the page the form leads to; only the browser that rotated it sees it.
    other = PortalUser(stack, dev.email)
    try:
        other.sign_in()
        rotated = dev.post(f"{secret_path.removesuffix('/secret')}/rotate", csrf, grace_seconds="0")
        assert rotated.status_code == 303 and rotated.headers["location"] == secret_path
        assert "shown already" in other.get(secret_path).text
        page = dev.get(secret_path).text
        assert _secret(page) != secret and "The old secret no longer works" in page
    finally:
        other.close()


def test_an_admin_makes_a_new_link_shown_once(stack: Stack, people: dict[str, PortalUser]) -> None:
    admin, dev, stranger = people["admin"], people["dev"], people["stranger"]
    with admin_client(stack) as gateway:
        newbie = gateway.post("/users", json={"email": "newbie@demo.test", "tenant": "demo"}).json()["user"]
    users = admin.get("/portal/admin/users").text
    assert f'action="/portal/admin/users/{newbie["id"]}/link"' in users
    assert 'aria-label="New invitation link for newbie@demo.test"' in users
    csrf = admin.csrf()
    made = admin.post(f"/portal/admin/users/{newbie['id']}/link", csrf)
    assert made.status_code == 303 and made.headers["location"] == f"/portal/admin/users/{newbie['id']}/link"
    page = admin.get(made.headers["location"]).text
    link = re.search(r'id="invitation-link"[^>]*value="([^"]+)"', page)
    assert link is not None and "New invitation link" in page, page[:800]
    assert "shown already" in admin.get(made.headers["location"]).text
    assert httpx.get(html.unescape(link.group(1))).status_code == 200  # the link works
    # For someone who signs in, it is a password reset.
    reset = admin.post(f"/portal/admin/users/{dev.user_id}/link", csrf)
    assert "Password reset link" in admin.get(reset.headers["location"]).text
    assert dev.post(f"/portal/admin/users/{newbie['id']}/link", dev.csrf()).status_code == 403
    assert stranger.post(f"/portal/admin/users/{newbie['id']}/link", stranger.csrf()).status_code == 404
    assert stranger.get(f"/portal/admin/users/{newbie['id']}/link").status_code == 404


def test_forms_come_back_with_their_mistakes(people: dict[str, PortalUser]) -> None:
    admin, dev = people["admin"], people["dev"]
    invited = admin.post(
        "/portal/admin/users", admin.csrf(), email="not-an-address", name="Ann <A>", role="tenant_admin"
    )
    assert invited.status_code == 400 and _invalid(invited.text) == ["email"]
    assert 'value="not-an-address"' in invited.text and "Ann &lt;A&gt;" in invited.text
    assert '<option value="tenant_admin" selected>' in invited.text
    asked = dev.post("/portal/subscriptions", dev.csrf(), kind="service", name="gated-echo", reason="  ")
    assert asked.status_code == 400 and _invalid(asked.text) == ["reason"], asked.text[:500]
    assert "<h1>Gated echo</h1>" in asked.text and "reason is required" in asked.text


def test_a_person_changes_their_password_and_their_other_sessions_end(stack: Stack) -> None:
    here = signed_in(stack, "mover@demo.test", "demo")
    there = PortalUser(stack, here.email)
    try:
        there.sign_in()
        csrf = here.csrf()
        wrong = here.post("/portal/account", csrf, current="not it at all", password=NEW_PASSWORD, confirm=NEW_PASSWORD)
        assert wrong.status_code == 400 and _invalid(wrong.text) == ["current"]
        assert "not it at all" not in wrong.text and NEW_PASSWORD not in wrong.text
        differ = here.post("/portal/account", csrf, current=PASSWORD, password=NEW_PASSWORD, confirm=NEW_PASSWORD + "!")
        assert differ.status_code == 400 and _invalid(differ.text) == ["confirm"]
        short = here.post("/portal/account", csrf, current=PASSWORD, password="short", confirm="short")
        assert short.status_code == 400 and _invalid(short.text) == ["password"]
        done = here.post("/portal/account", csrf, current=PASSWORD, password=NEW_PASSWORD, confirm=NEW_PASSWORD)
        assert done.status_code == 303 and done.headers["location"] == "/portal/account?done=password"
        assert "sluice_portal=" in done.headers.get("set-cookie", "")
        assert "Password changed" in here.get("/portal/account", done="password").text  # still signed in, anew
        assert there.get("/portal").status_code == 303  # the other session ended
        there.sign_in(NEW_PASSWORD)
        assert there.get("/portal/account").status_code == 200
    finally:
        here.close()
        there.close()
