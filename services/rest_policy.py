"""Policy for a call to a REST service (``api`` "rest"): is the call
well-formed, may the caller make it, and what it takes from the shared
limit and budget counters.

The ingress checks a call before it publishes it (``services.rest_door``);
policy checks it again because a bus caller publishes envelopes of its own,
and because it alone holds the key's and tenant's records. A call counts
against the caller's key and tenant like any request (one request, no
tokens, the service's price reserved against their budgets) and against
the service's own ``rpm``/``max_parallel``: one counter per service version
for every caller and every policy replica, so the limit holds exactly
whoever calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

from schemas.control import ApiKey, Limits, Subscription, Tenant
from schemas.envelope import Envelope
from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound, RequestTooLarge
from schemas.rest import (
    ALL_METHODS,
    PATH_PREFIX,
    SLUG,
    RestCall,
    RestService,
    service_key,
    service_model,
    subscription_name,
)
from services import openapi_routes, policy, rest_config
from services import quota as quota_svc
from services.rest_config import MAX_VERSION

# A path with its query string, as the ingress passes it on at most.
MAX_PATH_BYTES = 8 * 1024
# A route is the OpenAPI template the door matched: any printable text.
MAX_ROUTE_CHARS = openapi_routes.MAX_TEMPLATE_CHARS
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
# How many layers of percent-encoding are looked through for a hidden ".."
# ("%252e%252e" is ".." to the second server of a chain).
MAX_DECODINGS = 3
# The per-service counters' scope ("quota.rate.service.<slug>-v<N>..."), named in refusals.
SERVICE_SCOPE = "service"

# A header name as passed on: lower-case RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,256}")
# What a path and query may hold as passed on: printable ASCII, no space
# (anything else is percent-encoded by a well-behaved client).
_PATH = re.compile(r"/[\x21-\x7e]*")


def _invalid(message: str, code: str = "invalid_rest_call") -> InvalidRequest:
    return InvalidRequest(message, code=code)


def check_call(env: Envelope) -> RestCall:
    """The call of an ``api`` "rest" envelope, refused (400) unless
    well-formed: it alone is carried (no chat, embeddings or MCP body),
    names a service by its slug and a version, a method HTTP has, a path
    that cannot climb out of an instance's base path, and at most
    ``MAX_HEADERS`` headers that cannot split a request."""
    call = env.rest
    if call is None or env.body is not None or env.embeddings is not None or env.tool is not None:
        raise InvalidRequest("A REST request carries 'rest' (the call) and no chat, embeddings or MCP body.")
    if SLUG.fullmatch(call.service) is None:
        raise _invalid("'rest.service' must be a service's slug (lower-case letters, digits and '-', at most 48).")
    if not 1 <= call.version <= MAX_VERSION:
        raise _invalid(f"'rest.version' must be between 1 and {MAX_VERSION}.")
    if call.method not in ALL_METHODS:
        raise _invalid(f"'rest.method' must be one of {', '.join(ALL_METHODS)}.")
    check_path(call.path)
    if call.route and (
        len(call.route) > MAX_ROUTE_CHARS or not call.route.startswith("/") or not call.route.isprintable()
    ):
        raise _invalid(f"'rest.route': a template starting with '/', at most {MAX_ROUTE_CHARS} printable characters.")
    check_headers(call.headers)
    return call


def check_path(path: str) -> None:
    if len(path) > MAX_PATH_BYTES:
        raise InvalidRequest(
            f"'rest.path' is longer than {MAX_PATH_BYTES} characters.", status=414, code="uri_too_long"
        )
    if not _PATH.fullmatch(path) or path.startswith("//"):
        raise _invalid(
            "'rest.path' must start with a single '/' and hold printable ASCII only (no spaces, CR, LF or NUL).",
            "invalid_path",
        )
    if "#" in path:
        raise _invalid("'rest.path' has no #fragment: it is the client's own.", "invalid_path")
    segments = path.split("?", 1)[0]
    for _ in range(MAX_DECODINGS + 1):
        if rest_config.dot_segments(segments):
            raise _invalid("Path segments '.' and '..' are not allowed (encoded or not).", "invalid_path")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segments):
            raise _invalid("'rest.path' has control characters (percent-encoded or not).", "invalid_path")
        if "%" not in segments:
            break
        segments = unquote(segments)


def header_name_ok(name: str) -> bool:
    """A lower-case header name of token characters."""
    return _HEADER_NAME.fullmatch(name) is not None


def header_value_ok(value: str) -> bool:
    """A header value that cannot end its line early (no CR, LF or NUL)."""
    return "\r" not in value and "\n" not in value and "\x00" not in value


def check_headers(headers: list[tuple[str, str]]) -> None:
    if len(headers) > MAX_HEADERS:
        raise _invalid(f"'rest.headers' has {len(headers)} entries; at most {MAX_HEADERS} are passed on.")
    size = 0
    for name, value in headers:
        if not header_name_ok(name):
            raise _invalid(f"Header name {name[:64]!r}: lower-case token characters (RFC 9110) only.")
        if not header_value_ok(value):
            raise _invalid(f"Header {name!r}: a value without CR, LF or NUL.")
        size += len(name) + len(value) + 4
    if size > MAX_HEADER_BYTES:
        raise InvalidRequest(
            f"'rest.headers' are larger than {MAX_HEADER_BYTES} bytes.", status=431, code="headers_too_large"
        )


def where(slug: str, version: int) -> str:
    """A service's path as callers use it (``/services/billing``, ``/services/billing/v2``)."""
    return f"{PATH_PREFIX}{slug}" + (f"/v{version}" if version != 1 else "")


