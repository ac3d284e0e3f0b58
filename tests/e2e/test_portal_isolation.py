"""Tenant isolation in the developer portal: a person of tenant A (a
developer, and a tenant admin) gets a 404 for every page, form and usage
number of tenant B, exactly as for something that does not exist.

The routes are the portal app's own (``ingress.portal.app.build``): every
route and method must have a row in ``CASES``, and every path parameter a
line in ``PARAMETERS``, so a route added later fails here until someone
says how it keeps tenants apart. Each case names B's real records (an app,
a key, a subscription, people, an MCP server only B's tools patterns open),
made through the admin API and B's own portal session; it is asked as A,
with A's CSRF token on a POST, and answered as it is for an id of the same
shape that does not exist (same status, same page once the ids are swapped),
so nothing confirms B's record. Pages that take no id must not name any of
B's records, and A's usage counts none of B's calls.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import MagicMock

import pytest

from ingress.portal import app as portal_app
from ingress.portal.auth import COOKIE
from services.people import tokens
from tests.portal_helpers import (
    PortalUser,
    admin_client,
    call_service,
    demo_apis,
    invite_by_api,
    signed_in,
    wait_rows,
)
from tests.stack import Stack

A, B = "acme", "globex"
# Tenant B alone may use the mock's MCP tools: its server is an API only B sees.
TENANTS = f"""
[[tenants]]
id = "{A}"

