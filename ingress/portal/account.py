"""The signed-in person's own account, ``/portal/account``: who they are,
and a new password (the current one, then the new one twice).

Changing the password ends every other session of the person (the user's
epoch, as a password set from a reset link does) and keeps this browser
signed in with a new session: a new token in a new cookie. The current
password is checked under the sign-in's limiter (a stolen session cannot
guess it faster than a sign-in could), and every change or failure is
audited. A form that is wrong is shown again, saying why (the passwords
are typed again, never shown).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from ingress.portal import views
from ingress.portal.auth import NotSignedIn, Person, guard, person_of
from ingress.portal.browser import COOKIE, client_address, now_ms, people, session_cookie
from ingress.portal.forms import FormError, posted
from ingress.portal.login_guard import LoginLocked
from schemas.errors import GatewayError, InvalidRequest, RecordConflict
from services.people import accounts, passwords

ACCOUNT = f"{views.PREFIX}/account"
NAV = [views.NavItem("Account", ACCOUNT, order=90)]
_DONE = {"password": "Password changed: your other sessions have ended."}
_FORM = "password"


def _page(request: Request, person: Person, *, status: int = 200, **context: Any) -> Response:
    user = person.user
    ways = [
        w for w, yes in (("password", bool(user.password_hash)), ("single sign-on", bool(user.oidc_subject))) if yes
    ]
    return views.page(
        request,
        "account.html",
        person,
        status=status,
        ways=ways,
        has_password=bool(user.password_hash),
        min_length=passwords.MIN_LENGTH,
        max_length=passwords.MAX_LENGTH,
        done=_DONE.get(request.query_params.get("done", ""), ""),
        **context,
    )


@get("/account", include_in_schema=False)
async def account(request: Request) -> Response:
    return _page(request, await person_of(request))


def _refused(request: Request, person: Person, exc: GatewayError, field: str) -> Response:
    resp = _page(request, person, status=exc.status, form_error=FormError(_FORM, exc.message, field))
    if exc.retry_after_s:
        resp.headers["retry-after"] = str(int(exc.retry_after_s))
    return resp


@post("/account", include_in_schema=False, status_code=303)
async def change_password(request: Request) -> Response:
    person = await person_of(request)
    form = await posted(request, person)
    store = people(request)
    user, revision = await store.read_user(person.id)
    if user is None or not accounts.session_valid(person.session, user, now_ms()):
        raise NotSignedIn("Your session ended; sign in again.")
    actor = f"user:{user.id}"
    if not user.password_hash:
        no_password = InvalidRequest("You sign in with single sign-on: there is no password to change.")
        return _refused(request, person, no_password, "current")
    try:
        attempt = await guard(request).attempt(user.email, client_address(request))
    except LoginLocked as exc:
        return _refused(request, person, exc, "current")
    if not await store.check_password(user, form.get("current", "")):
        store.audit(
            actor, "password_change_failed", user.id, user.tenant_id, detail={"client": client_address(request)}
        )
        if attempt.locks_now():
            store.audit(actor, "locked_out", user.id, user.tenant_id, detail={"client": client_address(request)})
        wrong = InvalidRequest("That is not your current password.")
        return _refused(request, person, wrong, "current")
    guard(request).give_back(attempt)
    new, again = form.get("password", ""), form.get("confirm", "")
    try:
        passwords.check_new(new)
    except GatewayError as exc:
        return _refused(request, person, exc, "password")
    if new != again:
        return _refused(request, person, InvalidRequest("The new passwords differ."), "confirm")
    after = accounts.with_password(user, await store.hash_password(new))
    try:
        await store.write_user(after, revision, actor, "change_password", user)
    except RecordConflict as exc:  # changed meanwhile (a role, a disable): nothing was changed
        return _refused(request, person, exc, "current")
    # Every session made before has the old epoch and ends; this browser gets a new one.
    token, _ = await store.open_session(after, person.session.via, replaces=request.cookies.get(COOKIE, ""))
    return Redirect(path=f"{ACCOUNT}?done=password", status_code=303, cookies=[session_cookie(request, token)])


ROUTES = [account, change_password]
