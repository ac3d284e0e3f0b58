"""The pages of the REST service forms, the account, things shown once,
and every form shown again with its error: rendered from their data alone,
hostile text escaped, one h1, CSRF on every POST form, every input
labelled, and the error tied to its input (aria-describedby, aria-invalid)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import msgspec
import pytest

from ingress.admin.services import service_out
from ingress.portal.entries import Entry
from ingress.portal.forms import FormError
from ingress.portal.views import render
from schemas.control import ApiKey
from schemas.people import App, PortalSession, User
from schemas.rest import ALL_METHODS, RestInstance, RestService
from services import portal_service_form
from services.portal_access import Access
from services.portal_apps import GRACE_CHOICES

EVIL = '<script>alert("x")</script>'


@dataclass
class Person:
    user: User
    csrf: str = "tok-123"
    session: PortalSession = field(default_factory=lambda: PortalSession("u", "tok-123", 0, 1))

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id


DEV = Person(User(id="usr_d", email="dev@acme.test", role="developer", tenant_id="acme", password_hash="$argon2id$x"))
ADMIN = Person(User(id="usr_a", email="admin@acme.test", role="tenant_admin", tenant_id="acme"))
ROOT = Person(User(id="usr_r", email="root@gw.test", role="gateway_admin", password_hash="$argon2id$x"))
SSO = Person(User(id="usr_s", email="sso@acme.test", role="developer", tenant_id="acme", oidc_subject="sub"))
SERVICE = RestService(
    slug="billing",
    version=2,
    title=EVIL,
    description=EVIL,
    instances=[RestInstance(url="http://127.0.0.1:9000/api", weight=2, health_path="/healthz")],
    openapi_url="http://127.0.0.1:9000/openapi.json",
    state="draft",
    owner="api",
)
APP = App(id="app_1", tenant_id="acme", user_id="usr_d", name=EVIL)
KEY = ApiKey(id="key_1", tenant_id="acme", name=EVIL, app_id="app_1")


def _form(values: dict[str, str]) -> dict:
    return {
        "values": values,
        "methods": ALL_METHODS,
        "instance_rows": portal_service_form.rows_shown(values, "instance"),
        "header_rows": portal_service_form.rows_shown(values, "header"),
    }


def _service_page(error: FormError | None, owner: str = "api") -> dict:
    service = service_out(msgspec.structs.replace(SERVICE, owner=owner))
    return {"service": service, "created": "", "docs_href": "", "section": "services", "done": "", "form_error": error}


PAGES: list[tuple[str, str, Person, dict]] = [
    (
        "services-list",
        "admin_services.html",
        ROOT,
        {"rows": [{"out": service_out(SERVICE), "created": ""}], "section": "services", "done": ""},
    ),
    (
        "service-new",
        "admin_service_new.html",
        ROOT,
        {**_form(portal_service_form.new_values()), "section": "services", "done": ""},
    ),
    (
        "service-new-error",
        "admin_service_new.html",
        ROOT,
        {
            **_form(portal_service_form.new_values() | {"slug": EVIL, "instance_url_4": EVIL}),
            "form_error": FormError("service", EVIL, "instance_url_4"),
            "section": "services",
            "done": "",
        },
    ),
    (
        "service-api",
        "admin_service.html",
        ROOT,
        {**_service_page(FormError("openapi", EVIL, "openapi_url")), **_form(portal_service_form.values_of(SERVICE))},
    ),
    (
        "service-config",
        "admin_service.html",
        ROOT,
        {**_service_page(None, "config"), **_form(portal_service_form.values_of(SERVICE))},
    ),
    (
        "account",
        "account.html",
        DEV,
        {"ways": ["password"], "has_password": True, "min_length": 12, "max_length": 1024, "done": "Changed."},
    ),
    (
        "account-error",
        "account.html",
        DEV,
        {
            "ways": ["password"],
            "has_password": True,
            "min_length": 12,
            "max_length": 1024,
            "form_error": FormError("password", EVIL, "confirm"),
            "done": "",
        },
    ),
    (
        "account-sso",
        "account.html",
        SSO,
        {"ways": ["single sign-on"], "has_password": False, "min_length": 12, "max_length": 1024, "done": ""},
    ),
    ("secret", "key_secret.html", DEV, {"app": APP, "key": KEY, "secret": "sk-1", "rotated": False, "grace_until": ""}),
    (
        "secret-shown",
        "key_secret.html",
        DEV,
        {"app": APP, "key": KEY, "secret": "", "rotated": False, "grace_until": ""},
    ),
    (
        "link-again",
        "admin_invited.html",
        ADMIN,
        {
            "invited": {
                "user": User(id="u", email="e@x.test"),
                "link": "https://x/portal/invitations/t",
                "mailed": True,
            },
            "expires": "soon",
            "again": True,
            "reset": True,
            "section": "users",
            "done": "",
        },
    ),
    (
        "link-shown",
        "admin_invited.html",
        ADMIN,
        {
            "invited": {"user": User(id="u", email=EVIL), "link": "", "mailed": False},
            "expires": "",
            "again": True,
            "reset": False,
            "section": "users",
            "done": "",
        },
    ),
    (
        "apps-error",
        "apps.html",
        DEV,
        {
            "rows": [],
            "done": "",
            "form_error": FormError("new-app", EVIL, "name"),
            "values": {"name": EVIL, "description": EVIL},
        },
    ),
    (
        "app-error",
        "app.html",
        DEV,
        {
            "app": APP,
            "keys": [],
            "owner": "",
            "is_owner": True,
            "grace_choices": GRACE_CHOICES,
            "created": "",
            "done": "",
            "form_error": FormError("new-key", EVIL, "name"),
            "values": {"name": EVIL},
        },
    ),
    (
        "users-error",
        "admin_users.html",
        ROOT,
        {
            "rows": [
                {"user": User(id="u1", email="a@x.test"), "state": "invited", "invited_by": ""},
                {"user": User(id="u2", email="b@x.test", password_hash="h"), "state": "active", "invited_by": ""},
                {"user": User(id="u3", email="c@x.test", disabled=True), "state": "disabled", "invited_by": ""},
            ],
            "tenant_ids": ["acme", "globex"],
            "section": "users",
            "done": "",
            "form_error": FormError("invite", EVIL, "email"),
            "values": {"email": EVIL, "name": EVIL, "role": "tenant_admin", "tenant": "globex"},
        },
    ),
]


class Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h1 = 0
        self.forms: list[dict] = []
        self.ids: set[str] = set()
        self.labelled: set[str] = set()
        self.inputs: list[dict] = []
        self.described: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "h1":
            self.h1 += 1
        if tag == "form":
            self.forms.append({"method": a.get("method"), "csrf": False})
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"])
        if tag == "input" and a.get("type") == "hidden" and a.get("name") == "csrf" and self.forms:
            self.forms[-1]["csrf"] = a.get("value") == "tok-123"
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden" and "hidden" not in a:
            self.inputs.append(a)
        for ref in (a.get("aria-describedby") or "").split():
            self.described.append((a.get("name") or a.get("id") or tag, ref))


def audit(template: str, person: Person, context: dict) -> tuple[str, Audit]:
    html = render(template, person=person, csrf=person.csrf, **context)
    found = Audit()
    found.feed(html)
    return html, found


@pytest.mark.parametrize(("name", "template", "person", "context"), PAGES, ids=[p[0] for p in PAGES])
def test_a_page_is_escaped_labelled_protected_and_its_error_tied_to_its_input(
    name: str, template: str, person: Person, context: dict
) -> None:
    html, found = audit(template, person, context)
    assert "<script>alert" not in html
    assert found.h1 == 1
    assert all(f["csrf"] for f in found.forms if f["method"] == "post"), name
    for tag in found.inputs:
        assert tag.get("id") in found.labelled, (name, tag)
    for what, ref in found.described:
        assert ref in found.ids, (name, what, ref)
    error = context.get("form_error")
    if error is not None:
        invalid = [t for t in found.inputs if t.get("aria-invalid") == "true"]
        assert [t.get("name") for t in invalid] == [error.field], name
        assert f"{error.form}-error" in (invalid[0].get("aria-describedby") or "").split()
        assert 'role="alert"' in html


def test_a_form_shown_again_keeps_what_was_given_but_never_a_password() -> None:
    html, _ = audit(*PAGES[14][1:])
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in html
    assert '<option value="tenant_admin" selected>' in html and '<option value="globex" selected>' in html
    # The new link is offered for whoever is enabled and not the admin: an invitation again, or a reset.
    assert 'aria-label="New invitation link for a@x.test"' in html
    assert 'aria-label="Password reset link for b@x.test"' in html and "link for c@x.test" not in html
    account, _ = audit("account.html", DEV, PAGES[6][3] | {"values": {"current": "hunter2-typed"}})
    assert "hunter2-typed" not in account


def test_a_secret_shown_already_is_said_so_without_the_secret_or_its_script() -> None:
    html, _ = audit(*PAGES[9][1:])
    assert 'id="key-secret"' not in html and "shown already" in html and "keys.js" not in html
    shown, _ = audit(*PAGES[8][1:])
    assert 'id="key-secret"' in shown and 'value="sk-1"' in shown and "keys.js" in shown


def test_only_a_gateway_admin_is_shown_the_link_to_rest_services() -> None:
    context = {"rows": [], "tenant_ids": ["acme"], "section": "users", "done": ""}
    assert "/admin/services" in audit("admin_users.html", ROOT, context)[0]
    assert "/admin/services" not in audit("admin_users.html", ADMIN, context)[0]


def test_a_config_file_service_offers_no_change() -> None:
    html, found = audit(*PAGES[4][1:])
    assert "config file" in html and not found.forms[1:]  # the layout's sign-out form only


def test_the_access_form_shown_again_keeps_the_reason() -> None:
    entry = Entry(
        kind="service",
        name="gated",
        title="t",
        access=Access(name="x", needs_approval=True, standing="none", may_subscribe=True),
    )
    html = render(
        "_subscribe.html",
        person=DEV,
        csrf="tok-123",
        entry=entry,
        form_error=FormError("subscribe", "reason is required.", "reason"),
        values={"reason": EVIL},
    )
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    assert 'aria-describedby="subscribe-hint subscribe-error" aria-invalid="true"' in html
