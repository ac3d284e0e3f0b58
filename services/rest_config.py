"""REST services in the config file (``[[services]]``), and the one check
every service record passes, whether the file or the admin API made it.

A service's record becomes URLs the provider stage calls, headers it adds
to every upstream request (their values from its own environment), a path
segment and a subscription name, and the OpenAPI document the portal
renders: so what it may hold is narrow. A slug of lower-case letters,
digits and "-"; http(s) base URLs without credentials, query or fragment;
header names of token characters that are not hop-by-hop; environment
variable names, never values; limits above 0; an OpenAPI document that is
one JSON object of bounded size.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec

from schemas.rest import (
    ALL_METHODS,
    HOP_BY_HOP,
    SLUG,
    HeaderRule,
    HttpMethod,
    RestInstance,
    RestService,
    ServiceState,
    service_key,
)

# The highest version: six digits, as the ingress reads one from a path
# (``/v<N>``). The admin API's shapes say it again (schemas.admin_services,
# which imports no services: a test holds them equal).
MAX_VERSION = 999_999
MAX_INSTANCES = 16
MAX_URL_CHARS = 2048
MAX_PATH_CHARS = 512
MAX_WEIGHT = 1e6
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 4000
MAX_TIMEOUT_S = 3600.0
MAX_HEADER_RULES = 32
MAX_STRIP_HEADERS = 64
MAX_PREFIX_CHARS = 256
# A body rides the bus in slices, but a cap past a gigabyte is a typo.
MAX_REQUEST_BYTES = 1 << 30
MAX_RESPONSE_BYTES = 1 << 40
# As an MCP tool's: above $1,000 a call is a typo, and budgets' sums stay far from int64's end.
MAX_PRICE_PICO_USD = 10**15
MAX_RATE = 10**9
# The document is part of the KV record, which nats-server caps (8 MB here).
MAX_OPENAPI_BYTES = 2 << 20
# 9999-12-31: a sunset later than that is a typo (or seconds taken for ms the other way round).
MAX_TIME_MS = 253_402_300_799_999

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# RFC 9110 §5.6.2 token characters.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
# Another service (``billing``) or another version of one (``billing/v2``).
SUCCESSOR = re.compile(rf"{SLUG.pattern}(?:/v[1-9][0-9]{{0,5}})?")  # six digits: MAX_VERSION

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


class RestServiceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[[services]]`` table: a ``RestService`` without what the seed
    sets, its OpenAPI document given inline (a table, or JSON text) or as
    ``openapi_path``, a JSON file (relative to the config file's folder).
    The defaults are ``RestService``'s (a test holds them equal)."""

    slug: str
    version: int = 1
    title: str = ""
    description: str = ""
    instances: list[RestInstance] = []
    methods: list[HttpMethod] = msgspec.field(default_factory=lambda: list(ALL_METHODS))
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    add_headers: list[HeaderRule] = []
    strip_headers: list[str] = msgspec.field(default_factory=lambda: ["authorization", "cookie"])
    max_request_bytes: int = 10 * 1024 * 1024
    max_response_bytes: int = 1024 * 1024 * 1024
    requires_approval: bool = False
    rpm: int | None = None
    max_parallel: int | None = None
    price_pico_usd: int = 0
    redact_json: bool = False
    openapi: dict[str, Any] | str | None = None
    openapi_path: str = ""
    openapi_url: str = ""
    state: ServiceState = "published"
    successor: str = ""
    sunset_at_ms: int = 0


def read_openapi_files(configured: list[RestServiceConfig], folder: Path) -> None:
    """Each ``openapi_path`` read into ``openapi`` (the file's text), before
    the records are made; ValueError names the table at fault."""
    for i, c in enumerate(configured):
        if not c.openapi_path:
            continue
        where = f"services[{i}] {c.slug!r}: openapi_path {c.openapi_path[:200]!r}"
        if c.openapi is not None:
            raise ValueError(f"{where}: give openapi or openapi_path, not both")
        path = folder / c.openapi_path
        try:
            if path.stat().st_size > MAX_OPENAPI_BYTES:
                raise ValueError(f"{where}: at most {MAX_OPENAPI_BYTES} bytes")
            c.openapi = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        c.openapi_path = ""


def _openapi_bytes(value: dict[str, Any] | str | None) -> bytes:
    if value is None:
        return b""
    return _encode_json(value) if isinstance(value, dict) else value.encode()


