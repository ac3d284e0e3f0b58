"""The address a caller reached the gateway at, for absolute URLs in an
answer (an image served by the gateway, ``ingress.image_content``).

The same rules as the proxy headers a REST service gets
(``services.forwarded``): from a proxy the ingress trusts, its
``X-Forwarded-Proto`` and ``-Host`` stand; from anyone else, the
connection's own scheme and the ``Host`` asked for. A caller who writes a
strange ``Host`` only gets links to that host back, in its own answer.
"""

from __future__ import annotations

from ingress.http import Scope, header
from ingress.peer import peer_of
from services.forwarded import HOST, NAMES, PROTO, Proxies, proxy_headers


def public_base(scope: Scope, proxies: Proxies) -> str:
    """``<scheme>://<host>``, without a trailing slash."""
    peer, scheme = peer_of(scope)
    given = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k.decode("latin-1") in NAMES]
    made = dict(proxy_headers(given, peer, scheme, header(scope, b"host") or "", trusted=proxies.trusts(peer)))
    host = made.get(HOST)
    if host is None:  # no Host (HTTP/1.0), or one no host has: the socket's own address
        server = scope.get("server") or ("127.0.0.1", 80)
        address = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
        host = address if server[1] is None else f"{address}:{server[1]}"
    return f"{made[PROTO]}://{host}"
