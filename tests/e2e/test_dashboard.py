"""The dashboard in Debian's Chromium (headless, driven by Playwright): a
gateway admin signs in with the form and sees the requests just made in its
charts and in the request view; a tenant admin, sending its key as a bearer
header, sees its own tenant only; neither page logs a console error.
Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.charts import undrawn
from tests.stack import ADMIN_KEY, DEMO_KEY, REDACT_KEY, Stack

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 30_000


def chat(stack: Stack, key: str, model: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


@pytest.fixture(scope="module")
def made(stack: Stack) -> dict[str, str]:
    """Requests of two tenants on two models, one failed, all landed."""
    ids = {
        "demo": chat(stack, DEMO_KEY, "demo-model", "dashboard one").headers["x-request-id"],
        "careful": chat(stack, REDACT_KEY, "other-model", "dashboard mail bob@example.org").headers["x-request-id"],
        "failed": chat(stack, DEMO_KEY, "demo-model", "dashboard [mock:status=400]").headers["x-request-id"],
        "responses": httpx.post(
            f"{stack.base_url}/responses",
            json={"model": "claude-model", "input": "dashboard responses"},
            headers={"authorization": f"Bearer {DEMO_KEY}"},
        ).headers["x-request-id"],
    }
    for request_id in ids.values():
        stack.request_row(request_id)
    return ids


@pytest.fixture(scope="module")
def tenant_admin_key(stack: Stack) -> str:
    made = httpx.post(
        f"{stack.admin_url}/keys",
        json={"tenant": "demo", "role": "tenant_admin"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert made.status_code == 201, made.text
    return made.json()["secret"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    with sync_playwright() as p:
        yield p


def open_context(pw: object, **options: object) -> BrowserContext:
    return pw.chromium.launch_persistent_context(  # type: ignore[attr-defined]
        tempfile.mkdtemp(prefix="sluice-chromium-"), executable_path=CHROMIUM, headless=True, args=FLAGS, **options
    )


def watch_console(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return problems


def chart(page: Page, chart_id: str) -> list[dict]:
    return page.evaluate(f"() => document.getElementById('{chart_id}').data.map(t => ({{x: t.x, y: t.y}}))")


def wait_for_update(page: Page, after: int = 0) -> None:
    try:
        page.wait_for_function(f"() => Number(document.body.dataset.updates || 0) > {after}", timeout=WAIT_MS)
    except Exception as exc:  # say what the page says
        status = page.inner_text("#status") if page.locator("#status").count() else page.content()[:2000]
        raise AssertionError(f"the dashboard did not update: {status}") from exc


def test_the_dashboard_asks_for_an_admin_key(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.layout.http_port}/dashboard"
    form = httpx.get(base + "/")
    assert form.status_code == 200 and 'name="key"' in form.text
    as_caller = httpx.get(base + "/", headers={"authorization": f"Bearer {DEMO_KEY}"})
    assert as_caller.status_code == 403 and 'name="key"' in as_caller.text
    data = httpx.get(base + "/api/panels")
    assert data.status_code == 401 and data.json()["error"]["type"] == "authentication_error"
    bad = httpx.get(base + "/api/panels", params={"minutes": "lots"}, headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_window"
    wrong = httpx.post(base + "/sign-in", data={"key": "sk-nope-0000000000"})
    assert wrong.status_code == 401 and "sign-in" in wrong.text
    assert httpx.get(base + "/static/../app.py").status_code == 404


def test_a_gateway_admin_signs_in_and_sees_the_requests_just_made(
    stack: Stack, made: dict[str, str], browser: object
) -> None:
    context = open_context(browser)
    try:
        page = context.new_page()
        problems = watch_console(page)
        page.goto(f"http://127.0.0.1:{stack.layout.http_port}/dashboard")
        page.fill("#key", ADMIN_KEY)
        page.click("button[type=submit]")
        wait_for_update(page)

        models = chart(page, "chart-cost-model")[0]
        assert {"demo-model", "other-model"} <= set(models["x"])
        assert all(y > 0 for x, y in zip(models["x"], models["y"], strict=True) if x in ("demo-model", "other-model"))
        by_api = chart(page, "chart-by-api")[0]
        assert {"chat", "responses"} <= set(by_api["x"]) and all(n > 0 for n in by_api["y"])
        row = page.locator("#recent tbody tr", has_text=made["responses"])
        assert row.locator("td", has_text="responses").count() == 1
        tenants = set(chart(page, "chart-cost-tenant")[0]["x"])
        assert {"demo", "careful"} <= tenants
        requests, errors = chart(page, "chart-per-minute")
        assert sum(requests["y"]) >= 3 and sum(errors["y"]) >= 1
        p50 = chart(page, "chart-latency")[0]
        assert any(label.startswith("demo-model @") for label in p50["x"]) and all(v > 0 for v in p50["y"])
        assert page.locator("#recent tbody tr", has_text=made["careful"]).count() == 1
        assert undrawn(page) == []  # every chart, as Plotly drew it

        # The request view of an opted-in tenant's call: its stages, tries and redacted bodies.
        page.locator("#recent tbody tr", has_text=made["careful"]).click()
        page.wait_for_selector("#request-detail pre.body-request", timeout=WAIT_MS)
        detail = page.inner_text("#request-detail")
        assert made["careful"] in detail and "other-model" in detail
        assert "[REDACTED:email]" in detail and "bob@example.org" not in detail
        assert "policy" in detail and "provider" in detail  # its stages
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-gateway-admin.png"), full_page=True)

        updates = int(page.evaluate("() => Number(document.body.dataset.updates)"))
        wait_for_update(page, updates)  # it refreshes on its own
        assert problems == []
    finally:
        context.close()


def test_a_tenant_admin_sees_only_its_tenant(
    stack: Stack, made: dict[str, str], tenant_admin_key: str, browser: object
) -> None:
    context = open_context(browser, extra_http_headers={"authorization": f"Bearer {tenant_admin_key}"})
    try:
        page = context.new_page()
        problems = watch_console(page)
        page.goto(f"http://127.0.0.1:{stack.layout.http_port}/dashboard/")
        wait_for_update(page)
        assert "tenant admin of demo" in page.inner_text("#who")
        assert undrawn(page) == []
        (tenant_costs,) = chart(page, "chart-cost-tenant")
        assert tenant_costs["x"] == ["demo"]
        # Its models' costs add up to its own total, not every tenant's.
        assert sum(chart(page, "chart-cost-model")[0]["y"]) == pytest.approx(tenant_costs["y"][0])
        assert page.locator("#recent tbody tr", has_text=made["demo"]).count() == 1
        assert page.locator("#recent tbody tr", has_text=made["careful"]).count() == 0
        # Another tenant's request is not found, as if it did not exist.
        page.fill("#request-id", made["careful"])
        page.click("#request-form button")
        page.wait_for_selector("#request-detail .error", timeout=WAIT_MS)
        assert "No request" in page.inner_text("#request-detail")
        page.fill("#request-id", made["demo"])
        page.click("#request-form button")
        page.wait_for_function(
            "() => document.querySelector('#request-detail').innerText.includes('not kept')", timeout=WAIT_MS
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-tenant-admin.png"), full_page=True)
        # A 404 answer to a fetch is logged by Chromium as a failed resource; the page itself raised nothing.
        assert [p for p in problems if "404" not in p] == []
    finally:
        context.close()
    time.sleep(0)  # keep the module's order: the stack serves the next tests
