"""Who is asking, in the portal: sign-in with a password, sign-out,
accepting an invitation, and the session and CSRF checks every page uses
(OIDC's two pages are ``ingress.portal.sign_on``'s; ``ROUTES`` lists them too).

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
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from ingress.portal import sign_on, views
from ingress.portal.browser import (
    COOKIE,
    PREFIX,
    client_address,
    field,
    now_ms,
    people,
    portal_cookie,
    safe_next,
    session_cookie,
)
from ingress.portal.login_guard import LoginGuard, LoginLocked
from ingress.portal.people_store import PeopleStore
from schemas.errors import AuthenticationFailed, GatewayError, PermissionDenied, RecordNotFound
from schemas.people import PortalSession, User
from services import control
from services.people import accounts, passwords, tokens

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
    def actor(self) -> control.Actor:
        """As the admin API's and the people rules take an admin
        (``services.control``, ``services.people.accounts``); a developer is
        a caller there, who manages nothing."""
        role = "caller" if self.user.role == "developer" else self.user.role
        return control.Actor(key_id=f"user:{self.user.id}", role=role, tenant_id=self.user.tenant_id)  # type: ignore[arg-type]


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
    if user is not None and session.session_epoch > user.session_epoch:
        # A session newer than this replica's copy of its person (made by a
        # password change on another replica): the bucket has the person as they are.
        user, _ = await store.read_user(session.user_id)
    if not accounts.session_valid(session, user, now_ms()):
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
        resp.cookies.append(session_cookie(request, token))
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def _signed_in(request: Request, token: str, to: str) -> Response:
    return Redirect(path=to, status_code=303, cookies=[session_cookie(request, token)])


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
    old = _check_form_csrf(request, field(form, "csrf"))
    next_path = safe_next(field(form, "next"))
    typed, password = field(form, "email").strip(), field(form, "password")
    store = people(request)
    address = client_address(request)
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
    check_csrf(request, person, field(form, "csrf"))
    await people(request).end_session(request.cookies.get(COOKIE, ""))
    people(request).audit(f"user:{person.id}", "sign_out", person.id, person.tenant_id)
    return Redirect(path=f"{PREFIX}/sign-in", status_code=303, cookies=[portal_cookie(request, "", 0)])


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
        resp.cookies.append(session_cookie(request, cookie))
    return resp


@get("/invitations/{token:str}", include_in_schema=False)
async def invitation_page(request: Request, token: FromPath[str]) -> Response:
    if not tokens.plausible(token):
        return _invitation_gone(request)
    _, user, _ = await people(request).invitation(token)
    if user is None:
        return _invitation_gone(request)
    cookie, new = _pre_token(request)
    return _invitation_page(request, token, cookie, new, user)


@post("/invitations/{token:str}", include_in_schema=False, status_code=303)
async def accept_invitation(request: Request, token: FromPath[str]) -> Response:
    form = await request.form()
    cookie = _check_form_csrf(request, field(form, "csrf"))
    if not tokens.plausible(token):
        return _invitation_gone(request)
    store = people(request)
    _, user, _ = await store.invitation(token)
    if user is None:
        return _invitation_gone(request)
    password, again = field(form, "password"), field(form, "confirm")
    if password != again:
        return _invitation_page(request, token, cookie, False, user, status=400, message="The passwords differ.")
    try:
        await store.accept(token, password)
    except RecordNotFound:
        return _invitation_gone(request)
    except GatewayError as exc:
        return _invitation_page(request, token, cookie, False, user, status=exc.status, message=exc.message)
    return Redirect(path=f"{PREFIX}/sign-in?accepted=1", status_code=303)


ROUTES: list[Any] = [
    sign_in_page,
    sign_in,
    sign_out,
    invitation_page,
    accept_invitation,
    *sign_on.ROUTES,
]
