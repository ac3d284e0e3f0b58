"""Plain REST services published through the gateway: the service as a
control-plane record, and one call to it as it rides the bus in the envelope.

A caller reaches a service at ``/services/<slug>/<path>`` (version 1) or
``/services/<slug>/v<N>/<path>``; the call passes the same stages as a model
call (policy, routing, the provider stage's generic HTTP adapter) as an
envelope of api "rest". Its answer streams back as ``Chunk`` replies that
carry the response's head (status and headers, on the first) and slices of
its body (``Chunk.data``), then a ``Final`` (``Final.rest``): a body is never
held whole by any stage.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

import msgspec

Owner = Literal["config", "api"]
# The same lifecycle as a prompt API (schemas.prompts.ApiState).
ServiceState = Literal["draft", "published", "deprecated", "retired"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ALL_METHODS: tuple[HttpMethod, ...] = get_args(HttpMethod)
# RFC 9110 §9.2.2: a second try of these cannot do more than the first did.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A slug is a path segment and part of KV keys and subscription names
# ("service:<slug>"): lower-case letters, digits and "-".
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
PATH_PREFIX = "/services/"
# What a subscription names to gate a service (as "mcp:<server>" for MCP).
SUBSCRIPTION_PREFIX = "service:"
# Headers that describe one hop, never forwarded either way (RFC 9110 §7.6.1),
# plus what the gateway sets itself.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def service_key(slug: str, version: int) -> str:
    """The record's KV key: ``<slug>.v<version>``."""
    return f"{slug}.v{version}"


def service_model(slug: str, version: int) -> str:
    """What a call's row names as its ``model``: ``service:<slug>`` (``/v<N>`` past version 1)."""
    return f"{SUBSCRIPTION_PREFIX}{slug}" if version == 1 else f"{SUBSCRIPTION_PREFIX}{slug}/v{version}"


def subscription_name(slug: str) -> str:
    return f"{SUBSCRIPTION_PREFIX}{slug}"


class RestInstance(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """One upstream of a service: its base URL (``http://127.0.0.1:9000/api``),
    its share of the traffic, and where its health is checked (a path under
    the base URL answered with a 2xx; empty: not checked, the breaker alone
    tells)."""

    url: str
    weight: float = 1.0
    health_path: str = ""


class HeaderRule(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """A header the provider stage adds to every upstream request, its value
    from an environment variable of the provider process (never on the bus):
    ``{"name": "Authorization", "env": "BILLING_TOKEN", "prefix": "Bearer "}``."""

    name: str
    env: str
    prefix: str = ""


class RestService(msgspec.Struct, omit_defaults=True):
    """A REST service (``[[services]]``, ``/admin/v1/services``); KV bucket
    ``sluice_services`` under ``service_key(slug, version)``."""

    slug: str
    version: int = 1
    title: str = ""
    description: str = ""
    instances: list[RestInstance] = []
    # What callers may send; anything else is a 405.
    methods: list[HttpMethod] = msgspec.field(default_factory=lambda: list(ALL_METHODS))
    # Connect, and between two reads of the upstream's answer (a long
    # download keeps going as long as bytes keep coming).
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    # Headers added upstream (credentials), and the caller's headers
    # dropped before the call (lower-case names; the caller's gateway key in
    # Authorization is always dropped).
    add_headers: list[HeaderRule] = []
    strip_headers: list[str] = msgspec.field(default_factory=lambda: ["authorization", "cookie"])
    # Size caps: the request body (413 past it) and the response body (the
    # answer is cut and ends with a 502 once a streamed body passes it).
    max_request_bytes: int = 10 * 1024 * 1024
    max_response_bytes: int = 1024 * 1024 * 1024
    # Calls need an approved subscription of the caller's tenant to
    # ``service:<slug>``.
    requires_approval: bool = False
    # Limits for every caller together, and a price per call charged to the
    # caller's key and tenant budgets (pico-USD; 1 USD = 10^12).
    rpm: int | None = None
    max_parallel: int | None = None
    price_pico_usd: int = 0
    # The tenant's privacy detectors run over JSON request bodies (opt-in).
    redact_json: bool = False
    # The service's OpenAPI document (JSON text), uploaded or fetched from
    # ``openapi_url``; the portal renders it and the ingress takes route
    # templates from its paths (``/users/{id}``) for the rows.
    openapi: bytes = b""
    openapi_url: str = ""
    state: ServiceState = "published"
    successor: str = ""
    sunset_at_ms: int = 0
    # When it was deprecated (its callers' ``Deprecation`` header, RFC 9745),
    # as a prompt API's ``deprecated_at_ms``; 0 when not known.
    deprecated_at_ms: int = 0
    created_at_ms: int = 0
    owner: Owner = "config"

    @property
    def key(self) -> str:
        return service_key(self.slug, self.version)


class RestCall(msgspec.Struct, omit_defaults=True):
    """One call to a REST service, in the envelope (api "rest")."""

    service: str
    version: int = 1
    method: HttpMethod = "GET"
    # The path under the service (``/users/42``), with its query string.
    path: str = "/"
    # The OpenAPI path it matched (``/users/{id}``), for the rows; "" if none.
    route: str = ""
    # The caller's headers after the service's strip rules, lower-case names.
    headers: list[tuple[str, str]] = []
    # The request body, at most the service's ``max_request_bytes``.
    body: bytes = b""


class RestHead(msgspec.Struct, omit_defaults=True):
    """The upstream's response line and headers (hop-by-hop ones left out)."""

    status: int
    headers: list[tuple[str, str]] = []


class RestResult(msgspec.Struct, omit_defaults=True):
    """How a REST call ended, on its ``Final``: the head (when no chunk
    carried it: a small answer comes in the ``Final`` alone, its body in
    ``Final.data``), and the body's size in bytes as the upstream sent it."""

    head: RestHead | None = None
    response_bytes: int = 0
    # The upstream's status, wherever its head went: the request's row is
    # made from the ``Final`` alone, and a streamed answer's head rode on
    # its first chunk.
    status: int = 0


kv_encode = msgspec.msgpack.encode
decode_service = msgspec.msgpack.Decoder(RestService).decode
