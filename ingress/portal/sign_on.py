"""OIDC sign-in pages: ``/portal/oidc/start`` sends the browser to the
identity provider with a PKCE challenge, ``/portal/oidc/callback`` takes the
code back, and signs the person in (their account made on first sign-in,
their role as the provider's claim says, an address it has not verified
neither making nor linking one; ``services.people.oidc``)."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
from litestar import Request, Response, get
from litestar.datastructures import Cookie
from litestar.response import Redirect

from ingress.portal import views
from ingress.portal.browser import (
    COOKIE,
    MAX_FIELD,
    OIDC_PATH,
    base_url,
    client_address,
    now_ms,
    people,
    safe_next,
    session_cookie,
    tls,
)
from ingress.portal.people_store import PeopleStore
from schemas.errors import GatewayError, PermissionDenied, RecordNotFound
from schemas.people import User
from services.people import accounts, oidc, tokens
from services.people.settings import OidcConfig

log = logging.getLogger("sluice.portal")
# The OIDC flow's secrets between its two legs. SameSite=Lax: the callback
# is a navigation from the identity provider's site, which a Strict cookie
# would not come back on.
OIDC_COOKIE = "sluice_portal_oidc"
OIDC_FLOW_S = 600


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
    base = people(request).config.base_url or base_url(request)
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
        secure=tls(request),
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
        user = await _oidc_user(store, identity, client.config)
    except oidc.OidcFailed as exc:
        log.warning("OIDC sign-in failed: %s", exc.message)
        store.audit("anonymous", "sign_in_failed", "", "", detail={"via": "oidc", "client": client_address(request)})
        return _oidc_refused(request, "The identity provider's answer could not be used: start again.", 400)
    except GatewayError as exc:
        store.audit("anonymous", "sign_in_refused", "", "", detail={"via": "oidc", "reason": exc.code})
        return _oidc_refused(request, exc.message, exc.status)
    token, _ = await store.open_session(user, "oidc", replaces=request.cookies.get(COOKIE, ""))
    store.audit(
        f"user:{user.id}", "sign_in", user.id, user.tenant_id, detail={"via": "oidc", "client": client_address(request)}
    )
    # A page, not a redirect: the browser came from the identity provider's
    # site, and a SameSite=Strict cookie is not sent on a navigation that
    # started there; this page's own navigation starts here. Its target came
    # back in a cookie from the browser: checked again.
    resp = views.page(request, "signed_in.html", None, next=safe_next(flow.next))
    resp.cookies.append(session_cookie(request, token))
    resp.cookies.append(Cookie(key=OIDC_COOKIE, value="", path=OIDC_PATH, httponly=True, samesite="lax", max_age=0))
    return resp


async def _oidc_user(store: PeopleStore, identity: oidc.Identity, config: OidcConfig) -> User:
    """The account of the person the identity provider signed in, made or
    linked by ``oidc.account_for``'s rules, once its tenant is known here."""
    if identity.tenant_id and not store.tenant_exists(identity.tenant_id):
        raise PermissionDenied(f"No tenant {identity.tenant_id!r} here for this person.", code="oidc_unknown_tenant")
    before, revision = await store.read_user(accounts.user_id_for(identity.email))
    user = oidc.account_for(before, identity, config, now_ms())
    if before is None:
        await store.write_user(user, 0, "oidc", "create", None)
    elif user != before:
        await store.write_user(user, revision, f"user:{before.id}", "oidc_link", before)
    return user


ROUTES: list[Any] = [oidc_start, oidc_callback]
