"""What the ingress checks of a call to a REST service before it publishes
it, without I/O: which service and version the path names, what its
lifecycle says, whether the method is allowed, which of the caller's
headers go on, and what is left of the path once it is known to be safe to
put behind an upstream's base URL.

``/services/<slug>/<path>`` is version 1; ``/services/<slug>/v<N>/<path>``
is version N when the service has one, and otherwise ``v<N>`` is part of
the path (a version-1 service may well have a ``/v2/...`` of its own).

Everything here comes from the caller and is hostile until checked: the
path is forwarded as the caller encoded it (an upstream decodes its own
paths), but a segment that is or hides a ``.``/``..`` is refused (it would
climb out of the instance's base path), as are control characters and
anything that is not printable ASCII.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import unquote

from schemas.errors import ErrorType, GatewayError, InvalidRequest, RecordNotFound
from schemas.rest import ALL_METHODS, HOP_BY_HOP, PATH_PREFIX, SLUG, HttpMethod, RestService, service_key

# Longest path (with its query string) passed on; longer is a 414, as most servers answer.
MAX_TARGET_CHARS = 8192
# Past this many bytes of headers passed on, a 431: a proxy should not
# carry more than the servers behind it would take.
MAX_HEADER_BYTES = 64 * 1024
# How many layers of percent-encoding are looked through for a hidden "..".
MAX_DECODINGS = 3
# Highest version a path may name (a segment like v99999999999 is just path).
MAX_VERSION = 1_000_000
# The caller's credentials for the gateway: never passed on, whatever the service's rules say.
GATEWAY_KEY_HEADERS = frozenset({"authorization", "x-api-key"})
# The gateway's own request headers (a deployment pin, a test flag), and
# the id it sets itself on the answer.
GATEWAY_PREFIX = "x-sluice-"
_SAFE_TARGET = frozenset(chr(c) for c in range(0x21, 0x7F))
# RFC 9110 token characters: a header name made of anything else is dropped.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ServiceNotFound(RecordNotFound):
    code = "service_not_found"


class ServiceRetired(GatewayError):
    status = 410
    type = ErrorType.INVALID_REQUEST
    code = "service_retired"


class MethodNotAllowed(InvalidRequest):
    """A method the service does not take; ``allow`` is what it does (the ``Allow`` header)."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: Iterable[str]) -> None:
        super().__init__(message)
        self.allow = ", ".join(allow)


class InvalidPath(InvalidRequest):
    code = "invalid_path"


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
    version = int(digits) if len(digits) <= 7 else 0
    return version if 1 <= version <= MAX_VERSION else None


def target_of(raw_path: str, query: str, has_version: Callable[[str, int], bool]) -> Target:
    """The service, version and path a request's target names. Raises
    ``ServiceNotFound`` when the path names no service at all and
    ``InvalidPath`` when what follows is unsafe to pass on."""
    slug = slug_of(raw_path)
    if slug is None:
        raise ServiceNotFound(f"There is no service at {raw_path[:200]!r}: services are at /services/<slug>/...")
    rest = raw_path[len(PATH_PREFIX) + len(slug) :]
    version = 1
    if rest.startswith("/v"):
        segment, sep, after = rest[1:].partition("/")
        asked = _version_of(segment)
        if asked is not None and has_version(slug, asked):
            version, rest = asked, sep + after
    path = rest or "/"
    check_target(path, query)
    return Target(slug, version, path, query)


def check_target(path: str, query: str) -> None:
    if len(path) + len(query) + 1 > MAX_TARGET_CHARS:
        raise InvalidRequest(
            f"The request target is longer than {MAX_TARGET_CHARS} characters.", status=414, code="uri_too_long"
        )
    if not _SAFE_TARGET.issuperset(path) or not _SAFE_TARGET.issuperset(query):
        raise InvalidPath("The path or query has characters that must be percent-encoded.")
    for segment in path.split("/"):
        _check_segment(segment)
        # Decoded as often as a chain of servers might ("%252e%252e" is ".." to the second).
        for _ in range(MAX_DECODINGS):
            if "%" not in segment:
                break
            segment = unquote(segment)
            _check_segment(segment)


