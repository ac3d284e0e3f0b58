"""The portal's catalog and docs pages, from fixtures: what a tenant sees
(and does not), filters by query string, lifecycle and access shown,
hostile text escaped, analytics that fails leaving "—", 500 entries
rendered fast, and the app's errors, headers and static files."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from litestar import Request, get
from litestar.testing import TestClient

from ingress.portal import app as portal_app
from ingress.portal import views
from ingress.portal.catalog import render_catalog
from ingress.portal.entries import Entry, Filters, Sources, build
from ingress.portal.health import Health, HealthCache, Stats
from schemas import subjects
from schemas.analytics import QueryResult
from schemas.control import ApprovalRule, ModelRoute, Subscription, Tenant
from schemas.envelope import Deployment
from schemas.errors import AnalyticsUnavailable
from schemas.mcp import CatalogTool, McpServer, ServerCatalog, ToolAnnotations
from schemas.people import User
from schemas.prompts import Prompt, PromptApi, PromptVersion, Variable
from schemas.rest import RestService
from services.portal_access import Access
from services.portal_scope import Who
from services.prompt_api import PromptBook

EVIL = '<script>alert("x")</script>'
ECHO_DOC = (Path(__file__).parents[2] / "services" / "cli" / "demo-echo.openapi.json").read_bytes()
DEV = Who(user_id="usr_d", role="developer", tenant_id="acme")
ROOT = Who(user_id="usr_r", role="gateway_admin")


class Mirror:
    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items


def _deployment(name: str, provider: str, catalog_model: str) -> Deployment:
    return Deployment(
        name=name, provider=provider, base_url="http://x", upstream_model=name, catalog_model=catalog_model
    )


ROUTES = {
    "gpt-4o-mini": ModelRoute(
        name="gpt-4o-mini",
        deployments=[_deployment("oa", "openai", "gpt-4o-mini"), _deployment("az", "azure", "azure/gpt-4o")],
        aliases=["fast"],
    ),
    "embed": ModelRoute(name="embed", deployments=[_deployment("e", "openai", "text-embedding-3-small")]),
    "gated-model": ModelRoute(name="gated-model", deployments=[_deployment("g", "openai", "gpt-4o")]),
}
PROMPTS = {
    "summarize": Prompt(
        name="summarize",
        labels={"production": 1},
        api=PromptApi(slug="summarize", state="deprecated", successor="summarize-v2", sunset_at_ms=1_893_456_000_000),
    ),
    "summarize2": Prompt(
        name="summarize2", labels={"production": 1}, api=PromptApi(slug="summarize-v2", state="published")
    ),
    "secret-draft": Prompt(name="secret-draft", labels={"production": 1}, api=PromptApi(slug="secret-draft")),
    "old": Prompt(name="old", labels={"production": 1}, api=PromptApi(slug="old", state="retired")),
}
VERSIONS = {
    f"{name}.1": PromptVersion(
        prompt=name, version=1, variables=[Variable(name="text", description=EVIL)], model="gpt-4o-mini", note=EVIL
    )
    for name in PROMPTS
}
SERVICES = {
    "demo-echo.v1": RestService(slug="demo-echo", title="Demo echo", openapi=ECHO_DOC, price_pico_usd=1_000_000),
    "demo-echo-gated.v1": RestService(slug="demo-echo-gated", requires_approval=True, description=EVIL),
    "evil.v2": RestService(
        slug="evil",
        version=2,
        title=EVIL,
        openapi=b'{"info": {"title": "<img src=x onerror=alert(1)>"}, "paths": {"/<b>{id}</b>": {"get": '
        b'{"summary": "<script>alert(2)</script>", "responses": {"200": {"description": "<i>ok</i>"}}}}}}',
    ),
    "hidden.v1": RestService(slug="hidden", state="draft"),
}
SERVERS = {"gh": McpServer(name="gh", description="GitHub"), "other": McpServer(name="other")}
READ_ONLY = ToolAnnotations(readOnlyHint=True)
CATALOGS = {
    "gh": ServerCatalog(
        server="gh",
        tools=[
            CatalogTool(name="search", annotations=READ_ONLY, input_schema=b'{"type":"object","properties":{"q":{}}}'),
            CatalogTool(name="delete_repo"),
        ],
    ),
    "other": ServerCatalog(server="other", tools=[CatalogTool(name="x")]),
}
TENANTS = {"acme": Tenant(id="acme", mcp_tools=["gh__*"], mcp_safety="read_only"), "globex": Tenant(id="globex")}
SUBSCRIPTIONS = {
    "s1": Subscription(id="s1", tenant_id="acme", model="service:demo-echo-gated", state="rejected", reason=EVIL),
    "s2": Subscription(id="s2", tenant_id="globex", model="gated-model", state="approved"),
}
RULES = {"r1": ApprovalRule(pattern="gated-*")}


def sources(stats: Stats | None = None) -> Sources:
    return Sources(
        routes=ROUTES.values(),
        prompts=PromptBook(PROMPTS, VERSIONS).published(),
        services=SERVICES.values(),
        mcp_servers=SERVERS,
        mcp_catalogs=CATALOGS,
        tenants=TENANTS,
        subscriptions=SUBSCRIPTIONS.values(),
        approval_rules=RULES.values(),
        stats=stats or Stats(),
    )


def by_name(entries: list[Entry]) -> dict[tuple[str, str], Entry]:
    return {(e.kind, e.name): e for e in entries}


def test_a_developer_sees_the_tenants_apis_and_nothing_draft_retired_or_out_of_its_patterns() -> None:
    seen = by_name(build(sources(), DEV))
    assert set(seen) == {
        ("model", "embed"),
        ("model", "gated-model"),
        ("model", "gpt-4o-mini"),
        ("prompt", "summarize"),
        ("prompt", "summarize-v2"),
        ("service", "demo-echo"),
        ("service", "demo-echo-gated"),
        ("service", "evil.v2"),
        ("mcp", "gh"),
    }
    # Its safety is read-only: the destructive tool is not offered.
    assert seen[("mcp", "gh")].tools == ("search",)


def test_a_gateway_admin_sees_every_server_and_tool() -> None:
    seen = by_name(build(sources(), ROOT))
    assert seen[("mcp", "gh")].tools == ("delete_repo", "search")
    assert ("mcp", "other") in seen


def test_access_is_the_tenants_own_standing() -> None:
    seen = by_name(build(sources(), DEV))
    gated = seen[("model", "gated-model")].access
    # Another tenant's approval is not acme's: an approval rule names it, acme has no subscription.
    assert gated is not None and gated.needs_approval and gated.standing == "none" and gated.may_subscribe
    rejected = seen[("service", "demo-echo-gated")].access
    assert rejected is not None and rejected.standing == "rejected" and rejected.reason == EVIL
    assert seen[("service", "demo-echo")].access == Access(
        name="service:demo-echo", needs_approval=False, standing="open"
    )


def test_model_facts_come_from_the_catalog() -> None:
    facts = dict(by_name(build(sources(), DEV))[("model", "gpt-4o-mini")].facts)
    assert facts["Providers"] == "azure, openai"
    assert facts["Context window"] == "128,000 tokens"
    # Two deployments priced differently: the range.
    assert facts["Input"] == "$0.15 to $2.50 per 1M tokens"
    assert facts["Output"] == "$0.60 to $10.00 per 1M tokens"
    assert "image in" in facts["Modalities"]
    embed = dict(by_name(build(sources(), DEV))[("model", "embed")].facts)
    assert embed["Modalities"] == "text in, vectors out" and "Output" not in embed


def test_health_joins_a_group_and_its_aliases_and_prompts_by_name() -> None:
    stats = Stats(
        by_model={
            "gpt-4o-mini": Health(10, 1, 80.0),
            "fast": Health(30, 2, 120.0),
            "service:demo-echo": Health(4, 0, 5.0),
        },
        by_prompt={"summarize": Health(8, 2, 900.0)},
        known=True,
    )
    seen = by_name(build(sources(stats), DEV))
    assert seen[("model", "gpt-4o-mini")].health == Health(40, 3, 120.0)
    assert seen[("service", "demo-echo")].health == Health(4, 0, 5.0)
    assert seen[("prompt", "summarize")].health == Health(8, 2, 900.0)
    assert seen[("model", "embed")].health is None and seen[("model", "embed")].health_known
    html = render_catalog(list(seen.values()))
    assert "120 ms" in html and "7.5 %" in html and "no calls" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "service"}, {"demo-echo", "demo-echo-gated", "evil.v2"}),
        ({"state": "deprecated"}, {"summarize"}),
        ({"q": "AZURE"}, {"gpt-4o-mini"}),
        ({"q": "echo gated"}, {"demo-echo-gated"}),
        ({"q": "search", "kind": "mcp"}, {"gh"}),
        ({"kind": "nonsense", "state": "<x>", "q": "fast"}, {"gpt-4o-mini"}),
    ],
)
def test_filters_by_query_string(query: dict[str, str], expected: set[str]) -> None:
    filters = Filters.parse(query)
    assert {e.name for e in build(sources(), DEV) if filters.keeps(e)} == expected


def test_a_long_query_is_cut() -> None:
    assert len(Filters.parse({"q": "a" * 10_000}).q) == 200


class Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h1 = 0
        self.labelled: set[str] = set()
        self.fields: list[dict[str, str | None]] = []
        self.items = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.h1 += tag == "h1"
        if tag == "label" and a.get("for"):
            self.labelled.add(str(a["for"]))
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.fields.append(a)
        if tag == "li" and self.items >= 0:
            self.items += 1


def _audited(html: str) -> Audit:
    audit = Audit()
    audit.feed(html)
    assert audit.h1 == 1
    assert all(f.get("id") in audit.labelled for f in audit.fields), audit.fields
    assert "<script>alert" not in html and "<img src=x" not in html
    return audit


def test_the_catalog_page_escapes_shows_lifecycle_and_standing() -> None:
    html = render_catalog(build(sources(), DEV), Filters.parse({"q": EVIL}))
    _audited(html)
    html = render_catalog(build(sources(), DEV))
    _audited(html)
    assert 'sunset on <time datetime="2030-01-01">2030-01-01</time>' in html
    assert 'Use <a href="/portal/apis/prompt/summarize-v2">summarize-v2</a> instead.' in html
    assert "Rejected" in html and "Reason: &lt;script&gt;" in html
    assert "Needs approval" in html and "Open to your tenant" in html
    # Analytics did not answer: no number is made up.
    assert "Latency and error rates are unavailable right now." in html and "<dd>—</dd>" in html


def test_five_hundred_entries_render_as_one_page() -> None:
    """Every entry rendered, once (the render time is measured by ``loadtest.catalog_render``, not here)."""
    entries = [
        Entry(
            kind=("model", "prompt", "service", "mcp")[i % 4],
            name=f"api-{i}",
            title=f"API {i}",
            description="An API of the load test. " * 4,
            state="deprecated" if i % 10 == 0 else "published",
            successor=f"api-{i + 1}" if i % 10 == 0 else "",
            sunset_at_ms=1_893_456_000_000 if i % 10 == 0 else 0,
            access=Access(name=f"api-{i}", needs_approval=bool(i % 2), standing="open" if i % 2 == 0 else "pending"),
            facts=(("Providers", "openai, azure"), ("Context window", "128,000 tokens"), ("Input", "$0.15 per 1M")),
            health=Health(100, 2, 120.0),
            health_known=True,
            search_text=f"api-{i}",
        )
        for i in range(500)
    ]
    html = render_catalog(entries)
    assert html.count('<li>\n    <h2><a href="/portal/apis/') == 500
    assert html.count("Deprecated") >= 50 and 'href="/portal/apis/prompt/api-' in html


# --- analytics -----------------------------------------------------------------------------------------------


def _result(columns: list[str], rows: list[list[Any]]) -> QueryResult:
    return QueryResult(columns=columns, rows=rows)


def test_health_asks_two_queries_for_everything_and_keeps_the_answer_a_while() -> None:
    asked: list[str] = []

    async def ask(name: str, params: dict[str, int | str]) -> QueryResult:
        asked.append(name)
        if name == "stats":
            return _result(["model", "requests", "errors", "latency_ms"], [["fast", 4, 1, [50.0, 90.0, 99.0]]])
        return _result(["prompt_name", "calls", "errors", "p50_latency_ms"], [["p", 2, 0, 300.0], ["p", 6, 3, 100.0]])

    now = [0.0]
    cache = HealthCache(ask, clock=lambda: now[0])
    stats = asyncio.run(cache.get())
    assert stats.known and stats.by_model["fast"] == Health(4, 1, 50.0)
    assert stats.prompt("p") == Health(8, 3, 100.0)
    asyncio.run(cache.get())
    assert sorted(asked) == ["prompt_versions", "stats"]
    now[0] = 60.0
    asyncio.run(cache.get())
    assert len(asked) == 4


def test_analytics_down_or_slow_leaves_the_numbers_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(name: str, params: dict[str, int | str]) -> QueryResult:
        raise AnalyticsUnavailable("no sink")

    async def slow(name: str, params: dict[str, int | str]) -> QueryResult:
        await asyncio.sleep(10)
        raise AssertionError("waited")

    from ingress.portal import health

    monkeypatch.setattr(health, "QUERY_TIMEOUT_S", 0.05)
    assert asyncio.run(HealthCache(down).get()) == Stats()
    assert asyncio.run(HealthCache(slow).get()) == Stats()


# --- the app, its pages and errors ---------------------------------------------------------------------------


def gateway(ask: Any) -> SimpleNamespace:
    return SimpleNamespace(
        routes=Mirror(ROUTES),
        prompt_book=PromptBook(PROMPTS, VERSIONS),
        rest_services=Mirror(SERVICES),
        mcp_servers=Mirror(SERVERS),
        mcp_catalog=Mirror(CATALOGS),
        mirrors={
            subjects.KV_TENANTS: Mirror(TENANTS),
            subjects.KV_SUBSCRIPTIONS: Mirror(SUBSCRIPTIONS),
            subjects.KV_APPROVAL_RULES: Mirror(RULES),
        },
        store=SimpleNamespace(named_query=ask),
    )


class NotSignedIn(Exception):
    pass


PERSON = SimpleNamespace(
    user=User(id="usr_d", email="dev@acme.test", tenant_id="acme"), role="developer", tenant_id="acme", csrf="tok-123"
)


@get("/api/whoami", include_in_schema=False)
async def whoami(request: Request) -> dict[str, str]:
    person = await views.signed_in(request)
    return {"email": person.user.email}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):
    """The portal with the catalog and docs, a fake sign-in (the person
    above; none when the test says so) and analytics that is down."""
    signed: dict[str, Any] = {"person": PERSON}

    async def signed_in(request: Any) -> Any:
        if signed["person"] is None:
            raise NotSignedIn()
        return signed["person"]

    async def down(name: str, params: dict[str, int | str]) -> QueryResult:
        raise AnalyticsUnavailable("no sink")

    fake_auth = ModuleType("fake_portal_auth")
    fake_auth.NotSignedIn = NotSignedIn  # type: ignore[attr-defined]
    fake_auth.ROUTES = [whoami]  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "fake_portal_auth", fake_auth)
    monkeypatch.setattr(views, "signed_in", signed_in)
    app = portal_app.build(gateway(down), None, ("fake_portal_auth", "ingress.portal.catalog", "ingress.portal.docs"))
    with TestClient(app) as c:
        c.signed = signed  # type: ignore[attr-defined]
        yield c


def test_pages_carry_the_strict_headers(client: TestClient) -> None:
    r = client.get("/portal")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert 'aria-current="page"' in r.text and "dev@acme.test" in r.text
    filtered = client.get("/portal", params={"kind": "mcp"})
    assert filtered.text.count('<li>\n    <h2><a href="/portal/apis/') == 1


@pytest.mark.parametrize(
    "path",
    [
        "/portal/apis/model/gpt-4o-mini",
        "/portal/apis/model/embed",
        "/portal/apis/prompt/summarize",
        "/portal/apis/service/demo-echo",
        "/portal/apis/service/demo-echo-gated",
        "/portal/apis/service/evil.v2",
        "/portal/apis/mcp/gh",
    ],
)
def test_every_docs_page_renders_escaped_and_labelled(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    _audited(r.text)
    # The try-it form's fields have no names: without its script nothing reaches the portal.
    form = re.search(r'<form id="try-it".*?</form>', r.text, re.S)
    if form is not None:
        assert " name=" not in form.group(0)


def test_a_service_page_shows_its_operations_samples_and_try_it(client: TestClient) -> None:
    html = client.get("/portal/apis/service/demo-echo").text
    assert "<code>/services/demo-echo/items/{id}</code> Read an item" in html
    assert "curl http://testserver.local/services/demo-echo/items/1" in html
    assert 'data-base-path="/services/demo-echo/"' in html and 'data-price="1000000"' in html
    assert "&lt;b&gt;" in client.get("/portal/apis/service/evil.v2").text


def test_a_deprecated_apis_page_says_until_when_and_links_its_successor(client: TestClient) -> None:
    html = client.get("/portal/apis/prompt/summarize").text
    assert 'stops answering on <time datetime="2030-01-01">' in html
    assert 'Use <a href="/portal/apis/prompt/summarize-v2">summarize-v2</a> instead.' in html


def test_a_model_page_has_the_openai_sample_and_the_apis_it_answers(client: TestClient) -> None:
    html = client.get("/portal/apis/model/gpt-4o-mini").text
    assert "client.chat.completions.create(" in html and "base_url=&#39;http://testserver.local/v1&#39;" in html
    assert "<code>/v1/chat/completions</code>" in html and "<code>/v1/embeddings</code>" not in html
    embed = client.get("/portal/apis/model/embed").text
    assert "<code>/v1/embeddings</code>" in embed and "client.embeddings.create(" in embed


@pytest.mark.parametrize(
    "path",
    [
        "/portal/apis/prompt/secret-draft",  # a draft
        "/portal/apis/prompt/old",  # retired
        "/portal/apis/service/hidden",  # a draft service
        "/portal/apis/mcp/other",  # no pattern of acme names its tools
        "/portal/apis/service/demo-echo.v7",
        "/portal/apis/service/demo-echo.vx",
        "/portal/apis/nope/x",
        "/portal/apis/model/..%2f..%2fetc",
        "/portal/no-such-page",
    ],
)
def test_what_the_person_may_not_see_is_a_404_page(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html") and "<h1>Not found</h1>" in r.text


def test_the_api_answers_errors_as_json(client: TestClient) -> None:
    r = client.get("/portal/api/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_not_signed_in_goes_to_the_sign_in_page_or_gets_401(client: TestClient) -> None:
    client.signed["person"] = None  # type: ignore[attr-defined]
    r = client.get("/portal/apis/model/embed?x=1", follow_redirects=False)
    assert (
        r.status_code == 303
        and r.headers["location"] == "/portal/sign-in?next=%2Fportal%2Fapis%2Fmodel%2Fembed%3Fx%3D1"
    )
    api = client.get("/portal/api/whoami")
    assert api.status_code == 401 and api.json()["error"]["code"] == "not_signed_in"


def test_static_files_by_name_only(client: TestClient) -> None:
    css = client.get(views.static_url("portal.css"))
    assert css.status_code == 200 and css.headers["etag"] and css.headers["content-type"].startswith("text/css")
    again = client.get("/portal/static/portal.css", headers={"if-none-match": css.headers["etag"]})
    assert again.status_code == 304
    for bad in (
        "/portal/static/..%2fapp.py",
        "/portal/static/app.py",
        "/portal/static/.portal.css",
        "/portal/static/x.js",
    ):
        assert client.get(bad).status_code == 404
