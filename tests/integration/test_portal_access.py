"""The portal's access, apps and keys, usage and admin pages on a whole
stack, as people's browsers use them (forms with their CSRF token, the
session cookie): a developer asks for an approval-gated service, is refused
until their tenant admin approves, makes an app and a key (its secret shown
once), rotates and revokes it, and sees their calls in their usage; another
tenant's admin gets 404 for every one of those things."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.stack import ADMIN_KEY, Stack

PASSWORD = "a long enough password"
EXTRA = """
[[services]]
slug = "gated-echo"
title = "Gated echo"
instances = [{{ url = "http://127.0.0.1:{mock}/rest/echo" }}]
requires_approval = true
"""
SERVICE_PAGE = "/portal/apis/service/gated-echo"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("portal-access"), timeout_s=20, extra_config=EXTRA)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _origin(stack: Stack) -> str:
    return stack.base_url.removesuffix("/v1")


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return html.unescape(found.group(1))


class Browser:
    """One person: invited over the admin API, their password set through
    the invitation page, signed in; every form posted with its token."""

    def __init__(self, stack: Stack, email: str, tenant: str, role: str) -> None:
        asked = {"email": email, "role": role} | ({"tenant": tenant} if tenant else {})
        with httpx.Client(headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=20) as admin:
            made = admin.post(f"{stack.admin_url}/users", json=asked)
        assert made.status_code in (200, 201), made.text
        self.http = httpx.Client(base_url=_origin(stack), timeout=20, follow_redirects=False)
        try:
            self._sign_in(urlsplit(made.json()["link"]).path, email)
        except BaseException:
            self.http.close()
            raise

    def _sign_in(self, invitation: str, email: str) -> None:
        page = self.http.get(invitation)
        set_password = {"csrf": _csrf(page.text), "password": PASSWORD, "confirm": PASSWORD}
        assert self.http.post(invitation, data=set_password).status_code == 303
        page = self.http.get("/portal/sign-in")
        signed = self.http.post(
            "/portal/sign-in", data={"csrf": _csrf(page.text), "email": email, "password": PASSWORD, "next": "/portal"}
        )
        assert signed.status_code == 303, signed.text[:500]
        self.token = _csrf(self.http.get("/portal").text)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(self, path: str, **fields: str) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.token, **fields})


@pytest.fixture(scope="module")
def people(stack: Stack) -> Iterator[dict[str, Browser]]:
    found: dict[str, Browser] = {}
    try:
        for name, email, tenant, role in (
            ("dev", "dev@demo.test", "demo", "developer"),
            ("admin", "admin@demo.test", "demo", "tenant_admin"),
            ("stranger", "admin@private.test", "private", "tenant_admin"),
            ("root", "root@gateway.test", "", "gateway_admin"),
        ):
            found[name] = Browser(stack, email, tenant, role)
        yield found
    finally:
        for browser in found.values():
            browser.http.close()


def _call(stack: Stack, secret: str) -> httpx.Response:
    return httpx.get(f"{_origin(stack)}/services/gated-echo/items/1", headers={"authorization": f"Bearer {secret}"})


def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _shown(browser: Browser, answer: httpx.Response) -> str:
    """The page a key's form leads to (its secret, shown once)."""
    assert answer.status_code == 303, answer.text[:500]
    return browser.get(answer.headers["location"]).text


def _secret(page: str) -> tuple[str, str]:
    secret = re.search(r'id="key-secret"[^>]*value="([^"]+)"', page)
    key_id = re.search(r"Secret of <code>([^<]+)</code>", page)
    assert secret is not None and key_id is not None, page[:1000]
    return html.unescape(key_id.group(1)), html.unescape(secret.group(1))


STATE: dict[str, str] = {}


def test_a_developer_asks_for_access_and_is_refused_until_their_tenant_admin_approves(
    stack: Stack, people: dict[str, Browser]
) -> None:
    dev, admin, stranger = people["dev"], people["admin"], people["stranger"]
    page = dev.get(SERVICE_PAGE).text
    assert "Approval needed" in page and 'action="/portal/subscriptions"' in page
    # Without the session's token, nothing is asked.
    assert dev.http.post("/portal/subscriptions", data={"kind": "service", "name": "gated-echo"}).status_code == 403
    asked = dev.post("/portal/subscriptions", kind="service", name="gated-echo", reason="For the <invoices> job")
    assert asked.status_code == 303 and asked.headers["location"].startswith(SERVICE_PAGE)
    assert "Pending" in dev.get(SERVICE_PAGE).text
    # An app and a key: the secret once, on the answer page only.
    made = dev.post("/portal/apps", name="Invoices")
    assert made.status_code == 303
    app_path = urlsplit(made.headers["location"]).path
    key_id, secret = _secret(_shown(dev, dev.post(f"{app_path}/keys", name="ci")))
    assert key_id in dev.get(app_path).text and secret not in dev.get(app_path).text
    STATE.update(app=app_path, key=key_id, secret=secret)
    refused = _call(stack, secret)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "subscription_pending"
    # The queue: the developer decides nothing, another tenant's admin does not see it.
    assert dev.get("/portal/approvals").status_code == 403
    queue = admin.get("/portal/approvals").text
    sub_id = re.search(r'action="/portal/approvals/(sub_[a-z0-9]+)"', queue)
    assert sub_id is not None and "For the &lt;invoices&gt; job" in queue
    assert "gated-echo" not in stranger.get("/portal/approvals").text
    assert stranger.post(f"/portal/approvals/{sub_id.group(1)}", decision="approve").status_code == 404
    assert admin.post(f"/portal/approvals/{sub_id.group(1)}", decision="reject").status_code == 400  # no reason
    approved = admin.post(f"/portal/approvals/{sub_id.group(1)}", decision="approve", reason="ok for Q3")
    assert approved.status_code == 303
    mine = dev.get("/portal/subscriptions").text
    assert "approved" in mine and "ok for Q3" in mine
    _until(lambda: _call(stack, secret).status_code == 200, "the approved subscription never let the call through")


