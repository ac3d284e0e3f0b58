"""The dashboard's Litestar app, mounted by the ingress under ``/dashboard``.

People sign in with a form: the admin key goes into an HttpOnly,
SameSite=Strict cookie scoped to /dashboard, so the page's own requests carry
it and no script can read it. Tools and tests may instead send
``Authorization: Bearer <key>`` on every request. Either way the key must be
a gateway or tenant admin's, and a tenant admin's view is its tenant's only.

Charts are drawn by Plotly's basic bundle (``plotly_bundle``).
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Redirect

from ingress import compression
from ingress.admin.store import ControlStore
from ingress.dashboard import panels
from ingress.dashboard.plotly_bundle import plotly_js
from ingress.http import error_body
from schemas.errors import GatewayError, InvalidRequest
from services import control, policy

log = logging.getLogger("sluice.dashboard")
PREFIX = "/dashboard"
COOKIE = "sluice_dashboard"
SESSION_S = 12 * 3600
STATIC = Path(__file__).parent / "static"
_OWN_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The page runs only its own scripts; Plotly sets inline styles on what it draws.
_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
_PAGE_HEADERS = {"content-security-policy": _CSP, "cache-control": "no-store", "x-frame-options": "DENY"}


def _key_header(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None and (key := request.cookies.get(COOKIE)):
        header = f"Bearer {key}"
    return header


def actor_of(request: Request, header: str | None = None) -> control.Actor:
    """The admin behind the request (header or cookie); raises 401/403 as the admin API does."""
    gateway = request.app.state.gateway
    now = int(time.time() * 1000)
    return control.actor_of(policy.authenticate(header or _key_header(request), gateway.keys.by_hash, now))


def _page(name: str, **values: str) -> str:
    text = (STATIC / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text


def _sign_in(message: str = "", status: int = 200) -> Response:
    return Response(
        _page("sign_in.html", message=message), status_code=status, media_type="text/html", headers=_PAGE_HEADERS
    )


@get("/", include_in_schema=False)
async def dashboard(request: Request) -> Response:
    if _key_header(request) is None:
        return _sign_in()
    try:
        actor = actor_of(request)
    except GatewayError as exc:
        return _sign_in(exc.message, exc.status)
    who = "gateway admin" if actor.is_gateway_admin else f"tenant admin of {actor.tenant_id}"
    page = _page("page.html", who=f"{actor.key_id} ({who})")
    return Response(page, media_type="text/html", headers=_PAGE_HEADERS)


@post("/sign-in", include_in_schema=False, status_code=303)
async def sign_in(request: Request) -> Response:
    form = await request.form()
    key = str(form.get("key") or "").strip()
    if not key:
        return _sign_in("Enter an admin key.", 400)
    try:
        actor_of(request, f"Bearer {key}")
    except GatewayError as exc:
        return _sign_in(exc.message, exc.status)
    cookie = Cookie(
        key=COOKIE, value=key, path=PREFIX, httponly=True, samesite="strict", max_age=SESSION_S, secure=False
    )
    return Redirect(path=f"{PREFIX}/", status_code=303, cookies=[cookie])


@post("/sign-out", include_in_schema=False, status_code=303)
async def sign_out() -> Response:
    return Redirect(
        path=f"{PREFIX}/",
        status_code=303,
        cookies=[Cookie(key=COOKIE, value="", path=PREFIX, httponly=True, samesite="strict", max_age=0)],
    )


@get("/static/{name:str}", include_in_schema=False)
async def static(request: Request, name: FromPath[str]) -> Response:
    cached = {"cache-control": "public, max-age=86400", "vary": "accept-encoding"}
    if name == "plotly.min.js":
        raw, zipped = plotly_js()
        # One copy per coding in a shared cache; "gzip;q=0" is a no.
        if compression.accepts(request.headers.get("accept-encoding", ""), "gzip"):
            return Response(zipped, media_type="text/javascript", headers={**cached, "content-encoding": "gzip"})
        return Response(raw, media_type="text/javascript", headers=cached)
    media = _OWN_FILES.get(name)
    if media is None:
        raise HTTPException(status_code=404, detail=f"No file {name!r}.")
    return Response((STATIC / name).read_bytes(), media_type=media, headers={"cache-control": "no-cache"})


def _window(value: str | None, default: int, most: int, name: str) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise InvalidRequest(f"{name} must be a whole number from 1 to {most}.", code="invalid_window")
    return int(value)


@get("/api/panels", include_in_schema=False)
async def panel_data(request: Request) -> dict[str, Any]:
    actor = actor_of(request)
    minutes = _window(request.query_params.get("minutes"), 60, 1440, "minutes")
    hours = _window(request.query_params.get("hours"), 24, 24 * 90, "hours")
    return await panels.gather(request.app.state.store, actor, minutes, hours)


@get("/api/requests/{request_id:str}", include_in_schema=False)
async def request_data(request: Request, request_id: str) -> dict[str, Any]:
    actor = actor_of(request)
    if not 1 <= len(request_id) <= 128:
        raise InvalidRequest("A request id is 1 to 128 characters.", code="invalid_request_id")
    return await panels.request_view(request.app.state.store, actor, request_id)


def _gateway_error(_: Request, exc: GatewayError) -> Response:
    return Response(error_body(exc.type.value, exc.code, exc.message), status_code=exc.status)


def _http_error(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    kind, code = ("not_found_error", "unknown_url") if status == 404 else ("invalid_request_error", "http_error")
    return Response(error_body(kind, code, str(exc.detail)), status_code=status)


def _crash(request: Request, exc: Exception) -> Response:
    log.exception("dashboard failed on %s %s", request.method, request.url.path, exc_info=exc)
    failed = error_body("server_error", "internal_error", "The dashboard failed on this request.")
    return Response(failed, status_code=500)


def build(gateway: Any, store: ControlStore) -> Litestar:
    plotly_js()  # fail at start, not on the first page view
    router = Router(path=PREFIX, route_handlers=[dashboard, sign_in, sign_out, static, panel_data, request_data])
    app = Litestar(
        route_handlers=[router],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            404: _http_error,
            405: _http_error,
            Exception: _crash,
        },
        request_max_body_size=16 * 1024,
        logging_config=None,
        openapi_config=None,
    )
    app.state.gateway = gateway
    app.state.store = store
    return app
