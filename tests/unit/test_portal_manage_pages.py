"""The access, apps, usage and admin pages render from their data alone:
every template with the values its handler gives it, hostile text escaped,
one h1, every form carrying the CSRF token and every input a label."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from ingress.portal.entries import Entry
from ingress.portal.views import render
from schemas.control import ApiKey, ApprovalRule, Subscription, Tenant
from schemas.people import App, Invitation, User
from services import portal_usage
from services.portal_access import Access
from services.portal_apps import GRACE_CHOICES

EVIL = '<script>alert("x")</script>'


@dataclass
class Person:
    user: User
    csrf: str = "tok-123"

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id


DEV = Person(User(id="usr_d", email="dev@acme.test", role="developer", tenant_id="acme"))
ADMIN = Person(User(id="usr_a", email="admin@acme.test", role="tenant_admin", tenant_id="acme"))
ROOT = Person(User(id="usr_r", email="root@gw.test", role="gateway_admin"))
SUB = Subscription(id="sub_1", tenant_id="acme", model="service:demo-echo-gated", request_reason=EVIL, reason=EVIL)
ROW = {"sub": SUB, "requested_by": "dev@acme.test", "decided_by": "", "created": "2026-01-01 00:00 UTC", "decided": ""}
APP = App(id="app_1", tenant_id="acme", user_id="usr_d", name=EVIL, description=EVIL)
KEY = ApiKey(id="key_1", tenant_id="acme", name=EVIL, app_id="app_1")
USAGE = portal_usage.summarize(
    ["hour", "model", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_pico_usd"],
    [["2026-03-01T10:00:00", EVIL, 3, 1, 10, 5, "1000000000001"]],
)
LIFECYCLE_ROW = {
    "kind": "service",
    "id": "demo.v1",
    "title": "/services/demo",
    "state": "deprecated",
    "owner": "api",
    "successor": EVIL,
    "sunset": "2030-01-31",
    "deprecated": "2026-01-01",
    "approval": True,
    "actions": ("publish", "deprecate", "retire"),
}


@dataclass
class Invited:
    user: User
    link: str
    invitation: Invitation


PAGES: list[tuple[str, Person, dict]] = [
    ("subscriptions.html", DEV, {"rows": [ROW], "done": ""}),
    ("subscriptions.html", ROOT, {"rows": [], "done": "Access requested."}),
    ("approvals.html", ADMIN, {"pending": [ROW], "decided": [ROW | {"sub": SUB}], "done": ""}),
    ("apps.html", DEV, {"rows": [{"app": APP, "keys": 1, "created": "x"}], "done": ""}),
    ("apps.html", ROOT, {"rows": [], "done": ""}),
    (
        "app.html",
        DEV,
        {
            "app": APP,
            "keys": [{"key": KEY, "state": "active", "created": "", "last_used": "", "grace_until": "soon"}],
            "owner": EVIL,
            "is_owner": True,
            "grace_choices": GRACE_CHOICES,
            "created": "",
            "done": "",
        },
    ),
    ("key_secret.html", DEV, {"app": APP, "key": KEY, "secret": "sk-secret", "rotated": True, "grace_until": "x"}),
    (
        "usage.html",
        DEV,
        {
            "usage": USAGE,
            "chart": portal_usage.chart_data(USAGE),
            "days": 30,
            "windows": (1, 7, 30, 90),
            "scope": "the keys of your apps",
            "no_keys": False,
            "unavailable": "",
        },
    ),
    (
        "admin_tenants.html",
        ROOT,
        {
            "rows": [
                {"tenant": Tenant(id="acme"), "users": 1, "apps": 1, "keys": 1, "pending": 1, "budget": "", "rpm": None}
            ],
            "section": "tenants",
            "done": "",
        },
    ),
    (
        "admin_users.html",
        ROOT,
        {
            "rows": [{"user": User(id="u", email="e@x.test", name=EVIL), "state": "invited", "invited_by": ""}],
            "tenant_ids": ["acme"],
            "section": "users",
            "done": "",
        },
    ),
    (
        "admin_invited.html",
        ADMIN,
        {
            "invited": Invited(User(id="u", email="e@x.test"), "http://x/portal/invitations/t", Invitation("u", 1)),
            "expires": "",
            "section": "users",
            "done": "",
        },
    ),
    (
        "admin_rules.html",
        ROOT,
        {"rows": [{"id": "rule_1", "rule": ApprovalRule(pattern=EVIL), "created": ""}], "section": "rules", "done": ""},
    ),
    (
        "admin_lifecycle.html",
        ROOT,
        {
            "rows": [LIFECYCLE_ROW],
            "states": ("draft", "published"),
            "may_change": True,
            "section": "lifecycle",
            "done": "",
        },
    ),
]


class Audit(HTMLParser):
    """What the checks need of a page: its h1s, forms, inputs and labels."""

    def __init__(self) -> None:
        super().__init__()
        self.h1 = 0
        self.forms: list[dict] = []
        self.ids: set[str] = set()
        self.labelled: set[str] = set()
        self.aria_labelled: int = 0
        self.inputs: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "h1":
            self.h1 += 1
        if tag == "form":
            self.forms.append({"method": a.get("method"), "csrf": False})
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"])
        if tag == "input" and a.get("type") == "hidden" and a.get("name") == "csrf" and self.forms:
            self.forms[-1]["csrf"] = a.get("value") == "tok-123"
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.inputs.append(a)


@pytest.mark.parametrize(("template", "person", "context"), PAGES, ids=[f"{p[0]}-{p[1].role}" for p in PAGES])
def test_a_page_renders_escaped_labelled_and_csrf_protected(template: str, person: Person, context: dict) -> None:
    html = render(template, person=person, csrf=person.csrf, **context)
    assert "<script>alert" not in html
    audit = Audit()
    audit.feed(html)
    assert audit.h1 == 1
    for form in audit.forms:
        if form["method"] == "post":
            assert form["csrf"], template
    for field in audit.inputs:
        assert field.get("id") in audit.labelled, (template, field)


def test_the_usage_data_block_cannot_close_its_script_tag() -> None:
    html = render(PAGES[7][0], person=DEV, csrf="tok-123", **PAGES[7][2])
    block = re.search(r'<script type="application/json" id="usage-data">(.*?)</script>', html, re.S)
    assert block is not None and "<" not in block.group(1)


@pytest.mark.parametrize(
    ("access", "says", "form"),
    [
        (Access(name="x", needs_approval=False, standing="open"), "Open to your tenant", False),
        (Access(name="x", needs_approval=True, standing="none", may_subscribe=True), "Approval needed", True),
        (Access(name="x", needs_approval=True, standing="pending", request_reason=EVIL), "Pending", False),
        (Access(name="x", needs_approval=True, standing="rejected", reason=EVIL, may_subscribe=True), "Rejected", True),
        (Access(name="x", needs_approval=True, standing="approved"), "Approved", False),
    ],
)
def test_the_access_panel_shows_the_standing_and_the_form_when_one_may_ask(
    access: Access, says: str, form: bool
) -> None:
    entry = Entry(kind="service", name="demo-echo-gated", title="t", access=access)
    html = render("_subscribe.html", person=DEV, csrf="tok-123", entry=entry)
    assert says in html and "<script>alert" not in html
    assert ('action="/portal/subscriptions"' in html) is form
    if form:
        assert 'name="csrf" value="tok-123"' in html and 'name="name" value="demo-echo-gated"' in html