def record_of(c: RestServiceConfig) -> RestService:
    # Every other field of the table is the record's, by name: a field
    # added to both needs no copying here.
    fields = msgspec.structs.asdict(c)
    del fields["openapi_path"]
    fields["openapi"] = _openapi_bytes(c.openapi)
    fields["strip_headers"] = [h.lower() for h in c.strip_headers]
    return RestService(**fields, owner="config")


def url_problem(url: str, what: str = "url", *, base: bool = True) -> str | None:
    """What is wrong with an upstream URL, or None; a ``base`` URL (a
    caller's path is appended to it) has no query either."""
    if len(url) > MAX_URL_CHARS or not url.isprintable() or any(ch.isspace() for ch in url):
        return f"{what} {url[:80]!r}: at most {MAX_URL_CHARS} printable characters, no spaces"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        return f"{what} {url[:80]!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} {url[:80]!r}: an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return f"{what} {url[:80]!r}: no credentials in the URL (it is shown to admins); use add_headers"
    if parts.fragment or url.endswith("#"):
        return f"{what} {url[:80]!r}: no #fragment"
    if base and (parts.query or url.endswith("?")):
        return f"{what} {url[:80]!r}: a base URL has no ?query (a caller's path is appended to it)"
    if _has_dot_segment(parts.path):
        return f"{what} {url[:80]!r}: no '.' or '..' path segments"
    return None


def dot_segments(path: str) -> bool:
    """Whether a segment of ``path`` (decoded) climbs: "." or "..", with
    "\\" taken as "/" (some servers do) and a segment's ``;`` parameters
    left out (Tomcat and Jetty take ``..;x`` for "..")."""
    return any(segment.split(";", 1)[0] in (".", "..") for segment in path.replace("\\", "/").split("/"))


def _has_dot_segment(path: str) -> bool:
    """Whether a segment of ``path`` is a dot segment, percent-encoded or not."""
    return dot_segments(unquote(path))


def _health_path_problem(path: str) -> str | None:
    if not path:
        return None
    if (
        len(path) > MAX_PATH_CHARS
        or not path.startswith("/")
        or path.startswith("//")
        or not path.isprintable()
        or any(ch.isspace() or ch == "#" for ch in path)
        or _has_dot_segment(path.split("?", 1)[0])
    ):
        return (
            f"health_path {path[:80]!r}: a path under the base URL starting with '/', at most "
            f"{MAX_PATH_CHARS} printable characters, no spaces, '#' or '..' segments"
        )
    return None


def _instances_problem(instances: list[RestInstance]) -> str | None:
    if not instances:
        return 'instances: at least one ({ url = "http://host:port/base" })'
    if len(instances) > MAX_INSTANCES:
        return f"instances: at most {MAX_INSTANCES}"
    if len({i.url for i in instances}) != len(instances):
        return "instances: each URL once"
    for n, instance in enumerate(instances):
        if found := url_problem(instance.url, f"instances[{n}].url"):
            return found
        if not (math.isfinite(instance.weight) and 0 < instance.weight <= MAX_WEIGHT):
            return f"instances[{n}].weight: more than 0 and at most {MAX_WEIGHT:g}"
        if found := _health_path_problem(instance.health_path):
            return f"instances[{n}].{found}"
    return None


def _headers_problem(service: RestService) -> str | None:
    if len(service.add_headers) > MAX_HEADER_RULES:
        return f"add_headers: at most {MAX_HEADER_RULES}"
    seen: set[str] = set()
    for n, rule in enumerate(service.add_headers):
        where = f"add_headers[{n}]"
        if not HEADER_NAME.fullmatch(rule.name) or rule.name.lower() in HOP_BY_HOP:
            return f"{where}.name {rule.name[:80]!r}: a header name (token characters) that is not hop-by-hop"
        if rule.name.lower() in seen:
            return f"{where}.name {rule.name!r}: each header once"
        seen.add(rule.name.lower())
        if not ENV_NAME.fullmatch(rule.env):
            return f"{where}.env {rule.env[:80]!r}: the name of an environment variable (letters, digits, '_')"
        if len(rule.prefix) > MAX_PREFIX_CHARS or not rule.prefix.isprintable():
            return f"{where}.prefix: at most {MAX_PREFIX_CHARS} printable characters"
    if len(service.strip_headers) > MAX_STRIP_HEADERS:
        return f"strip_headers: at most {MAX_STRIP_HEADERS}"
    for name in service.strip_headers:
        if not HEADER_NAME.fullmatch(name) or name != name.lower():
            return f"strip_headers {name[:80]!r}: lower-case header names (token characters)"
    return None


