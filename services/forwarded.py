"""The proxy headers a REST service gets (``x-forwarded-for``, ``-proto``,
``-host``): made by the gateway from the caller's connection, never passed
on as the caller wrote them.

A caller can write anything in these headers, and a service may trust them
(an allow-list of addresses, absolute links built from the host). So the
ingress sets them itself:

* from a peer it does not trust as a proxy (the default for any address
  but loopback), it replaces them: ``for`` is the peer's address,
  ``proto`` the connection's scheme, ``host`` the ``Host`` the caller
  asked for;
* from a proxy it trusts (``FORWARDED_ALLOW_IPS``, the variable uvicorn
  reads for the same purpose: loopback by default; ``*`` for any), the
  chain that proxy wrote goes on with the proxy's own address appended, as
  every proxy in a chain does, and its ``proto`` and ``host`` stand.

Values that are not what the header holds (a line break, a proto other
than http or https, a host with characters no host has) are dropped, and
the connection's own values stand instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# uvicorn's own default: a proxy on the same host.
DEFAULT_TRUSTED = "127.0.0.1,::1"
FOR, PROTO, HOST = "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"
NAMES = frozenset({FOR, PROTO, HOST})
# A chain longer than this is not one proxies made.
MAX_CHAIN = 32
# RFC 3986 host (reg-name, IPv4, [IPv6]) and an optional port.
_HOST = re.compile(r"[A-Za-z0-9.\-_~]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_ADDRESS = re.compile(r"[0-9A-Za-z.:\[\]_\-]{1,64}")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Proxies:
    """The peers trusted as proxies: addresses, networks (``10.0.0.0/8``),
    other names (a unix socket's), or ``*`` for any."""

    def __init__(self, spec: str = DEFAULT_TRUSTED) -> None:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        self.any = "*" in items
        self.networks: list[_Network] = []
        self.names: set[str] = set()
        for item in items:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.names.add(item)

    def trusts(self, peer: str) -> bool:
        if self.any or peer in self.names:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def proxy_headers(
    headers: Iterable[tuple[str, str]], peer: str, scheme: str, host: str, *, trusted: bool
) -> list[tuple[str, str]]:
    """The three headers for the service, from what the caller sent
    (``headers``: lower-case names) and its connection: the ``peer``'s
    address, the ``scheme`` it came over and the ``Host`` it asked for."""
    chain: list[str] = []
    proto = host_given = ""
    if trusted:
        for name, value in headers:
            if name == FOR:
                chain += [hop.strip() for hop in value.split(",")]
            elif name == PROTO and not proto:
                proto = value.split(",")[0].strip().lower()
            elif name == HOST and not host_given:
                host_given = value.split(",")[0].strip()
    if len(chain) > MAX_CHAIN or not all(_ADDRESS.fullmatch(hop) for hop in chain):
        chain = []  # not what proxies write: the peer alone is known
    out = [(FOR, ", ".join([*chain, peer]))] if _ADDRESS.fullmatch(peer) else []
    if proto not in ("http", "https"):
        proto = "https" if scheme in ("https", "wss") else "http"
    out.append((PROTO, proto))
    host = host_given if _HOST.fullmatch(host_given) else host
    if _HOST.fullmatch(host):
        out.append((HOST, host))
    return out


def replace_proxy_headers(
    headers: list[tuple[str, str]], peer: str, scheme: str, host: str, *, trusted: bool
) -> list[tuple[str, str]]:
    """``headers`` (those going to the service) with the proxy headers the
    gateway made instead of the caller's."""
    made = proxy_headers(headers, peer, scheme, host, trusted=trusted)
    return [(name, value) for name, value in headers if name not in NAMES] + made
