"""The portal's Litestar app, mounted by the ingress under ``/portal``.

Pages are rendered on the server (``ingress.portal.views``: Jinja, autoescape
on) and run only the portal's own scripts (a strict CSP, as the dashboard's).
Each part of the portal is a module listed in ``ROUTE_MODULES`` that exports

* ``ROUTES: list`` of Litestar route handlers, with paths under ``/portal``
  written without it (``@get("/apps")`` is ``/portal/apps``; a path already
  starting with ``/portal/`` is taken as it is);
* optionally ``NAV: list[views.NavItem]``, the layout's links it adds.

Who is asking is ``ingress.portal.auth.person_of(request)``; its
``NotSignedIn`` becomes a 303 to the sign-in page for a page and a 401 for
``/portal/api/...``. Errors are pages for pages and OpenAI-shaped JSON for
the API, and never say whether another tenant's thing exists (a 404).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from types import ModuleType
from typing import Any
from urllib.parse import quote

from litestar import Litestar, Request, Response, Router, get
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Redirect

from ingress import compression
from ingress.admin.store import ControlStore
from ingress.dashboard.plotly_bundle import plotly_js
from ingress.portal import views
from ingress.portal.views import PREFIX, STATIC, STATIC_NAME, STATIC_TYPES, NavItem
from schemas.errors import GatewayError
from services.apis.openai_shapes import error_body

log = logging.getLogger("sluice.portal")
API_PREFIX = PREFIX + "/api/"
# Every part of the portal (see the module's docstring). A module not there
# yet is skipped with a warning, so the parts can land one by one.
ROUTE_MODULES: tuple[str, ...] = (
    "ingress.portal.auth",
    "ingress.portal.catalog",
    "ingress.portal.docs",
    "ingress.portal.access",
    "ingress.portal.apps",
    "ingress.portal.usage",
    "ingress.portal.admin_views",
    "ingress.portal.admin_services",
    "ingress.portal.account",
)
# Forms are small; the largest thing a person sends is an OpenAPI document
# of a service an admin registers.
MAX_BODY = 2 * 1024 * 1024


@get("/static/{name:str}", include_in_schema=False)
async def static(request: Request, name: FromPath[str]) -> Response:
    if name == "plotly.min.js":
        raw, zipped = plotly_js()
        cached = {
            "cache-control": "public, max-age=86400",
            "x-content-type-options": "nosniff",
            "vary": "accept-encoding",
        }
        # One copy per coding in a shared cache; "gzip;q=0" is a no.
        if compression.accepts(request.headers.get("accept-encoding", ""), "gzip"):
            return Response(zipped, media_type="text/javascript", headers={**cached, "content-encoding": "gzip"})
        return Response(raw, media_type="text/javascript", headers=cached)
    match = STATIC_NAME.fullmatch(name)
    if match is None or not (STATIC / name).is_file():
        raise HTTPException(status_code=404, detail="No such file.")
    # The page links each file with its hash in the URL (views.static_url):
    # a browser may keep it, and asks again whenever the page names another.
    etag = f'"{views.static_hash(name)}"'
    headers = {"cache-control": "no-cache", "etag": etag, "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[match.group(1)], headers=headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


_TITLES = {400: "Bad request", 401: "Not signed in", 403: "Not allowed", 404: "Not found", 405: "Not allowed"}


def _error(request: Request, status: int, kind: str, code: str, message: str) -> Response:
    if _is_api(request):
        return Response(error_body(kind, code, message), status_code=status, headers={"cache-control": "no-store"})
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "Request refused")
    return views.page(request, "error.html", None, status=status, title=title, status_code=status, message=message)


def _gateway_error(request: Request, exc: GatewayError) -> Response:
    return _error(request, exc.status, exc.type.value, exc.code, exc.message)


def _http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status == 404:
        return _error(request, 404, "not_found_error", "unknown_url", "There is no such page.")
    if status == 405:
        return _error(
            request, 405, "invalid_request_error", "method_not_allowed", f"{request.method} is not allowed here."
        )
    if status == 413:
        return _error(request, 413, "invalid_request_error", "request_too_large", "The form is too large.")
    return _error(request, status, "invalid_request_error", "http_error", str(exc.detail))


def _not_signed_in(request: Request, _: Exception) -> Response:
    if _is_api(request):
        return _error(request, 401, "authentication_error", "not_signed_in", "Sign in to the portal first.")
    # Back to where the person was going once signed in (a path on this
    # site: the sign-in page checks it again before following it).
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(path=f"{PREFIX}/sign-in?next={quote(target, safe='')}", status_code=303)


def _crash(request: Request, exc: Exception) -> Response:
    log.exception("portal failed on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(request, 500, "server_error", "internal_error", "The portal failed on this request.")


def _modules(names: Iterable[str]) -> list[ModuleType]:
    found = []
    for name in names:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module is there but something it imports is not: a real error
                raise
            log.warning("portal: %s is not there yet; its pages are not served", name)
    return found


def build(gateway: Any, store: ControlStore, modules: Iterable[str] = ROUTE_MODULES) -> Litestar:
    plotly_js()  # fail at start, not on the first chart
    parts = _modules(modules)
    relative: list[Any] = [static]
    absolute: list[Any] = []
    nav: list[NavItem] = []
    for module in parts:
        for handler in getattr(module, "ROUTES", []):
            paths = getattr(handler, "paths", set())
            (absolute if any(p == PREFIX or p.startswith(PREFIX + "/") for p in paths) else relative).append(handler)
        nav.extend(getattr(module, "NAV", []))
    handlers: dict[Any, Any] = {
        GatewayError: _gateway_error,
        HTTPException: _http_error,
        404: _http_error,
        405: _http_error,
        Exception: _crash,
    }
    # The sign-in part's "who is this?" failure (``ingress.portal.auth.NotSignedIn``).
    for module in parts:
        if isinstance(not_signed_in := getattr(module, "NotSignedIn", None), type):
            handlers[not_signed_in] = _not_signed_in
    app = Litestar(
        route_handlers=[Router(path=PREFIX, route_handlers=relative), *absolute],
        exception_handlers=handlers,
        request_max_body_size=MAX_BODY,
        logging_config=None,
        openapi_config=None,
    )
    app.state.gateway = gateway
    app.state.store = store
    app.state.nav = tuple(nav)
    return app
