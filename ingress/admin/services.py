"""/admin/v1/services: gateway admins register REST services, change them,
move them through their lifecycle and give them their OpenAPI document
(uploaded, or fetched from the service); any admin reads them (a tenant
admin sees no drafts, as callers do not).

A service is addressed by its slug and ``?version=N`` (1 when left out). One
the config file made is changed there (a change here would be undone at the
next start); one made here is never touched by a seed.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import Parameter

from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import Deleted
from schemas.admin_services import (
    Deprecate,
    OpenApiFetch,
    Retire,
    ServiceCreate,
    ServiceOut,
    ServiceUpdate,
    Slug,
)
from schemas.errors import InvalidRequest, RecordNotFound, UpstreamError
from schemas.rest import RestService, service_key
from services import control, rest_config, rest_policy, rest_records
from services.control import Actor, time_of

# ``?version=N``: Litestar checks a query parameter's bounds given this way.
Version = Annotated[
    int, Parameter(ge=1, le=rest_config.MAX_VERSION, description="The service's version (1 when left out).")
]
# Fetching a document: the whole exchange within this, and no redirect
# followed (a redirect is the admin's to resolve, not the gateway's to chase).
FETCH_TIMEOUT_S = 10.0


def service_out(s: RestService) -> ServiceOut:
    return ServiceOut(
        slug=s.slug,
        version=s.version,
        path=rest_policy.where(s.slug, s.version),
        title=s.title,
        description=s.description,
        instances=s.instances,
        methods=list(s.methods),
        connect_timeout_s=s.connect_timeout_s,
        read_timeout_s=s.read_timeout_s,
        add_headers=s.add_headers,
        strip_headers=s.strip_headers,
        max_request_bytes=s.max_request_bytes,
        max_response_bytes=s.max_response_bytes,
        requires_approval=s.requires_approval,
        rpm=s.rpm,
        max_parallel=s.max_parallel,
        price_pico_usd=s.price_pico_usd,
        redact_json=s.redact_json,
        openapi_url=s.openapi_url,
        openapi_bytes=len(s.openapi),
        openapi_paths=rest_records.openapi_paths(s.openapi),
        state=s.state,
        successor=s.successor,
        sunset_at=time_of(s.sunset_at_ms),
        deprecated_at=time_of(s.deprecated_at_ms),
        created_at=time_of(s.created_at_ms),
        owner=s.owner,
    )


def _visible(actor: Actor, service: RestService) -> bool:
    return actor.is_gateway_admin or service.state != "draft"


async def _read(store: ControlStore, actor: Actor, slug: str, version: int) -> RestService:
    service, _ = await store.services.get(service_key(slug, version))
    if not _visible(actor, service):
        raise RecordNotFound(f"No service {service_key(slug, version)!r}.")
    return service


async def _change(store: ControlStore, actor: Actor, slug: str, version: int, what: str) -> tuple[RestService, int]:
    """The record a gateway admin may change: one the admin API made."""
    control.require_gateway_admin(actor, what)
    key = service_key(slug, version)
    before, revision = await store.services.get(key)
    control.require_api_owned(before.owner, "service", key)
    return before, revision


async def _save(
    store: ControlStore, actor: Actor, before: RestService, revision: int, after: RestService, action: str
) -> ServiceOut:
    if after != before:
        await store.services.replace(after.key, after, revision, actor, action, before)
    return service_out(after)


async def fetch_document(url: str) -> bytes:
    """The document at ``url`` (http or https), read within
    ``FETCH_TIMEOUT_S`` and no further than ``rest_records.MAX_UPLOAD_BYTES``."""
    if found := rest_config.url_problem(url, "url", base=False):
        raise InvalidRequest(found, code="invalid_openapi_url")
    import httpx  # only an admin fetching a document needs it in the ingress

    cap = rest_records.MAX_UPLOAD_BYTES
    parts: list[bytes] = []
    try:
        async with (
            asyncio.timeout(FETCH_TIMEOUT_S),
            httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url, headers={"accept": "application/json"}) as resp,
        ):
            if resp.status_code != 200:
                raise UpstreamError(
                    f"{url[:200]} answered {resp.status_code}, not the document.", code="openapi_fetch_failed"
                )
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise rest_records.openapi_too_large(int(declared))
            size = 0
            async for part in resp.aiter_bytes():
                size += len(part)
                if size > cap:
                    raise rest_records.openapi_too_large(size)
                parts.append(part)
    except TimeoutError:
        raise UpstreamError(
            f"{url[:200]} did not send the document within {FETCH_TIMEOUT_S:g} s.", code="openapi_fetch_failed"
        ) from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"Could not fetch {url[:200]}: {exc!r}"[:500], code="openapi_fetch_failed") from None
    return b"".join(parts)


class Services(Controller):
    path = "/services"
    tags = ["services"]

    @get("/", responses=ERROR_RESPONSES)
    async def list_services(self, actor: Actor, store: ControlStore) -> list[ServiceOut]:
        services = sorted(store.services.all(), key=lambda s: (s.slug, s.version))
        return [service_out(s) for s in services if _visible(actor, s)]

    @post("/", responses=ERROR_RESPONSES)
    async def create_service(self, data: ServiceCreate, actor: Actor, store: ControlStore) -> ServiceOut:
        """Registers a service (a draft unless ``state`` says otherwise);
        its OpenAPI document comes after (``PUT .../openapi`` or ``POST .../openapi/fetch``)."""
        control.require_gateway_admin(actor, "register services")
        service = rest_records.created(data, now_ms())
        await store.services.create(service.key, service, actor)
        return service_out(service)

    @get("/{slug:str}", responses=ERROR_RESPONSES)
    async def get_service(self, slug: Slug, actor: Actor, store: ControlStore, version: Version = 1) -> ServiceOut:
        return service_out(await _read(store, actor, slug, version))

    @patch("/{slug:str}", responses=ERROR_RESPONSES)
    async def update_service(
        self, slug: Slug, data: ServiceUpdate, actor: Actor, store: ControlStore, version: Version = 1
    ) -> ServiceOut:
        before, revision = await _change(store, actor, slug, version, "change services")
        return await _save(store, actor, before, revision, rest_records.updated(before, data), "update")

    @delete("/{slug:str}", status_code=200, responses=ERROR_RESPONSES)
    async def delete_service(self, slug: Slug, actor: Actor, store: ControlStore, version: Version = 1) -> Deleted:
        before, revision = await _change(store, actor, slug, version, "remove services")
        await store.services.delete(before.key, revision, actor, before)
        return Deleted(id=before.key)

    @post("/{slug:str}/publish", status_code=200, responses=ERROR_RESPONSES)
    async def publish_service(self, slug: Slug, actor: Actor, store: ControlStore, version: Version = 1) -> ServiceOut:
        before, revision = await _change(store, actor, slug, version, "publish services")
        return await _save(store, actor, before, revision, rest_records.published(before), "publish")

    @post("/{slug:str}/deprecate", status_code=200, responses=ERROR_RESPONSES)
    async def deprecate_service(
        self, slug: Slug, data: Deprecate, actor: Actor, store: ControlStore, version: Version = 1
    ) -> ServiceOut:
        before, revision = await _change(store, actor, slug, version, "deprecate services")
        sunset = control.ms_of(data.sunset_at) if data.sunset_at is not None else before.sunset_at_ms
        after = rest_records.deprecated(before, sunset, data.successor, store.services.mirror.items, now_ms())
        return await _save(store, actor, before, revision, after, "deprecate")

    @post("/{slug:str}/retire", status_code=200, responses=ERROR_RESPONSES)
    async def retire_service(
        self, slug: Slug, data: Retire, actor: Actor, store: ControlStore, version: Version = 1
    ) -> ServiceOut:
        before, revision = await _change(store, actor, slug, version, "retire services")
        after = rest_records.retired(before, data.successor, store.services.mirror.items, now_ms())
        return await _save(store, actor, before, revision, after, "retire")

    @get("/{slug:str}/openapi", responses=ERROR_RESPONSES)
    async def get_openapi(self, slug: Slug, actor: Actor, store: ControlStore, version: Version = 1) -> Response:
        """The service's OpenAPI document, as uploaded or fetched."""
        service = await _read(store, actor, slug, version)
        if not service.openapi:
            raise RecordNotFound(f"Service {service.key!r} has no OpenAPI document yet.", code="no_openapi")
        return Response(service.openapi, media_type="application/json")

    @put(
        "/{slug:str}/openapi",
        responses=ERROR_RESPONSES,
        request_max_body_size=rest_records.MAX_UPLOAD_BYTES,
    )
    async def put_openapi(
        self, slug: Slug, request: Request, actor: Actor, store: ControlStore, version: Version = 1
    ) -> ServiceOut:
        """Upload the document: the body is the OpenAPI document itself (JSON, at most 1 MB)."""
        before, revision = await _change(store, actor, slug, version, "give services their documents")
        document = rest_records.openapi_document(await request.body())
        after = rest_records.with_openapi(before, document)
        return await _save(store, actor, before, revision, after, "openapi")

    @post("/{slug:str}/openapi/fetch", status_code=200, responses=ERROR_RESPONSES)
    async def fetch_openapi(
        self, slug: Slug, actor: Actor, store: ControlStore, data: OpenApiFetch | None = None, version: Version = 1
    ) -> ServiceOut:
        """Fetch the document from ``url`` (kept as the service's
        ``openapi_url``) or from the ``openapi_url`` it has: http(s), within
        10 s, at most 1 MB, no redirects followed."""
        before, _ = await _change(store, actor, slug, version, "give services their documents")
        url = (data.url if data is not None else "") or before.openapi_url
        if not url:
            raise InvalidRequest("The service has no openapi_url: send one as 'url'.", code="missing_openapi_url")
        document = rest_records.openapi_document(await fetch_document(url))
        # Read again: the fetch took a while, and the record may have changed meanwhile.
        before, revision = await _change(store, actor, slug, version, "give services their documents")
        after = rest_records.with_openapi(before, document, url)
        return await _save(store, actor, before, revision, after, "openapi fetch")
