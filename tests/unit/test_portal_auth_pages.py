"""The sign-in and invitation pages as rendered (hostile values escaped,
every input labelled), and where a sign-in may lead."""

from __future__ import annotations

import re

import pytest

from ingress.portal import views
from ingress.portal.browser import safe_next


def sign_in(**values: object) -> str:
    base = {"form_csrf": "c" * 64, "message": "", "notice": "", "email": "", "next": "/portal", "oidc_label": ""}
    return views.render("sign_in.html", **{**base, **values})


def labelled(html: str) -> None:
    """Every visible input has a label naming it."""
    ids = set(re.findall(r'<label for="([^"]+)"', html))
    for tag in re.findall(r"<input [^>]*>", html):
        if 'type="hidden"' in tag or " hidden " in tag:
            continue
        (found,) = re.findall(r'id="([^"]+)"', tag)
        assert found in ids, tag


def test_the_sign_in_page_is_one_form_with_its_csrf_value() -> None:
    html = sign_in()
    assert html.count("<h1>") == 1 and 'lang="en"' in html
    assert 'name="csrf" value="' + "c" * 64 + '"' in html and 'action="/portal/sign-in"' in html
    assert 'autocomplete="current-password"' in html and "oidc/start" not in html
    labelled(html)


def test_what_a_visitor_typed_comes_back_escaped() -> None:
    html = sign_in(email='"><script>alert(1)</script>', message="<b>x</b>", next='/portal?a="><x>')
    assert "<script>alert" not in html and "<b>x</b>" not in html and '"><x>' not in html


def test_single_sign_on_is_offered_when_configured() -> None:
    html = sign_in(oidc_label="Acme SSO", next="/portal/apps?x=1&y=2")
    assert "Sign in with Acme SSO" in html
    assert 'href="/portal/oidc/start?next=/portal/apps%3Fx%3D1%26y%3D2"' in html


def test_the_invitation_page_asks_for_the_password_twice() -> None:
    html = views.render(
        "invitation.html",
        form_csrf="f" * 64,
        invitation_token="t" * 43,
        email="ann@example.com",
        tenant="acme",
        invited_role="tenant_admin",
        message="",
        min_length=12,
        max_length=1024,
    )
    assert html.count("<h1>") == 1 and 'action="/portal/invitations/' + "t" * 43 + '"' in html
    assert html.count('autocomplete="new-password"') == 2 and 'minlength="12"' in html
    assert "ann@example.com" in html and "tenant admin" in html
    labelled(html)


def test_after_single_sign_on_the_page_moves_on_by_itself() -> None:
    html = views.render("signed_in.html", next="/portal/apps")
    assert '<meta http-equiv="refresh" content="0;url=/portal/apps">' in html and "<script" not in html


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        (None, "/portal"),
        ("/portal/apps", "/portal/apps"),
        ("/portal?q=x", "/portal?q=x"),
        ("/portal/docs/model/x?tab=1", "/portal/docs/model/x?tab=1"),
        ("https://evil.example/portal", "/portal"),
        ("//evil.example/portal", "/portal"),
        ("/portalx", "/portal"),
        ("/admin/v1/keys", "/portal"),
        ("/portal/\\evil", "/portal"),
        ("/portal/\r\nSet-Cookie: x", "/portal"),
        ("/portal/sign-in", "/portal"),
        ("/portal/oidc/start", "/portal"),
        ("/portal/" + "a" * 3000, "/portal"),
    ],
)
def test_a_sign_in_leads_only_to_a_page_of_the_portal(asked: str | None, goes: str) -> None:
    assert safe_next(asked) == goes
