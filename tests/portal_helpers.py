"""What the portal's end-to-end tests share: the demo config's APIs for a
test Stack, a person invited and signed in over plain HTTP (the forms a
browser posts, CSRF token and cookie included), and the one-time secrets
the portal's pages show."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.stack import ADMIN_KEY, Stack

DEMO = Path(__file__).resolve().parents[1] / "services" / "cli" / "demo.toml"
ECHO_OPENAPI = DEMO.parent / "demo-echo.openapi.json"
PASSWORD = "correct horse battery staple"
# A form's hidden CSRF field as the portal's templates write it.
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_SECRET = re.compile(r'id="key-secret"[^>]*value="([^"]+)"')
_KEY_ID = re.compile(r"Secret of <code>([^<]+)</code>")


def demo_apis() -> str:
    """The demo config's REST services and prompt APIs (demo-echo,
    demo-echo-gated, summarize, ...), as extra config of a test Stack: its
    mock's port in the URLs, the OpenAPI document by its absolute path."""
    text = DEMO.read_text()
    tables = text[text.index("[[services]]") :]
    escaped = tables.replace("{", "{{").replace("}", "}}")
    escaped = escaped.replace("${{SLUICE_MOCK_PORT:-9100}}", "{mock}")
    assert "SLUICE_MOCK_PORT" not in escaped, "the demo config names the mock's port another way"
    return escaped.replace('openapi_path = "demo-echo.openapi.json"', f'openapi_path = "{ECHO_OPENAPI}"')


def origin(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.layout.http_port}"


def admin_client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.admin_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=20)


def invite_by_api(stack: Stack, email: str, tenant: str, role: str = "developer") -> dict:
    """A person invited through the admin API: its answer (``user``, ``link``)."""
    with admin_client(stack) as admin:
        made = admin.post("/users", json={"email": email, "tenant": tenant, "role": role})
    assert made.status_code in (200, 201), made.text
    return made.json()


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, f"no CSRF field on the page: {page[:500]}"
    return html.unescape(found.group(1))


class PortalUser:
    """One person's browser, as plain HTTP: its cookie jar holds the
    portal's cookie, each form is posted with the token its page gave."""

    def __init__(self, stack: Stack, email: str) -> None:
        self.email = email
        self.user_id = ""
        self.http = httpx.Client(base_url=origin(stack), timeout=20, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def accept(self, link: str, password: str = PASSWORD) -> None:
        path = urlsplit(link).path
        page = self.http.get(path)
        assert page.status_code == 200, page.text[:500]
        done = self.http.post(path, data={"csrf": csrf_of(page.text), "password": password, "confirm": password})
        assert done.status_code == 303 and "accepted=1" in done.headers["location"], done.text[:500]

    def sign_in(self, password: str = PASSWORD) -> None:
        page = self.http.get("/portal/sign-in")
        assert page.status_code == 200, page.text[:500]
        form = {"csrf": csrf_of(page.text), "email": self.email, "password": password, "next": "/portal"}
        done = self.http.post("/portal/sign-in", data=form)
        assert done.status_code == 303, done.text[:500]

    def csrf(self) -> str:
        """The session's CSRF token, from the layout's sign-out form."""
        page = self.http.get("/portal")
        assert page.status_code == 200, page.text[:500]
        return csrf_of(page.text)

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, csrf: str, **fields: str) -> httpx.Response:
        return self.http.post(path, data={"csrf": csrf, **fields})

    def make_app(self, name: str) -> str:
        """A new app's id (the page the form leads to names it)."""
        made = self.post("/portal/apps", self.csrf(), name=name)
        assert made.status_code == 303, made.text[:500]
        return urlsplit(made.headers["location"]).path.rsplit("/", 1)[-1]

    def make_key(self, app_id: str, name: str) -> tuple[str, str]:
        """A new key of the app: (its id, its secret), from the page the form
        leads to (it shows the secret once)."""
        made = self.post(f"/portal/apps/{app_id}/keys", self.csrf(), name=name)
        assert made.status_code == 303, made.text[:500]
        shown = self.http.get(made.headers["location"])
        secret, key_id = _SECRET.search(shown.text), _KEY_ID.search(shown.text)
        assert secret is not None and key_id is not None, shown.text[:1000]
        return html.unescape(key_id.group(1)), html.unescape(secret.group(1))


def signed_in(stack: Stack, email: str, tenant: str, role: str = "developer") -> PortalUser:
    """A person invited through the admin API, their password set, signed in."""
    person = PortalUser(stack, email)
    invited = invite_by_api(stack, email, tenant, role)
    person.user_id = invited["user"]["id"]
    person.accept(invited["link"])
    person.sign_in()
    return person


def call_service(stack: Stack, secret: str, path: str = "/services/demo-echo/items/1") -> httpx.Response:
    return httpx.get(origin(stack) + path, headers={"authorization": f"Bearer {secret}"}, timeout=20)


def wait_rows(stack: Stack, request_ids: list[str], timeout: float = 30.0) -> None:
    """Every request's row written by the sink (bounded)."""
    deadline = time.monotonic() + timeout
    for request_id in request_ids:
        stack.request_row(request_id, timeout=max(0.5, deadline - time.monotonic()))
