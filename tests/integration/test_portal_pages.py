"""The portal's catalog and docs pages on a whole stack: a developer signs
in with a password and finds the tenant's model groups and a REST service
(with its OpenAPI document rendered), and the calls the try-it form makes
answer with what it shows (status, request id, cost header)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas import subjects
from schemas.people import User, kv_encode
from services.bus.kv import kv_key
from services.people import accounts, passwords
from tests.stack import DEMO_KEY, Stack

EMAIL = "dev@demo.test"
PASSWORD = "a long enough password"
ECHO_DOC = Path(__file__).parents[2] / "services" / "cli" / "demo-echo.openapi.json"
EXTRA = """
[[services]]
slug = "portal-echo"
title = "Portal echo"
description = "The mock's echo, for the portal's pages."
instances = [{{ url = "http://127.0.0.1:{mock}/rest/echo" }}]
price_pico_usd = 2000000
openapi_path = "echo.openapi.json"
"""


async def _add_user(stack: Stack) -> None:
    """A developer of tenant demo whose invitation is accepted (its record
    as the people's store writes it)."""
    user = User(
        id=accounts.user_id_for(EMAIL),
        email=EMAIL,
        tenant_id="demo",
        password_hash=passwords.hash_password(PASSWORD),
        created_at_ms=int(time.time() * 1000),
    )
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_USERS)
        await kv.put(kv_key(user.id), kv_encode(user))
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("portal-pages")
    shutil.copy(ECHO_DOC, home / "echo.openapi.json")
    s = Stack(home, timeout_s=20, extra_config=EXTRA)
    s.start()
    try:
        asyncio.run(_add_user(s))
        yield s
    finally:
        s.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[httpx.Client]:
    """A signed-in developer (the sign-in retried until the ingress's
    mirror of the users has the new one: bounded)."""
    origin = stack.base_url.removesuffix("/v1")
    with httpx.Client(base_url=origin, timeout=10, follow_redirects=False) as client:
        first = client.get("/portal/apis/service/portal-echo")
        assert first.status_code == 303 and first.headers["location"].startswith("/portal/sign-in?next=")
        deadline = time.monotonic() + 15
        while True:
            page = client.get("/portal/sign-in")
            form = {"email": EMAIL, "password": PASSWORD, "csrf": _csrf(page.text), "next": "/portal"}
            answer = client.post("/portal/sign-in", data=form)
            if answer.status_code == 303:
                break
            assert answer.status_code == 401 and time.monotonic() < deadline, answer.text[:300]
            time.sleep(0.2)
        yield client


def test_the_catalog_lists_the_tenants_apis(browser: httpx.Client) -> None:
    page = browser.get("/portal")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for href in ("/portal/apis/model/demo-model", "/portal/apis/model/embed-model", "/portal/apis/service/portal-echo"):
        assert f'href="{href}"' in html
    assert "$0.000002 per call" in html and EMAIL in html
    only = browser.get("/portal", params={"kind": "service", "q": "portal echo"}).text
    assert only.count('<li>\n    <h2><a href="/portal/apis/') == 1


def test_a_service_docs_page_renders_its_document(browser: httpx.Client) -> None:
    html = browser.get("/portal/apis/service/portal-echo").text
    assert "<code>/services/portal-echo/items/{id}</code> Read an item" in html
    assert 'id="try-it" data-mode="service"' in html
    js = browser.get(re.search(r'src="(/portal/static/portal\.js\?v=[0-9a-f]+)"', html).group(1))  # type: ignore[union-attr]
    assert js.status_code == 200 and "x-sluice-cost-pico-usd" in js.text


def test_another_kinds_docs_and_a_missing_api(browser: httpx.Client) -> None:
    assert "client.chat.completions.create(" in browser.get("/portal/apis/model/demo-model").text
    missing = browser.get("/portal/apis/service/no-such-service")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text


def test_what_try_it_calls_answers_with_what_it_shows(stack: Stack) -> None:
    origin = stack.base_url.removesuffix("/v1")
    auth = {"authorization": f"Bearer {DEMO_KEY}"}
    chat = httpx.post(
        f"{stack.base_url}/chat/completions",
        headers=auth,
        json={"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert chat.status_code == 200 and chat.headers["x-request-id"]
    assert int(chat.headers["x-sluice-cost-pico-usd"]) > 0
    echo = httpx.get(f"{origin}/services/portal-echo/items/1", headers=auth, timeout=20)
    assert echo.status_code == 200 and echo.json()["path"].endswith("/items/1")