def _limits_problem(service: RestService) -> str | None:
    for field, value in (("connect_timeout_s", service.connect_timeout_s), ("read_timeout_s", service.read_timeout_s)):
        if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
            return f"{field}: more than 0 and at most {MAX_TIMEOUT_S:g}"
    for field, value, top in (
        ("max_request_bytes", service.max_request_bytes, MAX_REQUEST_BYTES),
        ("max_response_bytes", service.max_response_bytes, MAX_RESPONSE_BYTES),
        ("rpm", service.rpm, MAX_RATE),
        ("max_parallel", service.max_parallel, MAX_RATE),
    ):
        if value is not None and not 0 < value <= top:
            return f"{field}: more than 0 and at most {top}"
    if not 0 <= service.price_pico_usd <= MAX_PRICE_PICO_USD:
        return f"price_pico_usd: between 0 and {MAX_PRICE_PICO_USD}"
    return None


def openapi_problem(document: bytes) -> str | None:
    """What is wrong with an OpenAPI document (JSON text), or None: it is
    one JSON object of bounded size, and its ``paths``, if any, an object."""
    if not document:
        return None
    if len(document) > MAX_OPENAPI_BYTES:
        return f"openapi: at most {MAX_OPENAPI_BYTES} bytes"
    try:
        doc = _decode_json(document)
    except (msgspec.DecodeError, RecursionError) as exc:
        return f"openapi: not JSON ({str(exc)[:120]})"
    if not isinstance(doc, dict):
        return "openapi: a JSON object (an OpenAPI document)"
    if not isinstance(doc.get("paths", {}), dict):
        return "openapi: its 'paths' must be an object"
    return None


def _lifecycle_problem(service: RestService) -> str | None:
    if service.successor and not SUCCESSOR.fullmatch(service.successor):
        return f"successor {service.successor[:80]!r}: another service's slug, or '<slug>/v<N>'"
    if service.successor == service.slug and service.version == 1:
        return "successor: not the service itself"
    if not 0 <= service.sunset_at_ms <= MAX_TIME_MS:
        return "sunset_at_ms: a time in ms since 1970 (0: none)"
    return None


def problem(service: RestService) -> str | None:
    """What is wrong with a service record, or None."""
    if SLUG.fullmatch(service.slug) is None:
        return "slug: 1-48 lower-case letters, digits or '-', starting with a letter or digit"
    if not 1 <= service.version <= MAX_VERSION:
        return f"version: 1 to {MAX_VERSION}"
    if len(service.title) > MAX_TITLE_CHARS or not service.title.isprintable():
        return f"title: at most {MAX_TITLE_CHARS} printable characters"
    if len(service.description) > MAX_DESCRIPTION_CHARS or "\x00" in service.description:
        return f"description: at most {MAX_DESCRIPTION_CHARS} characters, no NUL"
    if found := _instances_problem(service.instances):
        return found
    if not service.methods or len(set(service.methods)) != len(service.methods):
        return f"methods: at least one, each once, of {', '.join(ALL_METHODS)}"
    if bad := [m for m in service.methods if m not in ALL_METHODS]:
        return f"methods: {str(bad[0])[:20]!r} is none of {', '.join(ALL_METHODS)}"
    if found := _headers_problem(service) or _limits_problem(service):
        return found
    if found := openapi_problem(service.openapi):
        return found
    if service.openapi_url and (found := url_problem(service.openapi_url, "openapi_url", base=False)):
        return found
    return _lifecycle_problem(service)


def deprecated_since(service: RestService, before: RestService | None, now_ms: int) -> int:
    """When a service was deprecated (its callers' ``Deprecation`` header):
    the date it was first deprecated, kept through later changes; 0 while
    it is neither deprecated nor retired."""
    if service.state not in ("deprecated", "retired"):
        return 0
    if service.deprecated_at_ms:
        return service.deprecated_at_ms
    return before.deprecated_at_ms if before is not None and before.deprecated_at_ms else now_ms


def service_records(configured: list[RestServiceConfig]) -> dict[str, RestService]:
    """The ``[[services]]`` tables as records by KV key (``<slug>.v<N>``);
    ValueError names the table at fault."""
    out: dict[str, RestService] = {}
    for i, c in enumerate(configured):
        where = f"services[{i}] {c.slug[:80]!r} version {c.version}"
        record = record_of(c)
        if found := problem(record):
            raise ValueError(f"{where}: {found}")
        key = service_key(record.slug, record.version)
        if key in out:
            raise ValueError(f"{where}: another [[services]] has this slug and version")
        out[key] = record
    return out
