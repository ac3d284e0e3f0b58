"""What the ingress makes of a call to a REST service before it publishes
it, without I/O: which service and version the path names, what a
deprecated service tells its callers, which of the caller's headers go on,
and which of the upstream's come back.

``/services/<slug>/<path>`` is version 1; ``/services/<slug>/v<N>/<path>``
is version N when the service has one callers see (published, deprecated
or retired; not a draft), and otherwise ``v<N>`` is part of the path (a
version-1 service may well have a ``/v2/...`` of its own).

The path goes on as the caller encoded it (an upstream decodes its own
paths). Whether it is safe behind an instance's base URL, whether the
service takes calls and the method, and how many headers may go on, are
policy's rules for every caller (``services.rest_policy``): the door
applies the same functions, so a caller over HTTP is refused before its
body is read, with the same answer a bus caller gets from policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate

from schemas.errors import RecordNotFound
from schemas.rest import HOP_BY_HOP, PATH_PREFIX, SLUG, RestService, service_key
from services import rest_policy
from services.providers.rest.headers import sets_gateway_cookie
from services.rest_config import MAX_VERSION

# A 405's Allow header: the list policy's refusal names.
allowed_methods = rest_policy.allowed_methods
# The caller's credentials for the gateway: never passed on, whatever the service's rules say.
GATEWAY_KEY_HEADERS = frozenset({"authorization", "x-api-key"})
# The gateway's own request headers (a deployment pin, a test flag), and
# the id it sets itself on the answer.
GATEWAY_PREFIX = "x-sluice-"


@dataclass(frozen=True, slots=True)
class Target:
    """The service a path names and the path under it, as sent (``/users/42?x=1``)."""

    slug: str
    version: int
    # Percent-encoded as the caller sent it; "/" at least.
    path: str
    query: str

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def slug_of(raw_path: str) -> str | None:
    """The slug a path under ``/services/`` names, if it is one."""
    if not raw_path.startswith(PATH_PREFIX):
        return None
    slug = raw_path[len(PATH_PREFIX) :].split("/", 1)[0]
    return slug if SLUG.fullmatch(slug) else None


def _version_of(segment: str) -> int | None:
    digits = segment[1:]
    if not segment.startswith("v") or not digits.isdigit() or not digits.isascii() or digits.startswith("0"):
        return None
    # A segment like v99999999999 is just path (and no huge int is parsed).
    version = int(digits) if len(digits) <= len(str(MAX_VERSION)) else 0
    return version if 1 <= version <= MAX_VERSION else None


def target_of(raw_path: str, query: str, has_version: Callable[[str, int], bool]) -> Target:
    """The service, version and path a request's target names. Raises
    ``RecordNotFound`` when the path names no service at all, and what
    ``rest_policy.check_path`` raises when the rest is unsafe to pass on."""
    slug = slug_of(raw_path)
    if slug is None:
        raise RecordNotFound(
            f"There is no service at {raw_path[:200]!r}: services are at /services/<slug>/...",
            code="service_not_found",
        )
    rest = raw_path[len(PATH_PREFIX) + len(slug) :]
    version = 1
    if rest.startswith("/v"):
        segment, sep, after = rest[1:].partition("/")
        asked = _version_of(segment)
        if asked is not None and has_version(slug, asked):
            version, rest = asked, sep + after
    target = Target(slug, version, rest or "/", query)
    rest_policy.check_path(target.path_and_query)
    return target


def lifecycle_headers(service: RestService) -> list[tuple[bytes, bytes]]:
    """A deprecated service says so (RFC 9745), when it goes away (RFC
    8594) and where to go instead, on every answer."""
    if service.state not in ("deprecated", "retired"):
        return []
    out = [(b"deprecation", f"@{service.deprecated_at_ms // 1000}".encode())]
    if service.sunset_at_ms:
        out.append((b"sunset", formatdate(service.sunset_at_ms / 1000, usegmt=True).encode()))
    if service.successor:
        out.append((b"link", f'<{rest_policy.successor_path(service.successor)}>; rel="successor-version"'.encode()))
    return out


def gateway_key(header: Callable[[bytes], str | None]) -> str | None:
    """The caller's gateway key as policy reads it: ``x-api-key`` or ``Authorization: Bearer``."""
    key = header(b"x-api-key")
    return f"Bearer {key}" if key else header(b"authorization")


def forwarded_headers(service: RestService, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The caller's headers that go to the upstream: lower-case names, none
    of one hop's (``Connection`` may name more), none the service strips,
    never the gateway key nor the gateway's own ``x-sluice-*``; a name that
    is no token or a value with a line break is dropped. Too many of them,
    or too large, are refused as policy refuses them (400, 431)."""
    pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
    dropped = set(HOP_BY_HOP) | GATEWAY_KEY_HEADERS | {h.lower() for h in service.strip_headers}
    for name, value in pairs:
        if name == "connection":
            dropped.update(t.strip().lower() for t in value.split(","))
    out = []
    for name, value in pairs:
        if name in dropped or name.startswith(GATEWAY_PREFIX):
            continue
        if not rest_policy.header_name_ok(name) or not rest_policy.header_value_ok(value):
            continue
        out.append((name, value))
    rest_policy.check_headers(out)
    return out


# The gateway's own on every answer (the HTTP server adds Date and Server):
# the upstream's copies would go out twice. nginx's proxy hides the same two.
_GATEWAY_SETS = frozenset({"x-request-id", "date", "server"})


def answer_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers as the client gets them: no hop's
    own, none the gateway sets itself (the request id, Date, Server), none of the gateway's cookies
    (whoever answered on the bus), nothing that could split the response."""
    out = []
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP or low in _GATEWAY_SETS or (low == "set-cookie" and sets_gateway_cookie(value)):
            continue
        if not rest_policy.header_name_ok(low) or not rest_policy.header_value_ok(value):
            continue
        out.append((low.encode("latin-1"), value.encode("latin-1", "replace")))
    return out


def has_version_in(services: Mapping[str, RestService]) -> Callable[[str, int], bool]:
    """Whether a service has a version callers see: a draft is not there
    for them (policy's 404), so its ``v<N>`` stays part of version 1's path
    (publishing it later takes the segment over); a retired one still is,
    and answers 410 rather than hand its path to version 1."""

    def has(slug: str, version: int) -> bool:
        service = services.get(service_key(slug, version))
        return service is not None and service.state != "draft"

    return has
