"""REST service records as the admin API changes them, without I/O: a new
one, a change, a move through the lifecycle, a new OpenAPI document; each
ends in the one check every record passes (``rest_config.problem``).

The lifecycle is a prompt API's: draft -> published -> deprecated ->
retired. A deprecated service may be published again (the deprecation was
a mistake); a retired one stays retired (callers were told it is gone:
register a new version instead), and a draft is deleted, never retired.
A service keeps the time it was first deprecated: its callers'
``Deprecation`` header says since when.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from msgspec import UNSET

from schemas.admin_services import ServiceCreate, ServiceUpdate
from schemas.errors import InvalidRequest, RecordConflict
from schemas.rest import RestService, service_key
from services import rest_config

# An uploaded or fetched document: the size the admin API takes (within
# rest_config.MAX_OPENAPI_BYTES, what any record's document may be).
MAX_UPLOAD_BYTES = 1 << 20
STATE_ACTIONS = {"draft": "unpublish", "published": "publish", "deprecated": "deprecate", "retired": "retire"}

_decode_json = msgspec.json.Decoder().decode


class _Paths(msgspec.Struct):
    # Each path's operations are skipped over, not decoded.
    paths: dict[str, msgspec.Raw] = {}


_decode_paths = msgspec.json.Decoder(_Paths).decode


def checked(service: RestService) -> RestService:
    if found := rest_config.problem(service):
        raise InvalidRequest(f"Service {service.slug!r} version {service.version}: {found}", code="invalid_service")
    return service


def created(data: ServiceCreate, now_ms: int) -> RestService:
    fields = msgspec.structs.asdict(data)
    fields["strip_headers"] = [h.lower() for h in data.strip_headers]
    service = RestService(**fields, created_at_ms=now_ms, owner="api")
    # One registered deprecated (or retired) is so from now, for its callers' Deprecation header.
    service.deprecated_at_ms = rest_config.deprecated_since(service, None, now_ms)
    return checked(service)


def updated(before: RestService, data: ServiceUpdate) -> RestService:
    changes = {f: v for f in data.__struct_fields__ if (v := getattr(data, f)) is not UNSET}
    if "strip_headers" in changes:
        changes["strip_headers"] = [h.lower() for h in changes["strip_headers"]]
    return checked(msgspec.structs.replace(before, **changes))


def published(before: RestService) -> RestService:
    if before.state == "retired":
        raise RecordConflict(
            f"Service {before.slug!r} version {before.version} is retired: register a new version instead.",
            code="service_retired",
        )
    return checked(msgspec.structs.replace(before, state="published"))


def deprecated(
    before: RestService, sunset_at_ms: int, successor: str | None, services: Mapping[str, RestService], now_ms: int
) -> RestService:
    if before.state in ("draft", "retired"):
        raise RecordConflict(
            f"Service {before.slug!r} version {before.version} is {before.state}: only a published service is "
            "deprecated.",
            code="invalid_state",
        )
    after = msgspec.structs.replace(
        before,
        state="deprecated",
        sunset_at_ms=sunset_at_ms,
        successor=before.successor if successor is None else successor,
        deprecated_at_ms=before.deprecated_at_ms or now_ms,
    )
    check_successor(after, services)
    return checked(after)


def retired(
    before: RestService, successor: str | None, services: Mapping[str, RestService], now_ms: int
) -> RestService:
    if before.state == "draft":
        raise RecordConflict(
            f"Service {before.slug!r} version {before.version} is a draft: delete it instead.", code="invalid_state"
        )
    after = msgspec.structs.replace(
        before,
        state="retired",
        successor=before.successor if successor is None else successor,
        deprecated_at_ms=before.deprecated_at_ms or now_ms,
    )
    check_successor(after, services)
    return checked(after)


def check_successor(service: RestService, services: Mapping[str, RestService]) -> None:
    """A successor names another service that exists (``slug`` or ``slug/v<N>``)."""
    if not service.successor:
        return
    slug, _, version = service.successor.partition("/v")
    key = service_key(slug, int(version) if version.isdigit() else 1)
    if key == service.key:
        raise InvalidRequest("A service is not its own successor.", code="invalid_successor")
    if key not in services:
        raise InvalidRequest(f"Successor {service.successor!r} is no registered service.", code="invalid_successor")


def openapi_too_large(size: int) -> InvalidRequest:
    return InvalidRequest(
        f"The OpenAPI document is {size} bytes or more; at most {MAX_UPLOAD_BYTES} are taken.",
        status=413,
        code="openapi_too_large",
    )


def openapi_document(document: bytes) -> bytes:
    """An uploaded or fetched document as it is kept: one JSON object with
    a ``paths`` object, at most ``MAX_UPLOAD_BYTES``."""
    if len(document) > MAX_UPLOAD_BYTES:
        raise openapi_too_large(len(document))
    try:
        doc = _decode_json(document)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRequest(f"The OpenAPI document is not JSON: {str(exc)[:200]}", code="invalid_openapi") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise InvalidRequest(
            "The OpenAPI document must be a JSON object with a 'paths' object.", code="invalid_openapi"
        )
    return document


def with_openapi(before: RestService, document: bytes, url: str = "") -> RestService:
    """The service with its new document (and where it was fetched from, if it was)."""
    return checked(msgspec.structs.replace(before, openapi=document, openapi_url=url or before.openapi_url))


def openapi_paths(document: bytes) -> int:
    """How many paths a kept document has (0 for none, or one that is not a document)."""
    if not document:
        return 0
    try:
        return len(_decode_paths(document).paths)
    except (msgspec.DecodeError, RecursionError):
        return 0