def allowed_methods(service: RestService) -> str:
    """The methods a service takes, in a stable order (a 405's ``Allow``)."""
    return ", ".join(m for m in ALL_METHODS if m in service.methods)


def successor_path(successor: str) -> str:
    """Where a successor lives: a slug (``billing-v2``), or ``<slug>/v<N>`` for another version."""
    return f"{PATH_PREFIX}{successor.strip('/')}"


def find_service(call: RestCall, services: Mapping[str, RestService]) -> RestService:
    """The service a call names, as callers may see it: a draft is not there
    for them (404), a retired one is gone for good (410), and a method it
    does not take is a 405."""
    at = where(call.service, call.version)
    service = services.get(service_key(call.service, call.version))
    if service is None or service.state == "draft":
        raise RecordNotFound(f"There is no service at {at}.", code="service_not_found")
    if service.state == "retired":
        instead = f" Use {successor_path(service.successor)} instead." if service.successor else ""
        raise InvalidRequest(f"Service {at} is retired.{instead}", status=410, code="service_retired")
    if call.method not in service.methods:
        raise InvalidRequest(
            f"Method {call.method} is not allowed on {at}; it takes {allowed_methods(service)}.",
            status=405,
            code="method_not_allowed",
        )
    if len(call.body) > service.max_request_bytes:
        raise RequestTooLarge(
            f"The request body is {len(call.body)} bytes; {at} takes at most {service.max_request_bytes}."
        )
    return service


def check_access(
    call: RestCall,
    key: ApiKey,
    services: Mapping[str, RestService],
    subscriptions: Iterable[Subscription],
) -> RestService:
    """The service the caller may call as asked, or the error that refuses
    it: the service as callers see it, the key's ``models`` patterns
    (``service:<slug>``, ``service:<slug>/v<N>`` past version 1), then the
    service's approval (a subscription of the tenant to ``service:<slug>``,
    every version)."""
    service = find_service(call, services)
    name = service_model(service.slug, service.version)
    if not policy.may_call(key, name):
        raise PermissionDenied(f"Key {key.id!r} may not call {name!r}.", code="service_not_allowed")
    if service.requires_approval:
        policy.check_subscription(key.tenant_id, subscription_name(service.slug), subscriptions)
    return service


def screened(tenant: Tenant | None, service: RestService | None) -> Tenant | None:
    """The tenant whose privacy rules the call passes: a REST body is the
    service's business, not a prompt, so only where the service opts in
    (``redact_json``); any other request, always."""
    return tenant if service is None or service.redact_json else None


def counter_id(service: RestService) -> str:
    """The service's id in its counters' subjects: a slug is already a safe
    subject token, and each version counts apart (``billing-v2``)."""
    return f"{service.slug}-v{service.version}"


def needs(service: RestService, key: ApiKey, tenant: Tenant | None, now_ms: int) -> list[quota_svc.Need]:
    """What a call takes from the counters: from the key's and the tenant's
    one request, no tokens and the service's price; from the service's own,
    one request per minute and one slot in flight, as it limits them."""
    out: list[quota_svc.Need] = []
    for r, scope in ((key, "key"), (tenant, "tenant")):
        if r is not None and (r.limits.any() or r.budget is not None):
            out += quota_svc.needs(scope, r.id, r.limits, r.budget, r.created_at_ms, now_ms, 0, service.price_pico_usd)
    if service.rpm is not None or service.max_parallel is not None:
        limits = Limits(rpm=service.rpm, max_parallel=service.max_parallel)
        out += quota_svc.needs(SERVICE_SCOPE, counter_id(service), limits, None, service.created_at_ms, now_ms, 0, 0)
    return out