def _check_segment(segment: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
        raise InvalidPath("The path has control characters.")
    # "..", or "..%2f" once an upstream decodes it: a climb out of the base path ("\\" is "/" to some servers).
    if any(part in (".", "..") for part in segment.replace("\\", "/").split("/")):
        raise InvalidPath("Path segments '.' and '..' are not allowed (encoded or not).")


def check_state(service: RestService) -> None:
    """A draft is not there for callers; a retired service is gone for good."""
    where = f"/services/{service.slug}" + (f"/v{service.version}" if service.version != 1 else "")
    if service.state == "draft":
        raise ServiceNotFound(f"There is no service at {where}.")
    if service.state == "retired":
        instead = f" Use {successor_path(service.successor)} instead." if service.successor else ""
        raise ServiceRetired(f"Service {where} is retired.{instead}")


def check_method(service: RestService, method: str) -> HttpMethod:
    if method in service.methods and method in ALL_METHODS:
        return method  # type: ignore[return-value]
    allowed = [m for m in ALL_METHODS if m in service.methods]
    raise MethodNotAllowed(
        f"Method {method[:16]} is not allowed on this service; it takes {', '.join(allowed)}.", allowed
    )


def successor_path(successor: str) -> str:
    """Where a successor lives: a slug (``billing-v2``), or ``<slug>/v<N>`` for another version."""
    return f"{PATH_PREFIX}{successor.strip('/')}"


def lifecycle_headers(service: RestService) -> list[tuple[bytes, bytes]]:
    """A deprecated service says so (RFC 9745), when it goes away (RFC
    8594) and where to go instead, on every answer."""
    if service.state not in ("deprecated", "retired"):
        return []
    out = [(b"deprecation", f"@{service.deprecated_at_ms // 1000}".encode())]
    if service.sunset_at_ms:
        out.append((b"sunset", formatdate(service.sunset_at_ms / 1000, usegmt=True).encode()))
    if service.successor:
        out.append((b"link", f'<{successor_path(service.successor)}>; rel="successor-version"'.encode()))
    return out


def gateway_key(header: Callable[[bytes], str | None]) -> str | None:
    """The caller's gateway key as policy reads it: ``x-api-key`` or ``Authorization: Bearer``."""
    key = header(b"x-api-key")
    return f"Bearer {key}" if key else header(b"authorization")


def forwarded_headers(service: RestService, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The caller's headers that go to the upstream: lower-case names, none
    of one hop's (``Connection`` may name more), none the service strips,
    never the gateway key nor the gateway's own ``x-sluice-*``; a name that
    is no token or a value with a line break is dropped. ``InvalidRequest``
    (431) past ``MAX_HEADER_BYTES``."""
    pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
    dropped = set(HOP_BY_HOP) | GATEWAY_KEY_HEADERS | {h.lower() for h in service.strip_headers}
    for name, value in pairs:
        if name == "connection":
            dropped.update(t.strip().lower() for t in value.split(","))
    out, size = [], 0
    for name, value in pairs:
        if name in dropped or name.startswith(GATEWAY_PREFIX) or not name or not _TOKEN.issuperset(name):
            continue
        if "\r" in value or "\n" in value or "\x00" in value:
            continue
        size += len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            raise InvalidRequest(
                f"The headers to pass on are larger than {MAX_HEADER_BYTES} bytes.",
                status=431,
                code="headers_too_large",
            )
        out.append((name, value))
    return out


def answer_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers as the client gets them: no hop's
    own, not the request id (the gateway's), nothing that could split the
    response."""
    out = []
    for name, value in headers:
        low = name.lower()
        if low in HOP_BY_HOP or low == "x-request-id" or not low or not _TOKEN.issuperset(low):
            continue
        if "\r" in value or "\n" in value or "\x00" in value:
            continue
        out.append((low.encode("latin-1"), value.encode("latin-1", "replace")))
    return out


def has_version_in(services: Mapping[str, RestService]) -> Callable[[str, int], bool]:
    return lambda slug, version: service_key(slug, version) in services
