"""How a portal page is rendered: one Jinja environment (autoescape on), the
layout's context (the person, their CSRF token, the nav) and the headers
every page carries.

Rendering is a pure function of its data (``render``): a page's handler
gathers what it shows, then renders, so the catalog's render time can be
measured on fixtures without a gateway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from litestar import Request, Response

from services.portal_scope import Who

PREFIX = "/portal"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
# The page runs only its own scripts, and talks only to its own origin (the
# try-it form calls the gateway's APIs there); Plotly sets inline styles on
# what it draws.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
# What may be served from static/: a plain file name with a known type (no
# path, no "..": a name is caller input).
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*\.(css|js|svg|png)")
STATIC_TYPES = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml", "png": "image/png"}
ROLE_NAMES = {"developer": "developer", "tenant_admin": "tenant admin", "gateway_admin": "gateway admin"}


@dataclass(frozen=True, slots=True)
class NavItem:
    """A link in the layout's nav. A route module lists its own in a
    module-level ``NAV: list[NavItem]`` next to ``ROUTES``; ``roles`` empty:
    everyone signed in sees it."""

    label: str
    href: str
    roles: frozenset[str] = frozenset()
    order: int = 50


@cache
def static_hash(name: str) -> str:
    """The first 12 hex digits of a static file's SHA-256: its URL changes
    with its content, so a browser never runs an old script with a new page."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    if name == "plotly.min.js":
        return f"{PREFIX}/static/plotly.min.js"
    return f"{PREFIX}/static/{name}?v={static_hash(name)}"


@cache
def environment() -> jinja2.Environment:
    """The portal's one Jinja environment. Autoescape is on for every
    template: a REST service's OpenAPI document, a prompt's description or
    a person's name is hostile text."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(static_url=static_url, prefix=PREFIX, role_name=lambda role: ROLE_NAMES.get(role, role))
    env.filters.update(ms=milliseconds, percent=percent)
    return env


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def percent(value: float | None) -> str:
    if value is None:
        return "—"
    return "0 %" if value == 0 else f"{value * 100:.2g} %" if value < 0.1 else f"{value * 100:.0f} %"


def render(template: str, **context: Any) -> str:
    """A template rendered with the layout's defaults (no person) under ``context``."""
    # A form's error and the values it is shown again with (``forms.FormError``):
    # none unless a handler gives them.
    defaults = {"person": None, "csrf": "", "nav": [], "current": "", "form_error": None, "values": {}}
    return environment().get_template(template).render({**defaults, **context})


def nav_for(items: Iterable[NavItem], role: str, current: str) -> list[dict[str, Any]]:
    """The nav a person of ``role`` sees, the current page's link marked."""
    shown = sorted((item for item in items if not item.roles or role in item.roles), key=lambda i: (i.order, i.label))
    return [{"label": i.label, "href": i.href, "current": _is_current(i.href, current)} for i in shown]


def _is_current(href: str, current: str) -> bool:
    if href == PREFIX:  # the catalog: only itself, not every page under /portal
        return current in (PREFIX, PREFIX + "/")
    return current == href or current.startswith(href + "/")


def page(request: Request, template: str, person: Any = None, *, status: int = 200, **context: Any) -> Response:
    """A whole page for ``person`` (``ingress.portal.auth.Person``, or None
    before sign-in): the layout gets the person, their CSRF token for forms
    and the nav their role sees."""
    role = getattr(person, "role", "") if person is not None else ""
    nav = nav_for(request.app.state.nav, role, request.url.path) if person is not None else []
    html = render(
        template,
        person=person,
        csrf=getattr(person, "csrf", "") if person is not None else "",
        nav=nav,
        current=request.url.path,
        **context,
    )
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def signed_in(request: Request) -> Any:
    """The person asking (``ingress.portal.auth.person_of``: raises
    ``NotSignedIn``, which the app turns into the sign-in page)."""
    from ingress.portal.auth import person_of  # the sign-in part's; imported where used so either lands alone

    return await person_of(request)


def who_of(person: Any) -> Who:
    """The person as the portal's access rules take them."""
    return Who(user_id=person.user.id, role=person.role, tenant_id=person.tenant_id or "")
