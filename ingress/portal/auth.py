"""Who is asking, in the portal: sign-in (password or OIDC), sign-out,
accepting an invitation, and the session and CSRF checks every page uses.

A browser holds one cookie, ``sluice_portal`` (HttpOnly, SameSite=Strict,
Path=/portal, Secure over TLS). Before sign-in it is a random token that
only ties the sign-in and invitation forms to this browser (their CSRF value
is derived from it: another site can neither read nor set it); after
sign-in it is a session's token, new at every sign-in, with the session (and
its own CSRF token) kept in KV under the token's digest. Whatever the
browser held before is never the token signed in (session fixation), and a
session ends at once when its person is disabled or changes password (the
user's epoch, checked on every request against the users' mirror).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect

from ingress.portal import views
from ingress.portal.login_guard import LoginGuard, LoginLocked
from ingress.portal.people_store import PeopleStore
from schemas.errors import AuthenticationFailed, GatewayError, PermissionDenied, RecordNotFound
from schemas.people import PortalSession, User
from services import control
from services.people import accounts, oidc, passwords, tokens
from services.people.accounts import Manager

log = logging.getLogger("sluice.portal")
PREFIX = views.PREFIX
COOKIE = "sluice_portal"
# The OIDC flow's secrets between its two legs. SameSite=Lax: the callback
# is a navigation from the identity provider's site, which a Strict cookie
# would not come back on.
OIDC_COOKIE = "sluice_portal_oidc"
OIDC_PATH = f"{PREFIX}/oidc"
OIDC_FLOW_S = 600
# Anything longer in a sign-in form is not an address, password or token.
MAX_FIELD = 2048
_PERSON = "sluice.portal.person"


class NotSignedIn(AuthenticationFailed):
    """No valid session: the app answers a page with the sign-in page, the API with 401."""

    code = "not_signed_in"


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person and their session."""

    user: User
    session: PortalSession

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def csrf(self) -> str:
        return self.session.csrf

    @property
    def manager(self) -> Manager:
        """As the people rules take a manager (``services.people.accounts``)."""
        return Manager(id=f"user:{self.user.id}", role=self.user.role, tenant_id=self.user.tenant_id)

    @property
    def actor(self) -> control.Actor:
        """As the admin API's rules take an admin (``services.control``); a
        developer is a caller there, who manages nothing."""
        role = "caller" if self.user.role == "developer" else self.user.role
        return control.Actor(key_id=f"user:{self.user.id}", role=role, tenant_id=self.user.tenant_id)  # type: ignore[arg-type]


def people(request: Request) -> PeopleStore:
    return request.app.state.gateway.people


def _now_ms() -> int:
    return int(time.time() * 1000)


async def person_of(request: Request) -> Person:
    """The person behind the request's session cookie; ``NotSignedIn`` when
    there is none, it expired, or its person was disabled or changed password."""
    known = request.scope.get(_PERSON)  # type: ignore[call-overload]
    if known is not None:
        return known
    token = request.cookies.get(COOKIE, "")
    if not tokens.plausible(token):
        raise NotSignedIn("Sign in to the portal first.")
    store = people(request)
    session = await store.session(token)
    if session is None:
        raise NotSignedIn("Sign in to the portal first.")
    user = store.user(session.user_id)
    if not accounts.session_valid(session, user, _now_ms()):
        await store.end_session(token)
        raise NotSignedIn("Your session ended; sign in again.")
    assert user is not None
    person = Person(user=user, session=session)
    request.scope[_PERSON] = person  # type: ignore[literal-required]
    return person


def check_csrf(request: Request, person: Person, token: str) -> None:
    """Every POST form carries the session's CSRF token (a hidden ``csrf`` field)."""
    if not tokens.same(person.csrf, token or ""):
        raise PermissionDenied("The form's security token is missing or wrong; reload the page.", code="csrf_failed")


# --- helpers ---------------------------------------------------------------


def _tls(request: Request) -> bool:
    # uvicorn rewrites the scheme from X-Forwarded-Proto for the proxies it
    # trusts (FORWARDED_ALLOW_IPS; loopback by default).
    return request.scope.get("scheme") == "https"


