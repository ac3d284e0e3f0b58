"""The developer portal in Debian's Chromium (headless, driven by Playwright),
walked as two people of one tenant, as issue 27 tells it: a developer
accepts an invitation (the link ``sluice users invite --json`` prints), sets
a password and signs in, finds the summarize prompt API and the REST
services in the catalog by its search, asks for the approval-gated service
with a reason and is refused (403) when calling it; a tenant admin, invited
the same way, approves it with a reason; the developer sees the decision,
makes an app and a key (its secret shown once), calls the service with
try-it (status, answer and cost shown) and finds the call in the usage
chart.

Every page visited is checked by axe-core (from npm, ``make agent-clients``):
no violation of impact serious or critical. No page logs a console error or
raises. Screenshots go to test-artifacts/portal-*.png.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.charts import undrawn
from tests.integration.test_admin_cli import sluice
from tests.portal_helpers import PASSWORD, admin_client, demo_apis, origin, wait_rows
from tests.stack import Stack

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / ".agent-clients" / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 15_000
TENANT = "demo"
DEVELOPER = "dev.walker@example.com"
TENANT_ADMIN = "admin.walker@example.com"
ASKED = "The billing team checks its webhooks against the echo."
DECIDED = "Fine for billing; keep it under 10 calls a minute."
# What axe-core must not find on any page (it reports "minor" and "moderate" too).
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def walk_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("portal-walk"), timeout_s=10, extra_config=demo_apis()).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's chromium (make chromium)"
    assert AXE.is_file(), f"{AXE} is missing: run make agent-clients"
    with sync_playwright() as p:
        yield p


@dataclass
class Visitor:
    """One person's browser: its page, and what its pages logged."""

    context: BrowserContext
    page: Page
    name: str
    problems: list[str] = field(default_factory=list)
    # Chromium logs a fetch answered with an error status as a failed
    # resource; a call the test expects to be refused is listed here.
    refusals_expected: set[str] = field(default_factory=set)
    shots: int = 0

    def watch(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"{self.name}: page error: {e}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if "Failed to load resource" in message.text and any(url.endswith(p) for p in self.refusals_expected):
            return
        self.problems.append(f"{self.name}: console.error on {self.page.url}: {message.text} ({url})")

    def check(self, step: str) -> None:
        """The page as it is now: axe-core's verdict, and a screenshot."""
        self.page.wait_for_load_state("load", timeout=WAIT_MS)
        axe_check(self.page, f"{self.name} {step}")
        self.shots += 1
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"portal-{self.name}-{self.shots:02d}-{step}.png"), full_page=True)


def open_visitor(pw: object, name: str) -> Visitor:
    context = pw.chromium.launch_persistent_context(  # type: ignore[attr-defined]
        tempfile.mkdtemp(prefix="sluice-chromium-"), executable_path=CHROMIUM, headless=True, args=FLAGS
    )
    # axe-core comes with every document the context loads, before the
    # page's own scripts: the portal's CSP (script-src 'self') refuses an
    # inline <script> such as add_script_tag writes, and the check must not
    # loosen the CSP it is there to see working.
    context.add_init_script(path=str(AXE))
    context.set_default_timeout(WAIT_MS)
    visitor = Visitor(context=context, page=context.new_page(), name=name)
    visitor.watch()
    return visitor


AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ")),
  }));
}"""


def axe_check(page: Page, where: str) -> None:
    violations = page.evaluate(AXE_RUN)
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, f"axe-core on {where} ({page.url}): {json.dumps(violations, indent=1)}"


def invite(stack: Stack, email: str, role: str) -> str:
    """The one-time link, as ``sluice users invite ... --json`` prints it."""
    out = sluice(stack, "users", "invite", email, "--tenant", TENANT, "--role", role, "--json")
    link = json.loads(out.stdout)["link"]
    assert link.startswith(origin(stack) + "/portal/invitations/"), link
    return link


def accept_and_sign_in(v: Visitor, link: str, email: str) -> None:
    page = v.page
    page.goto(link)
    assert page.locator("h1").inner_text() == "Set your password"
    assert email in page.inner_text("main")
    v.check("invitation")
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/portal/sign-in\?accepted=1"))
    assert "Your password is set" in page.inner_text("main")
    v.check("sign-in")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/portal/?$"))
    assert email in page.inner_text("header")


def search(v: Visitor, words: str) -> list[str]:
    """The catalog's search, as a person types it: the titles' links it keeps."""
    v.page.fill("#catalog-q", words)
    v.page.click("form[role=search] button[type=submit]")
    v.page.wait_for_url(re.compile(r"[?&]q="))
    return [a.get_attribute("href") or "" for a in v.page.locator("ul.entries h2 a").all()]


def try_it(v: Visitor, path: str) -> dict[str, str]:
    """Send the try-it form of the API page open now; what it shows."""
    page = v.page
    if path:
        page.fill("#try-path", path)
    page.click("#try-send")
    page.wait_for_function("() => document.getElementById('try-progress').textContent !== 'Sending…'")
    page.wait_for_selector("#try-result:not([hidden])")
    shown = {f: page.inner_text(f"#try-{f}") for f in ("status", "latency", "cost", "request-id", "answer")}
    shown["progress"] = page.inner_text("#try-progress")
    return shown


def wait_usage(v: Visitor, api: str, deadline_s: float = 30.0) -> None:
    """The usage page, reloaded until its table lists ``api`` (the sink writes rows within a second or so)."""
    deadline = time.monotonic() + deadline_s
    while True:
        v.page.goto(f"{origin_of(v)}/portal/usage?days=1")
        if v.page.locator("table tbody code", has_text=api).count():
            return
        assert time.monotonic() < deadline, f"{api} never showed in usage: {v.page.inner_text('main')[:1000]}"
        time.sleep(0.5)


def origin_of(v: Visitor) -> str:
    return re.match(r"https?://[^/]+", v.page.url).group(0)  # type: ignore[union-attr]


def landed(stack: Stack, request_ids: list[str]) -> None:
    """Wait for the requests' rows. Playwright's sync API keeps an event
    loop running in this thread, so the stack's query runs in another."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(wait_rows, stack, request_ids).result(timeout=35)


def tenant_key(stack: Stack) -> str:
    """A key of the developer's tenant, made by a gateway admin (the
    portal's own app keys come after approval, in the issue's order)."""
    with admin_client(stack) as admin:
        made = admin.post("/keys", json={"tenant": TENANT, "name": "walk-probe"})
    assert made.status_code == 201, made.text
    return made.json()["secret"]