def test_a_key_rotates_with_grace_and_is_revoked_by_its_owner_or_an_admin_only(
    stack: Stack, people: dict[str, Browser]
) -> None:
    dev, admin, stranger = people["dev"], people["admin"], people["stranger"]
    app_path, key_id, old = STATE["app"], STATE["key"], STATE["secret"]
    rotate, revoke = f"{app_path}/keys/{key_id}/rotate", f"{app_path}/keys/{key_id}/revoke"
    # Another tenant's admin: none of it exists.
    for path in (app_path, rotate, revoke):
        assert (stranger.get(path) if path == app_path else stranger.post(path)).status_code == 404
    # The tenant's admin sees the app but the secret is the owner's to make.
    assert "Invoices" in admin.get("/portal/apps").text
    assert admin.post(rotate, grace_seconds="3600").status_code == 403
    _, new = _secret(_shown(dev, dev.post(rotate, grace_seconds="3600")))
    assert new != old
    _until(lambda: _call(stack, new).status_code == 200, "the rotated key's new secret never worked")
    assert _call(stack, old).status_code == 200  # its grace
    assert admin.post(revoke).status_code == 303
    _until(lambda: _call(stack, new).status_code == 401, "the revoked key kept working")
    assert _call(stack, old).status_code == 401 and "revoked" in dev.get(app_path).text


def _total(page: str) -> int:
    found = re.search(r'<th scope="row">All</th><td class="num">([0-9,]+)</td>', page)
    assert found is not None, page[-3000:]
    return int(found.group(1).replace(",", ""))


def test_usage_shows_the_persons_own_calls_only(stack: Stack, people: dict[str, Browser]) -> None:
    dev, admin, stranger = people["dev"], people["admin"], people["stranger"]
    made = httpx.get(
        f"{_origin(stack)}/services/gated-echo/items/1", headers={"authorization": "Bearer sk-test-demo-0123456789"}
    )
    # Made after the developer's calls: once its row is in, theirs are.
    stack.request_row(made.headers["x-request-id"], timeout=20)
    page = dev.get("/portal/usage?days=1").text
    assert "<code>service:gated-echo</code>" in page and 'id="usage-data"' in page
    # The demo key's call is the tenant's (its admin's view), not one of the developer's apps' keys.
    assert 1 <= _total(page) < _total(admin.get("/portal/usage?days=1").text)
    assert "service:gated-echo" not in stranger.get("/portal/usage").text
    assert dev.get("/portal/usage?days=1000").status_code == 400


def test_admin_pages_are_scoped_to_the_tenant_and_writes_to_gateway_admins(
    stack: Stack, people: dict[str, Browser]
) -> None:
    dev, admin, root = people["dev"], people["admin"], people["root"]
    assert dev.get("/portal/admin/tenants").status_code == 403
    tenants = admin.get("/portal/admin/tenants").text
    assert "<td>demo</td>" in tenants and "<td>private</td>" not in tenants
    users = admin.get("/portal/admin/users").text
    assert "dev@demo.test" in users and "admin@private.test" not in users and "root@gateway.test" not in users
    invited = admin.post("/portal/admin/users", email="new@demo.test", role="developer")
    assert invited.status_code == 200 and "/portal/invitations/" in invited.text
    assert admin.post("/portal/admin/approval-rules", pattern="demo-*").status_code == 403
    assert root.post("/portal/admin/approval-rules", pattern="other-*").status_code == 303
    assert "<code>other-*</code>" in admin.get("/portal/admin/approval-rules").text
    lifecycle = root.get("/portal/admin/lifecycle").text
    assert "gated-echo.v1" in lifecycle and "From the config file" in lifecycle
    assert root.post("/portal/admin/lifecycle/service/gated-echo.v1", action="retire").status_code == 409
    assert root.post("/portal/admin/tenants", id="newco").status_code == 303
    assert "<td>newco</td>" in root.get("/portal/admin/tenants").text
