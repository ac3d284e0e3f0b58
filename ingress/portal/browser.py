"""What every sign-in page shares about the browser asking: its cookie
(the one the portal sets, and how), its address, whether it came over TLS,
and where a sign-in may lead it."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from ingress.portal import views
from ingress.portal.people_store import PeopleStore

PREFIX = views.PREFIX
COOKIE = "sluice_portal"
OIDC_PATH = f"{PREFIX}/oidc"
# Anything longer in a sign-in form is not an address, password or token.
MAX_FIELD = 2048


def people(request: Request) -> PeopleStore:
    return request.app.state.gateway.people


def now_ms() -> int:
    return int(time.time() * 1000)


def tls(request: Request) -> bool:
    # uvicorn rewrites the scheme from X-Forwarded-Proto for the proxies it
    # trusts (FORWARDED_ALLOW_IPS; loopback by default).
    return request.scope.get("scheme") == "https"


def portal_cookie(request: Request, value: str, max_age: int) -> Cookie:
    """The portal's one cookie: HttpOnly, SameSite=Strict, the portal's path, Secure over TLS."""
    return Cookie(
        key=COOKIE,
        value=value,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=tls(request),
        max_age=max_age,
    )


def session_cookie(request: Request, value: str) -> Cookie:
    return portal_cookie(request, value, int(people(request).session_ms / 1000))


def field(form: Any, name: str) -> str:
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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