def test_a_developer_and_a_tenant_admin_walk_the_portal(walk_stack: Stack, playwright: object) -> None:
    stack = walk_stack
    base = origin(stack)
    dev_link = invite(stack, DEVELOPER, "developer")
    admin_link = invite(stack, TENANT_ADMIN, "tenant-admin")
    dev = open_visitor(playwright, "developer")
    admin: Visitor | None = None
    try:
        page = dev.page
        # An invitation, a password, a session.
        accept_and_sign_in(dev, dev_link, DEVELOPER)
        dev.check("catalog")

        # The catalog's search finds the summarize prompt API and the REST services.
        found = search(dev, "summarize")
        assert "/portal/apis/prompt/summarize" in found, found
        dev.check("catalog-search-summarize")
        page.click("a[href='/portal/apis/prompt/summarize']")
        assert page.locator("h1").inner_text().lower().startswith("summarize")
        assert page.locator("#try-it[data-mode=prompt]").count() == 1
        dev.check("api-summarize")
        page.goto(f"{base}/portal")
        found = search(dev, "echo")
        assert {"/portal/apis/service/demo-echo", "/portal/apis/service/demo-echo-gated"} <= set(found), found
        assert "/portal/apis/prompt/summarize" not in found
        dev.check("catalog-search-echo")

        # Access asked for, with a reason: pending, and calls refused.
        page.click("a[href='/portal/apis/service/demo-echo-gated']")
        assert "Approval needed" in page.inner_text("section.access")
        dev.check("api-gated")
        page.fill("#subscribe-reason", ASKED)
        page.click("form.subscribe button[type=submit]")
        page.wait_for_url(re.compile(r"/portal/apis/service/demo-echo-gated\?done=subscribed"))
        access = page.inner_text("section.access")
        assert "Pending" in access and ASKED in access, access
        dev.check("api-gated-pending")
        dev.refusals_expected.add("/services/demo-echo-gated/items/1")
        page.fill("#try-key", tenant_key(stack))
        refused = try_it(dev, "items/1")
        assert refused["status"].startswith("403"), refused
        assert "subscription" in refused["answer"].lower(), refused
        dev.check("try-it-refused")

        # The tenant admin decides in the approval queue, with a reason.
        admin = open_visitor(playwright, "tenant-admin")
        accept_and_sign_in(admin, admin_link, TENANT_ADMIN)
        admin.page.click("nav a:text-is('Approvals')")
        admin.page.wait_for_url(re.compile(r"/portal/approvals$"))
        item = admin.page.locator("ul.entries li", has_text="service:demo-echo-gated")
        assert item.count() == 1 and ASKED in item.inner_text() and DEVELOPER in item.inner_text()
        admin.check("approvals")
        item.locator("textarea").fill(DECIDED)
        item.locator("button[value=approve]").click()
        admin.page.wait_for_url(re.compile(r"/portal/approvals\?done=approve"))
        decided = admin.page.locator("table tbody tr", has_text="service:demo-echo-gated").inner_text()
        assert "approved" in decided and DECIDED in decided, decided
        admin.check("approvals-decided")
        admin.context.close()
        admin_problems, admin = admin.problems, None

        # The developer sees the decision and its reason.
        page.reload()
        access = page.inner_text("section.access")
        assert "Approved" in access and DECIDED in access, access
        dev.check("api-gated-approved")
        page.click("nav a:text-is('Subscriptions')")
        row = page.locator("table tbody tr", has_text="service:demo-echo-gated").inner_text()
        assert "approved" in row and DECIDED in row and ASKED in row, row
        dev.check("subscriptions")

        # An app, a key: its secret shown once.
        page.click("nav a:text-is('Apps and keys')")
        assert "No apps yet" in page.inner_text("main")
        dev.check("apps")
        page.fill("#app-name", "billing-webhooks")
        page.fill("#app-description", "Checks webhooks against the echo service.")
        page.click("main form[action='/portal/apps'] button[type=submit]")
        page.wait_for_url(re.compile(r"/portal/apps/[^/?]+\?done=created"))
        app_url = page.url.split("?")[0]
        dev.check("app")
        page.fill("#key-name", "ci")
        page.click("main form[action$='/keys'] button[type=submit]")
        page.wait_for_selector("#key-secret")
        secret = page.input_value("#key-secret")
        assert len(secret) >= 20, secret
        dev.check("key-secret")
        page.click("#use-secret")
        page.wait_for_function("() => document.getElementById('secret-status').textContent.includes('Kept')")
        # Reloaded, the page does not show the secret again. (It is the
        # answer to the form's POST: Chromium posts it again, asking first;
        # headless, the question is accepted, and another key is made.)
        page.reload()
        assert secret not in page.content()
        page.goto(app_url)
        assert secret not in page.content()
        assert page.locator("table tbody tr", has_text="ci").count() >= 1
        page.reload()
        assert secret not in page.content() and page.locator("#key-secret").count() == 0

        # Try-it with the key kept for this tab: the gated service, then the priced one.
        page.goto(f"{base}/portal/apis/service/demo-echo-gated")
        assert page.locator("#try-key-kept").is_visible() and page.input_value("#try-key") == secret
        answered = try_it(dev, "items/42")
        assert answered["status"].startswith("200"), answered
        echoed = json.loads(answered["answer"])
        assert echoed["method"] == "GET" and echoed["path"].endswith("/items/42"), echoed
        assert answered["latency"].endswith(" ms") and answered["request-id"] not in ("", "—"), answered
        dev.check("try-it-gated")
        page.goto(f"{base}/portal/apis/service/demo-echo")
        priced = try_it(dev, "items/7")
        assert priced["status"].startswith("200"), priced
        assert priced["cost"].startswith("$0.000001"), priced
        dev.check("try-it-priced")
        assert secret not in httpx.get(f"{base}/portal/apis/service/demo-echo").text  # not the portal's to know

        # The calls in the usage chart.
        landed(stack, [priced["request-id"], answered["request-id"]])
        wait_usage(dev, "service:demo-echo-gated")
        page.wait_for_function("() => (document.getElementById('chart-requests').data || []).length > 0")
        series = page.evaluate(
            "() => document.getElementById('chart-requests').data.map(t => [t.name, t.y.reduce((a, b) => a + b, 0)])"
        )
        assert dict(series) == {"service:demo-echo-gated": 1, "service:demo-echo": 1}, series
        assert undrawn(page) == []  # both charts, requests and spend
        assert "the keys of your apps" in page.inner_text("main")
        dev.check("usage")
        assert dev.problems + admin_problems == []
    finally:
        if admin is not None:
            admin.context.close()
        dev.context.close()