def _cookie(request: Request, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_tls(request),
        max_age=max_age,
    )


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path of the portal, nothing else (no
    other site, no scheme-relative ``//host``, no control characters)."""
    if not value or len(value) > MAX_FIELD or any(ord(c) < 0x20 or c == "\\" for c in value):
        return PREFIX
    if value != PREFIX and not value.startswith(PREFIX + "/") and not value.startswith(PREFIX + "?"):
        return PREFIX
    if value.startswith(f"{PREFIX}/sign-") or value.startswith(OIDC_PATH):
        return PREFIX
    return value


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _pre_token(request: Request) -> tuple[str, bool]:
    """The browser's cookie token, or a new one (and whether it is new)."""
    token = request.cookies.get(COOKIE, "")
    return (token, False) if tokens.plausible(token) else (tokens.new_token(), True)


def _check_form_csrf(request: Request, given: str) -> str:
    """The cookie token behind a pre-sign-in form, once the form proved it knows it."""
    token = request.cookies.get(COOKIE, "")
    if not tokens.plausible(token) or not tokens.same(tokens.form_csrf(token), given):
        raise PermissionDenied(
            "The form's security token is missing or wrong; reload the page (cookies must be on).", code="csrf_failed"
        )
    return token


def _oidc_label(store: PeopleStore) -> str:
    return store.config.oidc.label if store.config.oidc is not None else ""


def _sign_in_page(
    request: Request,
    token: str,
    new: bool,
    *,
    status: int = 200,
    message: str = "",
    notice: str = "",
    email: str = "",
    next_path: str = PREFIX,
    headers: dict[str, str] | None = None,
) -> Response:
    resp = views.page(
        request,
        "sign_in.html",
        None,
        status=status,
        form_csrf=tokens.form_csrf(token),
        message=message,
        notice=notice,
        email=email,
        next=next_path,
        oidc_label=_oidc_label(people(request)),
    )
    if new:
        resp.cookies.append(_cookie(request, token, int(people(request).session_ms / 1000)))
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def _signed_in(request: Request, token: str, to: str) -> Response:
    return Redirect(path=to, status_code=303, cookies=[_cookie(request, token, int(people(request).session_ms / 1000))])


def guard(request: Request) -> LoginGuard:
    state = request.app.state
    found = getattr(state, "login_guard", None)
    if found is None:
        gw = state.gateway
        found = state.login_guard = LoginGuard(gw.counters, gw.nc.jetstream(), gw.people.config)
    return found


# --- sign-in and sign-out --------------------------------------------------


@get("/sign-in", include_in_schema=False)
async def sign_in_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    try:
        await person_of(request)
        return Redirect(path=next_path, status_code=303)
    except NotSignedIn:
        pass
    token, new = _pre_token(request)
    notice = "Your password is set: sign in." if request.query_params.get("accepted") else ""
    return _sign_in_page(request, token, new, notice=notice, next_path=next_path)


@post("/sign-in", include_in_schema=False, status_code=200)
async def sign_in(request: Request) -> Response:
    form = await request.form()
    old = _check_form_csrf(request, _field(form, "csrf"))
    next_path = safe_next(_field(form, "next"))
    typed, password = _field(form, "email").strip(), _field(form, "password")
    store = people(request)
    address = _client(request)
    try:
        email = accounts.normal_email(typed)
    except GatewayError:
        return _sign_in_page(request, old, False, status=400, message="Enter your e-mail address.", email=typed)
    user = store.by_email(email)
    # What an anonymous attempt leaves in the audit trail.
    anonymous = {"email": email, "client": address}
    user_id, tenant = (user.id, user.tenant_id) if user is not None else ("", "")
    try:
        attempt = await guard(request).attempt(email, address)
    except LoginLocked as exc:
        store.audit("anonymous", "sign_in_locked", user_id, tenant, detail=anonymous)
        wait = {"retry-after": str(int(exc.retry_after_s or 60))}
        return _sign_in_page(request, old, False, status=429, message=exc.message, email=email, headers=wait)
    if not await store.check_password(user, password):
        store.audit("anonymous", "sign_in_failed", user_id, tenant, detail=anonymous)
        if attempt.locks_now():
            store.audit("anonymous", "locked_out", user_id, tenant, detail=anonymous)
        wrong = "Wrong e-mail address or password."
        return _sign_in_page(request, old, False, status=401, message=wrong, email=email, next_path=next_path)
    assert user is not None
    guard(request).give_back(attempt)
    if user.disabled:
        store.audit(f"user:{user.id}", "sign_in_refused", user.id, user.tenant_id, detail={"reason": "disabled"})
        return _sign_in_page(request, old, False, status=403, message="This account is disabled.", email=email)
    token, _ = await store.open_session(user, "password", replaces=old)
    store.audit(f"user:{user.id}", "sign_in", user.id, user.tenant_id, detail={"via": "password", "client": address})
    if passwords.needs_rehash(user.password_hash):
        await _rehash(store, user, password)
    return _signed_in(request, token, next_path)


async def _rehash(store: PeopleStore, user: User, password: str) -> None:
    """A stronger hash of the password just proved; the same password, so no
    session ends. A race with another change is left for the next sign-in."""
    before, revision = await store.read_user(user.id)
    if before is None or before.password_hash != user.password_hash:
        return
    after = msgspec.structs.replace(before, password_hash=await store.hash_password(password))
    with contextlib.suppress(GatewayError):
        await store.write_user(after, revision, f"user:{user.id}", "rehash_password", before)


@post("/sign-out", include_in_schema=False, status_code=303)
async def sign_out(request: Request) -> Response:
    person = await person_of(request)
    form = await request.form()
    check_csrf(request, person, _field(form, "csrf"))
    await people(request).end_session(request.cookies.get(COOKIE, ""))
    people(request).audit(f"user:{person.id}", "sign_out", person.id, person.tenant_id)
    return Redirect(path=f"{PREFIX}/sign-in", status_code=303, cookies=[_cookie(request, "", 0)])


# --- invitations -------------------------------------------------------------


def _invitation_gone(request: Request) -> Response:
    return views.page(
        request,
        "error.html",
        None,
        status=404,
        title="Invitation not valid",
        status_code=404,
        message="This invitation link is not valid: it was used, it expired, or it never was. Ask your admin for "
        "a new one.",
    )


def _invitation_page(
    request: Request, token: str, cookie: str, new: bool, user: User, *, status: int = 200, message: str = ""
) -> Response:
    resp = views.page(
        request,
        "invitation.html",
        None,
        status=status,
        form_csrf=tokens.form_csrf(cookie),
        invitation_token=token,
        email=user.email,
        tenant=user.tenant_id,
        invited_role=user.role,
        message=message,
        min_length=passwords.MIN_LENGTH,
        max_length=passwords.MAX_LENGTH,
    )
    resp.headers["referrer-policy"] = "no-referrer"  # the link is a secret; no page it leads to learns it
    if new:
        resp.cookies.append(_cookie(request, cookie, int(people(request).session_ms / 1000)))
    return resp


@get("/invitations/{token:str}", include_in_schema=False)
async def invitation_page(request: Request, token: str) -> Response:
    if not tokens.plausible(token):
        return _invitation_gone(request)
    _, user, _ = await people(request).invitation(token)
    if user is None:
        return _invitation_gone(request)
    cookie, new = _pre_token(request)
    return _invitation_page(request, token, cookie, new, user)


@post("/invitations/{token:str}", include_in_schema=False, status_code=303)
async def accept_invitation(request: Request, token: str) -> Response:
    form = await request.form()
    cookie = _check_form_csrf(request, _field(form, "csrf"))
    if not tokens.plausible(token):
        return _invitation_gone(request)
    store = people(request)
    _, user, _ = await store.invitation(token)
    if user is None:
        return _invitation_gone(request)
    password, again = _field(form, "password"), _field(form, "confirm")
    if password != again:
        return _invitation_page(request, token, cookie, False, user, status=400, message="The passwords differ.")
    try:
        await store.accept(token, password)
    except RecordNotFound:
        return _invitation_gone(request)
    except GatewayError as exc:
        return _invitation_page(request, token, cookie, False, user, status=exc.status, message=exc.message)
    return Redirect(path=f"{PREFIX}/sign-in?accepted=1", status_code=303)


# --- OIDC ------------------------------------------------------------------


def _oidc_client(request: Request) -> oidc.OidcClient:
    state = request.app.state
    client = getattr(state, "oidc_client", None)
    config = people(request).config.oidc
    if config is None:
        raise RecordNotFound("Single sign-on is not configured.")
    if client is None:
        secret = os.environ.get(config.client_secret_env, "") if config.client_secret_env else ""
        client = state.oidc_client = oidc.OidcClient(config, secret, httpx.AsyncClient(follow_redirects=False))
    return client


def _redirect_uri(request: Request) -> str:
    base = people(request).config.base_url or _base_url(request)
    return f"{base.rstrip('/')}{OIDC_PATH}/callback"


@get("/oidc/start", include_in_schema=False)
async def oidc_start(request: Request) -> Response:
    client = _oidc_client(request)
    flow = oidc.new_flow(safe_next(request.query_params.get("next")))
    url = await client.authorization_url(flow, _redirect_uri(request))
    cookie = Cookie(
        key=OIDC_COOKIE,
        value=flow.dump(),
        path=OIDC_PATH,
        httponly=True,
        samesite="lax",
        secure=_tls(request),
        max_age=OIDC_FLOW_S,
    )
    return Redirect(path=url, status_code=303, cookies=[cookie])


def _oidc_refused(request: Request, message: str, status: int = 403) -> Response:
    resp = views.page(
        request, "error.html", None, status=status, title="Sign-in refused", status_code=status, message=message
    )
    resp.cookies.append(Cookie(key=OIDC_COOKIE, value="", path=OIDC_PATH, httponly=True, samesite="lax", max_age=0))
    return resp


@get("/oidc/callback", include_in_schema=False)
async def oidc_callback(request: Request) -> Response:
    client = _oidc_client(request)
    flow = oidc.Flow.load(request.cookies.get(OIDC_COOKIE, ""))
    state, code = request.query_params.get("state", ""), request.query_params.get("code", "")
    if flow is None or not tokens.same(flow.state, state):
        return _oidc_refused(request, "This sign-in was not started here, or took too long: start again.", 400)
    if request.query_params.get("error") or not code or len(code) > MAX_FIELD:
        return _oidc_refused(request, "The identity provider did not sign you in.", 401)
    store = people(request)
    try:
        claims = await client.verify(await client.exchange(code, flow, _redirect_uri(request)), flow)
        identity = oidc.identity_of(claims, client.config)
        user = await _oidc_user(store, identity)
    except oidc.OidcFailed as exc:
        log.warning("OIDC sign-in failed: %s", exc.message)
        store.audit("anonymous", "sign_in_failed", "", "", detail={"via": "oidc", "client": _client(request)})
        return _oidc_refused(request, "The identity provider's answer could not be used: start again.", 400)
    except GatewayError as exc:
        store.audit("anonymous", "sign_in_refused", "", "", detail={"via": "oidc", "reason": exc.code})
        return _oidc_refused(request, exc.message, exc.status)
    token, _ = await store.open_session(user, "oidc", replaces=request.cookies.get(COOKIE, ""))
    store.audit(
        f"user:{user.id}", "sign_in", user.id, user.tenant_id, detail={"via": "oidc", "client": _client(request)}
    )
    # A page, not a redirect: the browser came from the identity provider's
    # site, and a SameSite=Strict cookie is not sent on a navigation that
    # started there; this page's own navigation starts here.
    resp = views.page(request, "signed_in.html", None, next=flow.next)
    resp.cookies.append(_cookie(request, token, int(store.session_ms / 1000)))
    resp.cookies.append(Cookie(key=OIDC_COOKIE, value="", path=OIDC_PATH, httponly=True, samesite="lax", max_age=0))
    return resp


async def _oidc_user(store: PeopleStore, identity: oidc.Identity) -> User:
    """The account of the person the identity provider signed in: made on
    their first sign-in, their role kept as the provider says. An account of
    another tenant, or linked to another identity, is not theirs."""
    if identity.tenant_id and not store.tenant_exists(identity.tenant_id):
        raise PermissionDenied(f"No tenant {identity.tenant_id!r} here for this person.", code="oidc_unknown_tenant")
    user_id = accounts.user_id_for(identity.email)
    before, revision = await store.read_user(user_id)
    if before is None:
        user = accounts.new_user(identity.email, identity.tenant_id, identity.role, "oidc", _now_ms(), identity.name)
        user = msgspec.structs.replace(user, oidc_subject=identity.subject)
        await store.write_user(user, 0, "oidc", "create", None)
        return user
    if before.disabled:
        raise PermissionDenied("This account is disabled.", code="user_disabled")
    if before.oidc_subject and before.oidc_subject != identity.subject:
        raise PermissionDenied("This account is linked to another identity.", code="oidc_subject_mismatch")
    if before.tenant_id != identity.tenant_id:
        raise PermissionDenied("This account belongs to another tenant; ask an admin.", code="oidc_tenant_mismatch")
    after = msgspec.structs.replace(before, oidc_subject=identity.subject, role=identity.role)
    if after != before:
        await store.write_user(after, revision, f"user:{before.id}", "oidc_link", before)
    return after


ROUTES: list[Any] = [
    sign_in_page,
    sign_in,
    sign_out,
    invitation_page,
    accept_invitation,
    oidc_start,
    oidc_callback,
]
