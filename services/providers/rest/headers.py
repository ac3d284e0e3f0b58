"""The headers of a REST call, both ways.

Upstream, an instance gets the caller's headers less:

* what describes one hop (``HOP_BY_HOP``: ``connection``, ``te``, ``host``,
  ``content-length``, ...; the client set them for its connection to the
  gateway, the gateway's own client sets them for its connection to the
  instance) and ``expect`` (the body is already whole);
* the gateway's credential, whichever header carried it (``authorization``,
  ``x-api-key``), and the service's ``strip_headers`` (by default
  ``cookie`` too): read from the service's record, never from the envelope;
* the gateway's own control headers (``x-sluice-*``), and proxy headers the
  gateway does not keep up to date (``forwarded``, any ``x-forwarded-*``
  but ``-for``, ``-proto`` and ``-host``, which the ingress sets from the
  caller's connection);

plus ``x-forwarded-prefix`` (where the service is mounted on the gateway)
and the service's ``add_headers``, each from an environment variable of the
provider process (a credential never rides on the bus; a rule's header
replaces a caller's of the same name). A header name that is no HTTP token,
or a value with a line break, is refused: it could smuggle a header in.

Downstream, the caller gets the instance's headers less the hop-by-hop ones
and those its ``Connection`` header names (RFC 9110 §7.6.1), less any
``Set-Cookie`` of the gateway's own cookies (``sets_gateway_cookie``: the
service answers on the gateway's origin, where it could otherwise plant,
replace or clear the portal's session), and a redirect into the instance
pointed at the same place on the gateway.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

from schemas.errors import InvalidRequest
from schemas.rest import HOP_BY_HOP, RestCall, RestService

log = logging.getLogger("sluice.rest")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BREAKS = re.compile(r"[\r\n\0]")
# The gateway's key never goes upstream, whichever header a caller sent it in.
_GATEWAY_KEY = frozenset({"authorization", "x-api-key"})
_NOT_FORWARDED = HOP_BY_HOP | _GATEWAY_KEY | {"expect", "forwarded", "proxy-connection"}
# Set by the ingress from the caller's connection; every other x-forwarded-* is dropped.
_FORWARDED_KEPT = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
# The gateway's own cookies' names begin so (the portal's, the dashboard's).
GATEWAY_COOKIE_PREFIX = "sluice_"
# Environment variables already reported missing, once each.
_missing_reported: set[str] = set()


def mount_prefix(slug: str, version: int) -> str:
    """Where the service is mounted on the gateway (``x-forwarded-prefix``)."""
    return f"/services/{slug}" if version == 1 else f"/services/{slug}/v{version}"


def _forwarded(name: str) -> bool:
    if name in _NOT_FORWARDED or name.startswith("x-sluice-"):
        return False
    return not name.startswith("x-forwarded-") or name in _FORWARDED_KEPT


def request_headers(call: RestCall, service: RestService, environ: Mapping[str, str] = os.environ) -> CIMultiDict[str]:
    """What an instance of ``service`` gets for ``call``."""
    stripped = {h.lower() for h in service.strip_headers}
    added = {rule.name.lower() for rule in service.add_headers}
    out: CIMultiDict[str] = CIMultiDict()
    for raw_name, value in call.headers:
        name = raw_name.lower()
        if _TOKEN.fullmatch(name) is None or _BREAKS.search(value):
            raise InvalidRequest("A header of the REST call is malformed.", code="invalid_header")
        if _forwarded(name) and name not in stripped and name not in added:
            out.add(name, value)
    out["x-forwarded-prefix"] = mount_prefix(call.service, call.version)
    for rule in service.add_headers:
        secret = environ.get(rule.env)
        if secret is None or _TOKEN.fullmatch(rule.name) is None or _BREAKS.search(rule.prefix + secret):
            if rule.env not in _missing_reported:
                _missing_reported.add(rule.env)
                log.warning("service %s: header %s not sent ($%s unset or unusable)", service.key, rule.name, rule.env)
            continue
        out.add(rule.name.lower(), rule.prefix + secret)
    return out


def sets_gateway_cookie(value: str) -> bool:
    """Whether a ``Set-Cookie`` value would set one of the gateway's cookies:
    its name (as a browser trims it) begins with ``sluice_`` in any case, or
    it has no name, for a nameless cookie goes back as its bare value, which
    a server reads as a name (``=sluice_portal=x`` comes back as ``sluice_portal=x``)."""
    pair = value.split(";", 1)[0]
    name, eq, _ = pair.partition("=")
    name = name.strip(" \t")
    return not eq or not name or name.lower().startswith(GATEWAY_COOKIE_PREFIX)


def response_headers(raw: Iterable[tuple[bytes, bytes]], base_url: str = "", prefix: str = "") -> list[tuple[str, str]]:
    """The instance's answer's headers as the caller gets them (repeated
    names kept, in order: several ``set-cookie``). A ``Location`` under the
    instance's ``base_url`` becomes the same place under the service's
    ``prefix`` on the gateway: a redirect neither leaks an internal address
    nor sends the caller around the gateway."""
    pairs = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
    named = {token.strip().lower() for name, value in pairs if name == "connection" for token in value.split(",")}
    base = base_url.rstrip("/")
    out = []
    for name, value in pairs:
        if name in HOP_BY_HOP or name in named or (name == "set-cookie" and sets_gateway_cookie(value)):
            continue
        if name == "location" and base and (value == base or value.startswith((base + "/", base + "?"))):
            value = prefix + (value[len(base) :] or "/")
        out.append((name, value))
    return out
