"""The admin API's shapes for REST services (``/admin/v1/services``): what
a gateway admin sends to register, change and move a service through its
lifecycle, and what any admin reads back.

A service is addressed by its slug and version (``?version=2``; 1 when
left out), as callers address it (``/services/<slug>/v2/...``). Its OpenAPI
document is uploaded or fetched on its own (it may be far larger than any
other admin request), never sent inline. Every field is bounded here; what
a record as a whole must be (URLs, header names, caps) is checked by the
one rule the config file's services pass too (``services.rest_config.problem``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from schemas.admin import Strict
from schemas.rest import ALL_METHODS, HeaderRule, HttpMethod, RestInstance, ServiceState

Slug = Annotated[
    str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$", description="Lower-case letters, digits and '-'; 1-48.")
]
Version = Annotated[int, Meta(ge=1, le=999_999)]
Title = Annotated[str, Meta(max_length=200)]
Description = Annotated[str, Meta(max_length=4000)]
Instances = Annotated[list[RestInstance], Meta(min_length=1, max_length=16)]
Methods = Annotated[list[HttpMethod], Meta(min_length=1, max_length=len(ALL_METHODS))]
TimeoutS = Annotated[float, Meta(gt=0, le=3600)]
HeaderRules = Annotated[list[HeaderRule], Meta(max_length=32)]
StripHeaders = Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=64)]
Bytes = Annotated[int, Meta(ge=1, le=1 << 40)]
Rate = Annotated[int, Meta(ge=1, le=10**9)]
Price = Annotated[int, Meta(ge=0, le=10**15, description="Per call; 1 USD = 10^12 pico-USD.")]
Url = Annotated[str, Meta(max_length=2048)]
Successor = Annotated[
    str,
    Meta(
        pattern=r"^[a-z0-9][a-z0-9-]{0,47}(/v[1-9][0-9]{0,5})?$",
        description="Another service's slug, or '<slug>/v<N>' for another version.",
    ),
]


class ServiceCreate(Strict):
    """A new service (``draft`` until published, unless ``state`` says otherwise)."""

    slug: Slug
    instances: Instances
    version: Version = 1
    title: Title = ""
    description: Description = ""
    methods: Methods = msgspec.field(default_factory=lambda: list(ALL_METHODS))
    connect_timeout_s: TimeoutS = 5.0
    read_timeout_s: TimeoutS = 60.0
    add_headers: HeaderRules = []
    strip_headers: StripHeaders = msgspec.field(default_factory=lambda: ["authorization", "cookie"])
    max_request_bytes: Bytes = 10 * 1024 * 1024
    max_response_bytes: Bytes = 1024 * 1024 * 1024
    requires_approval: bool = False
    rpm: Rate | None = None
    max_parallel: Rate | None = None
    price_pico_usd: Price = 0
    redact_json: bool = False
    # Where the service serves its own OpenAPI document (``POST .../openapi/fetch``).
    openapi_url: Url = ""
    state: ServiceState = "draft"


class ServiceUpdate(Strict):
    """Only the fields sent change; ``null`` removes a limit. The lifecycle
    and the OpenAPI document have endpoints of their own."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    instances: Instances | UnsetType = UNSET
    methods: Methods | UnsetType = UNSET
    connect_timeout_s: TimeoutS | UnsetType = UNSET
    read_timeout_s: TimeoutS | UnsetType = UNSET
    add_headers: HeaderRules | UnsetType = UNSET
    strip_headers: StripHeaders | UnsetType = UNSET
    max_request_bytes: Bytes | UnsetType = UNSET
    max_response_bytes: Bytes | UnsetType = UNSET
    requires_approval: bool | UnsetType = UNSET
    rpm: Rate | UnsetType | None = UNSET
    max_parallel: Rate | UnsetType | None = UNSET
    price_pico_usd: Price | UnsetType = UNSET
    redact_json: bool | UnsetType = UNSET
    openapi_url: Url | UnsetType = UNSET


class Deprecate(Strict):
    """Callers are told (``Deprecation``), until when (``Sunset``) and where
    to go instead (``Link``); the service keeps answering."""

    sunset_at: dt.datetime | None = None
    successor: Successor | None = None


class Retire(Strict):
    """Callers get a 410 (naming the successor, if any) from then on."""

    successor: Successor | None = None


class OpenApiFetch(Strict):
    """Fetch the document from this URL (kept as the service's
    ``openapi_url``), or from the one the service has."""

    url: Url = ""


class ServiceOut(msgspec.Struct):
    slug: str
    version: int
    # Where callers reach it.
    path: str
    title: str
    description: str
    instances: list[RestInstance]
    methods: list[str]
    connect_timeout_s: float
    read_timeout_s: float
    # Names of the provider's environment variables, never their values.
    add_headers: list[HeaderRule]
    strip_headers: list[str]
    max_request_bytes: int
    max_response_bytes: int
    requires_approval: bool
    rpm: int | None
    max_parallel: int | None
    price_pico_usd: int
    redact_json: bool
    openapi_url: str
    # The document's size and how many paths it has (``GET .../openapi`` for the document itself).
    openapi_bytes: int
    openapi_paths: int
    state: ServiceState
    successor: str
    sunset_at: dt.datetime | None
    deprecated_at: dt.datetime | None
    created_at: dt.datetime | None
    owner: str
