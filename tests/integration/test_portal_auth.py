"""The portal's people on a whole stack: invitations (admin API and CLI),
setting a password, signing in and out, the session cookie's flags, CSRF,
session fixation, the login limiter, a disabled person's session ending at
once, OIDC sign-in against a tiny issuer on loopback, and the admin API's
tenant isolation; all of it audited."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from http.cookiejar import DefaultCookiePolicy
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.cli import cli
from services.people import accounts, tokens
from tests import oidc_issuer
from tests.stack import ADMIN_KEY, Stack

pytestmark = pytest.mark.timeout(90)
PASSWORD = "a long enough password"
SECRET_ENV = "SLUICE_TEST_OIDC_SECRET"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def issuer() -> Iterator[oidc_issuer.Issuer]:
    issuer = oidc_issuer.Issuer()
    server = oidc_issuer.serve(issuer)
    yield issuer
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, issuer: oidc_issuer.Issuer) -> Iterator[Stack]:
    extra = f"""
[portal]
login_failures = 5
login_failures_per_address = 40

[portal.oidc]
issuer = "{issuer.url}"
client_id = "{oidc_issuer.CLIENT_ID}"
client_secret_env = "{SECRET_ENV}"
label = "Test SSO"
"""
    os.environ[SECRET_ENV] = oidc_issuer.CLIENT_SECRET  # the ingress inherits it
    s = Stack(tmp_path_factory.mktemp("portal-auth"), extra_config=extra).start()
    yield s
    s.stop()
    os.environ.pop(SECRET_ENV, None)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    base = stack.base_url.removesuffix("/v1")
    with httpx.Client(base_url=base, timeout=15, follow_redirects=False) as client:
        # A jar that keeps nothing: each request says which cookie it carries.
        client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        yield client


def carrying(value: str, name: str = "sluice_portal") -> dict[str, str]:
    """The Cookie header of a browser holding ``value`` (the client keeps no cookies of its own)."""
    return {"cookie": f"{name}={value}"}


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def set_cookie(resp: httpx.Response, name: str = "sluice_portal") -> tuple[str, str]:
    """(its value, the whole Set-Cookie header) of the cookie the answer sets."""
    for header in resp.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return SimpleCookie(header)[name].value, header
    raise AssertionError(f"no {name} cookie in {resp.headers.get_list('set-cookie')}")


def invite(http: httpx.Client, email: str, tenant: str = "demo", role: str = "developer") -> str:
    resp = http.post("/admin/v1/users", json={"email": email, "tenant": tenant, "role": role}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return resp.json()["link"]


def accept(http: httpx.Client, link: str, password: str = PASSWORD) -> None:
    path = urlsplit(link).path
    page = http.get(path)
    assert page.status_code == 200, page.text
    pre, _ = set_cookie(page)
    resp = http.post(
        path,
        data={"csrf": csrf_of(page.text), "password": password, "confirm": password},
        headers=carrying(pre),
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/sign-in?accepted=1", resp.text


def sign_in(
    http: httpx.Client, email: str, password: str = PASSWORD, cookie: str | None = None, **headers: str
) -> httpx.Response:
    """A sign-in as a browser does it: the form's page first (its cookie and CSRF value), then the post."""
    page = http.get("/portal/sign-in", headers=carrying(cookie) if cookie else None)
    pre = cookie or set_cookie(page)[0]
    form = {"csrf": csrf_of(page.text), "email": email, "password": password, "next": "/portal/apps"}
    return http.post("/portal/sign-in", data=form, headers={**carrying(pre), **headers})


def session_of(http: httpx.Client, email: str) -> str:
    resp = sign_in(http, email)
    assert resp.status_code == 303, resp.text
    return set_cookie(resp)[0]


def signed_in(http: httpx.Client, session: str) -> bool:
    resp = http.get("/portal", headers=carrying(session))
    assert resp.status_code in (200, 303), resp.text
    return resp.status_code == 200


@pytest.fixture(scope="module")
def developer(http: httpx.Client) -> str:
    email = "dev@demo.test"
    accept(http, invite(http, email))
    return email


