"""The caller's connection as the socket saw it.

uvicorn's proxy-headers middleware rewrites ``scope["client"]`` and
``scope["scheme"]`` from ``X-Forwarded-For``/``-Proto`` when the peer is a
proxy it trusts (``FORWARDED_ALLOW_IPS``): the portal reads the client's
address and TLS from those. A proxy of our own (the REST door, which sets
the proxy headers a service gets: ``services.forwarded``) must also know
the peer itself, to append it to the chain. ``behind_proxies`` wraps the
app in that same middleware, with ``KeepPeer`` outside it keeping what the
socket said under ``PEER``; ``python -m ingress`` turns uvicorn's own copy
of the middleware off for it.
"""

from __future__ import annotations

import os
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ingress.http import Receive, Scope, Send
from services.forwarded import DEFAULT_TRUSTED, Proxies

PEER = "sluice.peer"
TRUSTED_ENV = "FORWARDED_ALLOW_IPS"


def trusted_spec() -> str:
    """Which peers are trusted as proxies, as uvicorn reads it."""
    return os.environ.get(TRUSTED_ENV, DEFAULT_TRUSTED)


def trusted_proxies() -> Proxies:
    return Proxies(trusted_spec())


class KeepPeer:
    """ASGI middleware: the socket's peer address and scheme under ``PEER``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            scope[PEER] = (client[0] if client else "", scope.get("scheme", "http"))
        await self.app(scope, receive, send)


def behind_proxies(app: Any) -> KeepPeer:
    """``app`` with uvicorn's proxy headers applied for trusted proxies, the socket's view kept."""
    return KeepPeer(ProxyHeadersMiddleware(app, trusted_hosts=trusted_spec()))


def peer_of(scope: Scope) -> tuple[str, str]:
    """(the peer's address, the connection's scheme) as the socket saw them."""
    kept = scope.get(PEER)
    if kept is not None:
        return kept
    client = scope.get("client")
    return (client[0] if client else "", scope.get("scheme", "http"))