[[tenants]]
id = "{B}"
mcp_tools = ["demo-tools__*"]
"""
B_ONLY_API = "demo-tools"
B_CALLS = 3
WAIT_S = 30.0


@dataclass(frozen=True)
class World:
    """The records the cases name: B's, and A's own where a case mixes them."""

    b_app: str
    b_key: str
    b_subscription: str
    b_developer: str  # user ids
    b_admin: str
    b_invited: str
    b_emails: tuple[str, ...]
    b_app_name: str
    a_app: str
    rule: str  # an approval rule: gateway-wide, no tenant's

    def markers(self) -> list[str]:
        """What no page of A may show."""
        ids = (self.b_app, self.b_key, self.b_subscription, self.b_developer, self.b_admin, self.b_invited)
        return [*ids, *self.b_emails, self.b_app_name, B, B_ONLY_API]


@dataclass(frozen=True)
class Case:
    """One request of A's naming B's records (``b_values``: the parts of
    path and form that are B's). ``developer``/``admin``: the status each
    of A's people gets; 403 only where the route refuses that role whatever
    it names (a page it may not use, which names no record)."""

    method: str
    path: str
    b_values: tuple[str, ...]
    form: dict[str, str] = field(default_factory=dict)
    developer: int = 404
    admin: int = 404
    # B's own developer opens it (the case names something real and visible to B).
    owner_sees: bool = False
    # A form shown before sign-in (an invitation's) carries the token derived
    # from the browser's cookie, not the session's.
    form_csrf: bool = False
    why: str = ""


@dataclass(frozen=True)
class NoTenantIds:
    """A route that takes no record of any tenant's (why, in words)."""

    why: str


# Every path parameter of the portal's routes, and what the cases fill it with.
PARAMETERS = {
    "name": "a static file's name (B's app id: no such file) / an API's name (B's MCP server)",
    "token": "an invitation's secret token (B's invitee's user id: whoever holds the token is the invitee)",
    "kind": "an API's kind (mcp, for B's server) / a lifecycle record's kind (service)",
    "subscription_id": "B's subscription",
    "app_id": "B's app, and A's own app holding B's key",
    "key_id": "B's key",
    "user_id": "B's developer and tenant admin",
    "rule_id": "an approval rule: gateway-wide, no tenant's; only a gateway admin removes one",
    "record_id": "a REST service's record: gateway-wide; only a gateway admin moves or changes it",
}
_REASON = {"reason": "isolation check"}


def _cases(w: World) -> dict[tuple[str, str], list[Case] | NoTenantIds]:
    admin_only = {"developer": 403}  # require_admin before any record is read
    gateway_only = {"developer": 403, "admin": 403}
    return {
        ("/portal/static/{name:str}", "GET"): [Case("GET", f"/portal/static/{w.b_app}.js", (w.b_app,))],
        ("/portal/sign-in", "GET"): NoTenantIds("the sign-in form (a signed-in person is sent on)"),
        ("/portal/sign-in", "POST"): NoTenantIds("signs in whoever the address and password are"),
        ("/portal/sign-out", "POST"): NoTenantIds("ends the person's own session"),
        ("/portal/invitations/{token:str}", "GET"): [Case("GET", f"/portal/invitations/{w.b_invited}", (w.b_invited,))],
        ("/portal/invitations/{token:str}", "POST"): [
            Case(
                "POST",
                f"/portal/invitations/{w.b_invited}",
                (w.b_invited,),
                {"password": "x" * 16, "confirm": "x" * 16},
                form_csrf=True,
            )
        ],
        ("/portal/oidc/start", "GET"): NoTenantIds("starts single sign-on (not configured here)"),
        ("/portal/oidc/callback", "GET"): NoTenantIds("single sign-on's answer (not configured here)"),
        ("/portal", "GET"): NoTenantIds("the catalog: checked to name none of B's APIs"),
        ("/portal/apis/{kind:str}/{name:path}", "GET"): [
            Case("GET", f"/portal/apis/mcp/{B_ONLY_API}", (B_ONLY_API,), owner_sees=True)
        ],
        ("/portal/subscriptions", "GET"): NoTenantIds("the tenant's own subscriptions"),
        ("/portal/subscriptions", "POST"): [
            Case("POST", "/portal/subscriptions", (B_ONLY_API,), {"kind": "mcp", "name": B_ONLY_API, **_REASON})
        ],
        ("/portal/approvals", "GET"): NoTenantIds("the tenant's own queue"),
        ("/portal/approvals/{subscription_id:str}", "POST"): [
            Case("POST", f"/portal/approvals/{w.b_subscription}", (w.b_subscription,), {"decision": d, **_REASON})
            for d in ("approve", "reject", "revoke")
        ],
        ("/portal/apps", "GET"): NoTenantIds("the person's (or tenant's) own apps"),
        ("/portal/apps", "POST"): NoTenantIds("makes an app in the person's own tenant"),
        ("/portal/apps/{app_id:str}", "GET"): [Case("GET", f"/portal/apps/{w.b_app}", (w.b_app,), owner_sees=True)],
        ("/portal/apps/{app_id:str}/keys", "POST"): [
            Case("POST", f"/portal/apps/{w.b_app}/keys", (w.b_app,), {"name": "stolen"})
        ],
        ("/portal/apps/{app_id:str}/keys/{key_id:str}/secret", "GET"): [
            Case("GET", f"/portal/apps/{w.b_app}/keys/{w.b_key}/secret", (w.b_app, w.b_key), owner_sees=True),
            Case("GET", f"/portal/apps/{w.a_app}/keys/{w.b_key}/secret", (w.b_key,)),
        ],
        ("/portal/apps/{app_id:str}/keys/{key_id:str}/rotate", "POST"): [
            Case("POST", f"/portal/apps/{w.b_app}/keys/{w.b_key}/rotate", (w.b_app, w.b_key), {"grace_seconds": "0"}),
            Case("POST", f"/portal/apps/{w.a_app}/keys/{w.b_key}/rotate", (w.b_key,), {"grace_seconds": "0"}),
        ],
        ("/portal/apps/{app_id:str}/keys/{key_id:str}/revoke", "POST"): [
            Case("POST", f"/portal/apps/{w.b_app}/keys/{w.b_key}/revoke", (w.b_app, w.b_key)),
            Case("POST", f"/portal/apps/{w.a_app}/keys/{w.b_key}/revoke", (w.b_key,)),
        ],
        ("/portal/usage", "GET"): NoTenantIds("the person's own keys' or tenant's usage: its numbers are checked"),
        ("/portal/admin/tenants", "GET"): NoTenantIds("the admin's own tenant"),
        ("/portal/admin/tenants", "POST"): [
            Case("POST", "/portal/admin/tenants", (B,), {"id": B}, **gateway_only, why="only a gateway admin makes one")
        ],
        ("/portal/admin/users", "GET"): NoTenantIds("the admin's own tenant's people"),
        ("/portal/admin/users", "POST"): NoTenantIds(
            "invites into the admin's own tenant (checked: a tenant named B is ignored)"
        ),
        ("/portal/admin/users/{user_id:str}/link", "POST"): [
            Case("POST", f"/portal/admin/users/{u}/link", (u,), **admin_only) for u in (w.b_developer, w.b_admin)
        ],
        ("/portal/admin/users/{user_id:str}/link", "GET"): [
            Case("GET", f"/portal/admin/users/{u}/link", (u,), **admin_only) for u in (w.b_developer, w.b_admin)
        ],
        ("/portal/admin/users/{user_id:str}/disable", "POST"): [
            Case("POST", f"/portal/admin/users/{u}/disable", (u,), **admin_only) for u in (w.b_developer, w.b_admin)
        ],
        ("/portal/admin/users/{user_id:str}/enable", "POST"): [
            Case("POST", f"/portal/admin/users/{u}/enable", (u,), **admin_only) for u in (w.b_developer, w.b_admin)
        ],
        ("/portal/admin/approval-rules", "GET"): NoTenantIds("gateway-wide rules, no tenant's"),
        ("/portal/admin/approval-rules", "POST"): NoTenantIds("gateway-wide rules (a gateway admin's), no tenant's"),
        ("/portal/admin/approval-rules/{rule_id:str}/delete", "POST"): [
            Case("POST", f"/portal/admin/approval-rules/{w.rule}/delete", (w.rule,), **gateway_only, why="gateway-wide")
        ],
        ("/portal/admin/lifecycle", "GET"): NoTenantIds("every API's lifecycle: gateway-wide"),
        ("/portal/admin/lifecycle/{kind:str}/{record_id:str}", "POST"): [
            Case(
                "POST",
                "/portal/admin/lifecycle/service/demo-echo.v1",
                ("demo-echo.v1",),
                {"action": "retire"},
                **gateway_only,
                why="gateway-wide",
            )
        ],
        # Gateway-wide, and a 404 to anyone but a gateway admin, as for a page that does not exist.
        ("/portal/admin/services", "GET"): NoTenantIds("every REST service: gateway-wide"),
        ("/portal/admin/services", "POST"): NoTenantIds("registers a gateway-wide service"),
        ("/portal/admin/services/new", "GET"): NoTenantIds("the form to register a service"),
        ("/portal/admin/services/{record_id:str}", "GET"): [
            Case("GET", "/portal/admin/services/demo-echo.v1", ("demo-echo.v1",), why="gateway-wide")
        ],
        ("/portal/admin/services/{record_id:str}", "POST"): [
            Case("POST", "/portal/admin/services/demo-echo.v1", ("demo-echo.v1",), {"title": "x"}, why="gateway-wide")
        ],
        ("/portal/admin/services/{record_id:str}/openapi", "POST"): [
            Case("POST", "/portal/admin/services/demo-echo.v1/openapi", ("demo-echo.v1",), why="gateway-wide")
        ],
        ("/portal/account", "GET"): NoTenantIds("the person's own account"),
        ("/portal/account", "POST"): NoTenantIds("changes the person's own password"),
    }


# --- the portal's own routes --------------------------------------------------------


def portal_routes() -> dict[tuple[str, str], list[str]]:
    """Every (path, method) the portal serves, with its path parameters' names."""
    app = portal_app.build(MagicMock(), MagicMock())
    found: dict[tuple[str, str], list[str]] = {}
    for route in app.routes:
        for method in sorted(getattr(route, "methods", ())):
            if method not in ("OPTIONS", "HEAD"):
                found[(route.path, method)] = list(getattr(route, "path_parameters", {}))
    return found


def template_pattern(template: str) -> re.Pattern[str]:
    """A route's path as a pattern: ``{x:path}`` any rest, ``{x:str}`` one segment."""
    parts = re.split(r"(\{[^}]+\})", template)
    out = "".join(
        (".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts if p
    )
    return re.compile(out)


_PLACEHOLDER = World(
    b_app="app_b",
    b_key="key_b",
    b_subscription="sub_b",
    b_developer="usr_b1",
    b_admin="usr_b2",
    b_invited="usr_b3",
    b_emails=("b@b.example",),
    b_app_name="b-app",
    a_app="app_a",
    rule="rule_x",
)


def test_every_route_of_the_portal_is_in_the_table() -> None:
    """A new route, method or path parameter fails here until a case says
    how it keeps another tenant's records out of reach."""
    routes = portal_routes()
    cases = _cases(_PLACEHOLDER)
    assert set(routes) == set(cases), (
        f"routes without a case: {sorted(set(routes) - set(cases))}; cases without a route: "
        f"{sorted(set(cases) - set(routes))}"
    )
    for key, params in routes.items():
        unknown = [p for p in params if p not in PARAMETERS]
        assert not unknown, f"{key}: parameters {unknown} are not in PARAMETERS"
        row = cases[key]
        assert not (params and isinstance(row, NoTenantIds)), f"{key} takes {params}: it needs cases, not a reason"
        if isinstance(row, list):
            assert row, key
            pattern = template_pattern(key[0])
            for case in row:
                assert case.method == key[1] and pattern.fullmatch(case.path), (key, case.path)


# --- the two tenants -----------------------------------------------------------------


@pytest.fixture(scope="module")
def isolation_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("portal-isolation"), timeout_s=10, extra_config=TENANTS + demo_apis()).start()
    yield s
    s.stop()


@dataclass
class People:
    a_developer: PortalUser
    a_admin: PortalUser
    b_developer: PortalUser
    world: World
    a_secret: str
    b_secret: str


def _eventually(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def people(isolation_stack: Stack) -> Iterator[People]:
    stack = isolation_stack
    a_dev = signed_in(stack, "dev@acme.example", A)
    a_admin = signed_in(stack, "admin@acme.example", A, "tenant_admin")
    b_dev = signed_in(stack, "dev@globex.example", B)
    b_admin = invite_by_api(stack, "admin@globex.example", B, "tenant_admin")["user"]
    b_invited = invite_by_api(stack, "new@globex.example", B)["user"]
    try:
        b_app = b_dev.make_app("globex-payments")
        b_key, b_secret = b_dev.make_key(b_app, "globex-ci")
        a_app = a_dev.make_app("acme-shop")
        _, a_secret = a_dev.make_key(a_app, "acme-ci")
        asked = b_dev.post(
            "/portal/subscriptions", b_dev.csrf(), kind="service", name="demo-echo-gated", reason="Globex needs it"
        )
        assert asked.status_code == 303, asked.text[:500]
        with admin_client(stack) as admin:
            subs = admin.get("/subscriptions", params={"tenant": B}).json()
            rule = admin.post("/approval-rules", json={"pattern": "other-*"})
            assert rule.status_code == 201, rule.text
        (b_sub,) = [s["id"] for s in subs if s["model"] == "service:demo-echo-gated"]
        world = World(
            b_app=b_app,
            b_key=b_key,
            b_subscription=b_sub,
            b_developer=b_dev.user_id,
            b_admin=b_admin["id"],
            b_invited=b_invited["id"],
            b_emails=(b_dev.email, b_admin["email"], b_invited["email"]),
            b_app_name="globex-payments",
            a_app=a_app,
            rule=rule.json()["id"],
        )
        # B's MCP server is listed once the provider stage has read the mock's tools.
        _eventually(
            "B's MCP server in B's catalog",
            lambda: b_dev.get(f"/portal/apis/mcp/{B_ONLY_API}").status_code == 200,
        )
        yield People(a_dev, a_admin, b_dev, world, a_secret, b_secret)
    finally:
        for person in (a_dev, a_admin, b_dev):
            person.close()


# --- A asks for B's things -------------------------------------------------------------


def made_up(value: str) -> str:
    """An id of the same shape that names nothing."""
    return value[:-6] + "000000" if len(value) > 8 else value + "-gone"


def _swap(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


def _ask(person: PortalUser, csrf: str, case: Case, mapping: dict[str, str]) -> Any:
    path = _swap(case.path, mapping)
    if case.method == "GET":
        return person.get(path)
    if case.form_csrf:
        csrf = tokens.form_csrf(person.http.cookies[COOKIE])
    return person.post(path, csrf, **{k: _swap(v, mapping) for k, v in case.form.items()})


def test_a_person_of_tenant_a_gets_a_404_for_every_record_of_tenant_b(people: People) -> None:
    w = people.world
    failures: list[str] = []
    for role, person in (("developer", people.a_developer), ("admin", people.a_admin)):
        csrf = person.csrf()
        for row in _cases(w).values():
            if isinstance(row, NoTenantIds):
                continue
            for case in row:
                expected = getattr(case, role)
                got = _ask(person, csrf, case, {})
                fake = {v: made_up(v) for v in case.b_values}
                control = _ask(person, csrf, case, fake)
                where = f"{role} of {A}: {case.method} {case.path} {case.form or ''}"
                if got.status_code != expected:
                    failures.append(f"{where}: {got.status_code}, expected {expected}: {got.text[:300]}")
                elif control.status_code != got.status_code:
                    failures.append(f"{where}: {got.status_code}, but {control.status_code} for ids that do not exist")
                elif _swap(control.text, {v: k for k, v in fake.items()}) != got.text:
                    failures.append(f"{where}: the answer differs from the one for ids that do not exist")
    for row in _cases(w).values():
        for case in row if isinstance(row, list) else []:
            if case.owner_sees:
                seen = people.b_developer.get(case.path)
                if seen.status_code != 200:
                    failures.append(f"{B}'s own developer: {case.path}: {seen.status_code} (the case names nothing?)")
    assert not failures, "\n".join(failures)


def test_no_page_of_tenant_a_names_a_record_of_tenant_b(people: People) -> None:
    """Pages that take no id (lists, queues, admin views, the catalog) show A's things only."""
    markers = people.world.markers()
    failures = []
    pages = sorted(path for (path, method), params in portal_routes().items() if method == "GET" and not params)
    for role, person in (("developer", people.a_developer), ("admin", people.a_admin)):
        for path in pages:
            for params in ({}, {"q": B_ONLY_API}, {"days": "1"}):
                page = person.get(path, **params)
                assert page.status_code < 500, (role, path, page.text[:300])
                # A page may echo what was asked (the catalog's search); nothing else of B's.
                shown = [m for m in markers if m in page.text and m not in params.values()]
                if shown:
                    failures.append(f"{role} of {A}: {path} {params} names {shown}")
    assert not failures, "\n".join(failures)
    found = people.a_developer.get("/portal", q=B_ONLY_API)
    assert found.status_code == 200 and "No API matches" in found.text and 'class="entries"' not in found.text


def test_a_tenant_admin_invites_into_their_own_tenant_whatever_the_form_names(
    isolation_stack: Stack, people: People
) -> None:
    admin = people.a_admin
    email = "newcomer@acme.example"
    invited = admin.post("/portal/admin/users", admin.csrf(), email=email, tenant=B, role="developer")
    assert invited.status_code == 200, invited.text[:500]
    assert B not in invited.text
    with admin_client(isolation_stack) as gateway_admin:
        (user,) = [u for u in gateway_admin.get("/users").json() if u["email"] == email]
    assert user["tenant"] == A
    refused = people.a_developer.post("/portal/admin/users", people.a_developer.csrf(), email="x@acme.example")
    assert refused.status_code == 403


_TOTALS = re.compile(
    r'<tfoot>\s*<tr><th scope="row">All</th><td class="num">([0-9,]+)</td><td class="num">([0-9,]+)</td>'
    r'<td class="num">([0-9,]+)</td><td class="num">([0-9.]+)</td>'
)


def usage_totals(person: PortalUser) -> tuple[int, str]:
    """Requests and spend (USD) in all of the person's usage page, last day."""
    page = person.get("/portal/usage", days="1")
    assert page.status_code == 200, page.text[:500]
    found = _TOTALS.search(page.text)
    assert found is not None, page.text[:2000]
    return int(found.group(1).replace(",", "")), found.group(4)


def test_usage_of_tenant_a_counts_none_of_tenant_b_s_calls(isolation_stack: Stack, people: People) -> None:
    stack = isolation_stack
    mine = call_service(stack, people.a_secret)
    theirs = [call_service(stack, people.b_secret) for _ in range(B_CALLS)]
    assert mine.status_code == 200 and all(r.status_code == 200 for r in theirs), [mine.text, theirs[0].text]
    wait_rows(stack, [r.headers["x-request-id"] for r in [mine, *theirs]], timeout=WAIT_S)
    # One call of A's (a millionth of a dollar), however A looks; B's three are B's alone.
    assert usage_totals(people.a_developer) == (1, "0.000001")
    assert usage_totals(people.a_admin) == (1, "0.000001")
    assert usage_totals(people.b_developer) == (B_CALLS, "0.000003")