def test_an_invitation_sets_a_password_once(http: httpx.Client) -> None:
    link = invite(http, "once@demo.test")
    assert link.startswith("http://127.0.0.1:") and "/portal/invitations/" in link
    path = urlsplit(link).path
    page = http.get(path)
    assert page.status_code == 200 and "once@demo.test" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    pre, _ = set_cookie(page)
    token = csrf_of(page.text)
    for fields, status in (
        ({"password": PASSWORD, "confirm": PASSWORD + "x"}, 400),
        ({"password": "short", "confirm": "short"}, 400),
        ({"password": PASSWORD, "confirm": PASSWORD, "csrf": "wrong"}, 403),
    ):
        resp = http.post(path, data={"csrf": token, **fields}, headers=carrying(pre))
        assert resp.status_code == status, (fields, resp.text)
    accept_form = {"csrf": token, "password": PASSWORD, "confirm": PASSWORD}
    assert http.post(path, data=accept_form, headers=carrying(pre)).status_code == 303
    # Used: the link is gone, for showing and for setting.
    assert http.get(path).status_code == 404
    assert http.post(path, data=accept_form, headers=carrying(pre)).status_code == 404
    assert http.get("/portal/invitations/not-a-token").status_code == 404


def test_the_cli_invites_and_prints_the_link(
    stack: Stack, http: httpx.Client, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_ADMIN_KEY", ADMIN_KEY)
    url = stack.base_url.removesuffix("/v1")
    invite_args = ["invite", "lead@demo.test", "--tenant", "demo", "--role", "tenant-admin", "--json", "--url", url]
    assert cli.main(["users", *invite_args]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["user"]["role"] == "tenant_admin" and answer["user"]["state"] == "invited"
    accept(http, answer["link"])
    assert cli.main(["users", "list", "--tenant", "demo", "--url", url]) == 0
    listed = capsys.readouterr().out
    assert "lead@demo.test" in listed and "active" in listed
    assert cli.main(["users", "link", "lead@demo.test", "--url", url]) == 0
    assert "/portal/invitations/" in capsys.readouterr().out  # a password reset, as they signed up
    assert cli.main(["users", "disable", "lead@demo.test", "--url", url]) == 0
    assert "lead@demo.test is disabled" in capsys.readouterr().out


def test_signing_in_sets_a_new_strict_session_cookie(http: httpx.Client, developer: str) -> None:
    page = http.get("/portal/sign-in")
    before, _ = set_cookie(page)
    resp = sign_in(http, developer, cookie=before)
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/apps"
    after, header = set_cookie(resp)
    assert after != before
    flags = [part.strip().lower() for part in header.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/portal" in flags
    assert "secure" not in flags  # plain HTTP on loopback
    assert signed_in(http, after) and not signed_in(http, before)


def test_over_tls_the_cookie_is_secure(http: httpx.Client, developer: str) -> None:
    # uvicorn takes X-Forwarded-Proto from a proxy it trusts (loopback by default).
    resp = sign_in(http, developer, **{"x-forwarded-proto": "https"})
    assert resp.status_code == 303
    assert "secure" in [p.strip().lower() for p in set_cookie(resp)[1].split(";")]


def test_a_cookie_planted_before_sign_in_is_never_the_session(http: httpx.Client, developer: str) -> None:
    planted = session_of(http, developer)  # a real session, say an attacker's own, set in the victim's browser
    form = {"csrf": tokens.form_csrf(planted), "email": developer, "password": PASSWORD}
    resp = http.post("/portal/sign-in", data=form, headers=carrying(planted))
    assert resp.status_code == 303
    fresh = set_cookie(resp)[0]
    assert fresh != planted
    assert signed_in(http, fresh) and not signed_in(http, planted)


def test_forms_without_the_right_csrf_value_are_refused(http: httpx.Client, developer: str) -> None:
    page = http.get("/portal/sign-in")
    pre, _ = set_cookie(page)
    form = {"email": developer, "password": PASSWORD}
    assert http.post("/portal/sign-in", data=form, headers=carrying(pre)).status_code == 403
    bad = {**form, "csrf": "x" * 64}
    assert http.post("/portal/sign-in", data=bad, headers=carrying(pre)).status_code == 403
    # The right value with another browser's cookie is as wrong.
    other = set_cookie(http.get("/portal/sign-in"))[0]
    good = {**form, "csrf": csrf_of(page.text)}
    assert http.post("/portal/sign-in", data=good, headers=carrying(other)).status_code == 403
    session = session_of(http, developer)
    home = http.get("/portal", headers=carrying(session))
    for token in ("", "wrong"):
        resp = http.post("/portal/sign-out", data={"csrf": token}, headers=carrying(session))
        assert resp.status_code == 403
    assert signed_in(http, session)
    resp = http.post("/portal/sign-out", data={"csrf": csrf_of(home.text)}, headers=carrying(session))
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/sign-in"
    assert not signed_in(http, session)


def test_brute_force_is_locked_out_even_with_the_right_password(http: httpx.Client, developer: str) -> None:
    email = "victim@demo.test"
    accept(http, invite(http, email))
    # Each client is its own address (the ingress trusts loopback's X-Forwarded-For, as from a proxy).
    attacker = {"x-forwarded-for": "203.0.113.66"}
    for _ in range(5):
        assert sign_in(http, email, "wrong password guess", **attacker).status_code == 401
    locked = sign_in(http, email, **attacker)  # the right password, but too late
    assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 900
    assert "Too many failed sign-ins" in locked.text
    # Another person at the attacker's address is not locked.
    assert sign_in(http, developer, **attacker).status_code == 303
    # An address no one has is limited the same (nothing tells it apart).
    for _ in range(5):
        assert sign_in(http, "nobody@demo.test", "whatever it is", **attacker).status_code == 401
    assert sign_in(http, "nobody@demo.test", "whatever it is", **attacker).status_code == 429


def test_a_strangers_wrong_passwords_do_not_lock_the_account_out(http: httpx.Client) -> None:
    email = "target@demo.test"
    accept(http, invite(http, email))
    stranger, owner = {"x-forwarded-for": "203.0.113.77"}, {"x-forwarded-for": "198.51.100.7"}
    for _ in range(5):
        assert sign_in(http, email, "wrong password guess", **stranger).status_code == 401
    assert sign_in(http, email, **stranger).status_code == 429
    # The owner, from their own address, signs in with the right password.
    assert sign_in(http, email, **owner).status_code == 303


def test_a_disabled_persons_session_ends_at_once(http: httpx.Client) -> None:
    email = "leaver@demo.test"
    accept(http, invite(http, email))
    session = session_of(http, email)
    assert signed_in(http, session)
    user_id = accounts.user_id_for(email)
    resp = http.post(f"/admin/v1/users/{user_id}/disable", headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["state"] == "disabled"
    assert http.get("/portal", headers=carrying(session)).headers["location"].startswith("/portal/sign-in")
    assert http.get("/portal/apps", headers=carrying(session)).status_code == 303
    assert sign_in(http, email).status_code == 403
    # Enabled again: the old session stays ended; a new sign-in works.
    assert http.post(f"/admin/v1/users/{user_id}/enable", headers=ADMIN).json()["state"] == "active"
    assert not signed_in(http, session)
    assert signed_in(http, session_of(http, email))


def test_a_password_reset_link_ends_sessions_once_used(http: httpx.Client) -> None:
    email = "forgetful@demo.test"
    accept(http, invite(http, email))
    session = session_of(http, email)
    user_id = accounts.user_id_for(email)
    reset = http.post(f"/admin/v1/users/{user_id}/invitation", headers=ADMIN)
    assert reset.status_code == 200 and reset.json()["user"]["state"] == "active"
    assert signed_in(http, session)  # a link alone changes nothing
    accept(http, reset.json()["link"], "a brand new passphrase")
    assert not signed_in(http, session)
    assert sign_in(http, email, PASSWORD).status_code == 401
    assert signed_in(http, set_cookie(sign_in(http, email, "a brand new passphrase"))[0])


def test_oidc_sign_in_against_the_issuer(http: httpx.Client, issuer: oidc_issuer.Issuer) -> None:
    issuer.person = {"sub": "idp-42", "email": "sso@demo.test", "email_verified": True, "tenant": "demo", "name": "S"}
    start = http.get("/portal/oidc/start", params={"next": "/portal/apps"})
    assert start.status_code == 303 and start.headers["location"].startswith(f"{issuer.url}/authorize?")
    flow, header = set_cookie(start, "sluice_portal_oidc")
    assert "samesite=lax" in header.lower() and "path=/portal/oidc" in header.lower()
    back = httpx.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302
    callback = urlsplit(back.headers["location"])
    assert callback.path == "/portal/oidc/callback"
    # A callback whose state is not the one started here is refused.
    query = parse_qs(callback.query)
    forged = {"code": query["code"][0], "state": "x" * 32}
    assert http.get(callback.path, params=forged, headers=carrying(flow, "sluice_portal_oidc")).status_code == 400
    done = http.get(f"{callback.path}?{callback.query}", headers=carrying(flow, "sluice_portal_oidc"))
    assert done.status_code == 200 and 'content="0;url=/portal/apps"' in done.text
    session, header = set_cookie(done)
    assert "samesite=strict" in header.lower()
    assert signed_in(http, session)
    user = http.get(f"/admin/v1/users/{accounts.user_id_for('sso@demo.test')}", headers=ADMIN).json()
    assert user["signs_in_with"] == ["oidc"] and user["tenant"] == "demo" and user["role"] == "developer"
    # The code was for one exchange only.
    again = http.get(f"{callback.path}?{callback.query}", headers=carrying(flow, "sluice_portal_oidc"))
    assert again.status_code == 400


def oidc_sign_in(http: httpx.Client, issuer: oidc_issuer.Issuer, person: dict[str, object]) -> httpx.Response:
    """The callback's answer to a whole OIDC sign-in as ``person``."""
    issuer.person = person
    start = http.get("/portal/oidc/start", params={"next": "/portal/apps"})
    assert start.status_code == 303, start.text
    flow, _ = set_cookie(start, "sluice_portal_oidc")
    back = httpx.get(start.headers["location"], follow_redirects=False)
    callback = urlsplit(back.headers["location"])
    return http.get(f"{callback.path}?{callback.query}", headers=carrying(flow, "sluice_portal_oidc"))


def test_oidc_links_an_account_only_by_a_verified_address(http: httpx.Client, issuer: oidc_issuer.Issuer) -> None:
    email = "invited-sso@demo.test"
    link = urlsplit(invite(http, email)).path
    assert http.get(link).status_code == 200
    unsaid = {"sub": "idp-7", "email": email, "tenant": "demo"}  # no email_verified claim
    refused = oidc_sign_in(http, issuer, unsaid)
    assert refused.status_code == 403 and "verified" in refused.text
    assert http.get(link).status_code == 200  # nothing changed
    done = oidc_sign_in(http, issuer, {**unsaid, "email_verified": True})
    assert done.status_code == 200 and signed_in(http, set_cookie(done)[0])
    # Linked: the invitation link that would set a password beside it is over.
    assert http.get(link).status_code == 404
    user = http.get(f"/admin/v1/users/{accounts.user_id_for(email)}", headers=ADMIN).json()
    assert user["state"] == "active" and user["signs_in_with"] == ["oidc"]


def test_a_tenant_admin_sees_only_its_tenants_people(http: httpx.Client, developer: str) -> None:
    made = http.post("/admin/v1/keys", json={"tenant": "careful", "role": "tenant_admin"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    theirs = {"authorization": f"Bearer {made.json()['secret']}"}
    demo_id = accounts.user_id_for(developer)
    assert http.get(f"/admin/v1/users/{demo_id}", headers=theirs).status_code == 404
    assert http.post(f"/admin/v1/users/{demo_id}/disable", headers=theirs).status_code == 404
    assert http.patch(f"/admin/v1/users/{demo_id}", json={"role": "tenant_admin"}, headers=theirs).status_code == 404
    assert http.get("/admin/v1/users", params={"tenant": "demo"}, headers=theirs).json() == []
    into_demo = {"email": "x@careful.test", "tenant": "demo", "role": "developer"}
    assert http.post("/admin/v1/users", json=into_demo, headers=theirs).status_code == 404
    gateway_admin = {"email": "g@careful.test", "role": "gateway_admin"}
    assert http.post("/admin/v1/users", json=gateway_admin, headers=theirs).status_code == 403
    mine = http.post("/admin/v1/users", json={"email": "c@careful.test"}, headers=theirs)
    assert mine.status_code == 201 and mine.json()["user"]["tenant"] == "careful"
    assert [u["email"] for u in http.get("/admin/v1/users", headers=theirs).json()] == ["c@careful.test"]


def test_everything_people_do_is_audited(stack: Stack, http: httpx.Client, developer: str) -> None:
    wanted = {"invite", "accept_invitation", "sign_in", "sign_in_failed", "locked_out", "sign_in_locked", "disable"}
    wanted |= {"enable", "password_reset", "sign_out"}
    deadline = time.monotonic() + 20
    while True:
        result = stack.query("audit", tenant_id="demo", minutes=60)
        actions = {row[2] for row in result["rows"] if row[3] == "user"}
        if wanted <= actions or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wanted <= actions, actions
    # No password hash ever reaches the trail.
    assert not any("argon2" in (row[6] + row[7]) for row in result["rows"])
