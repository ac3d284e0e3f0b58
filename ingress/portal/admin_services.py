"""REST services in the portal, ``/portal/admin/services``: a gateway admin
lists every service version (its state and owner), registers one (its
instances, methods, timeouts, caps, approval, price, and its OpenAPI
document uploaded or fetched from a URL), changes one the admin API or the
portal made, and gives it a new OpenAPI document. Anyone else gets the
answer an unknown page gets (a 404): a tenant admin never learns the page
is there.

The rules are the admin API's own (``/admin/v1/services``): the form's
fields become its input schema (``services.portal_service_form``), then a
record by ``services.rest_records`` (which ends in ``rest_config.problem``);
a document is fetched by ``ingress.admin.services.fetch_document``. A form
that breaks a rule is shown again with what was wrong, next to its input.
Lifecycle moves (publish, deprecate, retire) are the lifecycle page's.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from ingress.admin.services import fetch_document, service_out
from ingress.portal import views
from ingress.portal.forms import (
    FormError,
    back_to,
    is_inline,
    kept,
    now_ms,
    posted,
    posted_with_files,
    services_of,
    signed_in,
    when,
)
from schemas.admin_services import ServiceCreate, ServiceUpdate
from schemas.errors import GatewayError, RecordNotFound
from schemas.rest import ALL_METHODS, SLUG, RestService
from services import control, portal_service_form, rest_records
from services.portal_scope import Who
from services.portal_service_form import FieldError, ServiceForm

SERVICES = f"{views.PREFIX}/admin/services"
_DONE = {
    "created": "Service registered.",
    "updated": "Service changed.",
    "openapi": "OpenAPI document saved.",
}
# A record's id as the lifecycle page names it: ``<slug>.v<N>``.
_RECORD_ID = re.compile(rf"{SLUG.pattern}\.v[1-9][0-9]{{0,6}}")


async def _gateway_admin(request: Request) -> tuple[Any, Who]:
    person, who = await signed_in(request)
    if not who.is_gateway_admin:
        raise NotFoundException()  # answered as a page that does not exist
    return person, who


def _page(request: Request, person: Any, template: str, *, status: int = 200, **context: Any) -> Response:
    done = _DONE.get(request.query_params.get("done", ""), "")
    return views.page(request, template, person, status=status, section="services", done=done, **context)


def _form_context(values: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "methods": ALL_METHODS,
        "instance_rows": portal_service_form.rows_shown(values, "instance"),
        "header_rows": portal_service_form.rows_shown(values, "header"),
    }


def _wrong(form: str, exc: GatewayError, parsed: ServiceForm | None, default: str) -> FormError:
    field = exc.field if isinstance(exc, FieldError) else portal_service_form.field_of(exc.message, parsed)
    return FormError(form, exc.message, field or default)


async def _document(fields: dict[str, str], files: dict[str, bytes], url: str) -> tuple[bytes, str]:
    """The OpenAPI document the form gives: the file uploaded, or else the
    one at ``url`` when the form asks for it to be fetched; (b"", "") for none.
    The URL is returned when the document came from it."""
    upload = files.get("openapi_file", b"")
    try:
        if upload:
            return rest_records.openapi_document(upload), ""
        if not fields.get("fetch_openapi"):
            return b"", ""
        if not url:
            raise FieldError("openapi_url", "Give the URL to fetch the OpenAPI document from.")
        return rest_records.openapi_document(await fetch_document(url)), url
    except FieldError:
        raise
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        # A fetch that failed (a 502 to the admin API) is the form's URL to fix here.
        status = exc.status if exc.status < 500 else 400
        raise FieldError("openapi_file" if upload else "openapi_url", exc.message, status=status) from None


async def _record(request: Request, record_id: str) -> tuple[RestService, int]:
    if not _RECORD_ID.fullmatch(record_id):
        raise RecordNotFound(f"No service {record_id[:128]!r}.")
    return await services_of(request).get(record_id)


# --- the list, and a new service ------------------------------------------------------


@get("/admin/services", include_in_schema=False)
async def list_services(request: Request) -> Response:
    person, _ = await _gateway_admin(request)
    services = sorted(services_of(request).all(), key=lambda s: (s.slug, s.version))
    rows = [{"out": service_out(s), "created": when(s.created_at_ms)} for s in services]
    return _page(request, person, "admin_services.html", rows=rows)


def _new_page(request: Request, person: Any, *, status: int = 200, **context: Any) -> Response:
    values = context.pop("values", None) or portal_service_form.new_values()
    return _page(request, person, "admin_service_new.html", status=status, **_form_context(values), **context)


@get("/admin/services/new", include_in_schema=False)
async def new_service(request: Request) -> Response:
    person, _ = await _gateway_admin(request)
    return _new_page(request, person)


@post("/admin/services", include_in_schema=False, status_code=303)
async def create_service(request: Request) -> Response:
    person, who = await _gateway_admin(request)
    fields, files = await posted_with_files(request, person)
    parsed: ServiceForm | None = None
    try:
        parsed = portal_service_form.parse(fields, creating=True)
        data = portal_service_form.converted(parsed.data, ServiceCreate)
        service = rest_records.created(data, now_ms())
        document, url = await _document(fields, files, service.openapi_url)
        if document:
            service = rest_records.with_openapi(service, document, url)
        await services_of(request).create(service.key, service, who.actor())
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        wrong = _wrong("service", exc, parsed, "slug")
        return _new_page(request, person, status=exc.status, values=kept(fields), form_error=wrong)
    return back_to(f"{SERVICES}/{service.key}", "created")


# --- one service: its facts, a change, its document ----------------------------------


def _service_page(
    request: Request, person: Any, service: RestService, *, status: int = 200, **context: Any
) -> Response:
    values = context.pop("values", None) or portal_service_form.values_of(service)
    docs = f"{views.PREFIX}/apis/service/{service.slug}" + (f".v{service.version}" if service.version != 1 else "")
    return _page(
        request,
        person,
        "admin_service.html",
        status=status,
        service=service_out(service),
        created=when(service.created_at_ms),
        docs_href=docs if service.state in ("published", "deprecated") else "",
        **_form_context(values),
        **context,
    )


@get("/admin/services/{record_id:str}", include_in_schema=False)
async def show_service(request: Request, record_id: FromPath[str]) -> Response:
    person, _ = await _gateway_admin(request)
    service, _ = await _record(request, record_id)
    return _service_page(request, person, service)


@post("/admin/services/{record_id:str}", include_in_schema=False, status_code=303)
async def update_service(request: Request, record_id: FromPath[str]) -> Response:
    person, who = await _gateway_admin(request)
    fields = await posted(request, person)
    before, revision = await _record(request, record_id)
    parsed: ServiceForm | None = None
    try:
        control.require_api_owned(before.owner, "service", before.key)
        parsed = portal_service_form.parse(fields, creating=False)
        after = rest_records.updated(before, portal_service_form.converted(parsed.data, ServiceUpdate))
        if after != before:
            await services_of(request).replace(before.key, after, revision, who.actor(), "update", before)
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        wrong = _wrong("service", exc, parsed, "title")
        return _service_page(request, person, before, status=exc.status, values=kept(fields), form_error=wrong)
    return back_to(f"{SERVICES}/{before.key}", "updated")


@post("/admin/services/{record_id:str}/openapi", include_in_schema=False, status_code=303)
async def give_openapi(request: Request, record_id: FromPath[str]) -> Response:
    """A new OpenAPI document: the file uploaded, or else the one fetched
    from the URL given (or the service's ``openapi_url``)."""
    person, who = await _gateway_admin(request)
    fields, files = await posted_with_files(request, person)
    records = services_of(request)
    before, _ = await _record(request, record_id)
    try:
        control.require_api_owned(before.owner, "service", before.key)
        url = fields.get("openapi_url", "").strip() or before.openapi_url
        document, fetched_from = await _document({"fetch_openapi": "on"}, files, url)
        # Read again: a fetch takes a while, and the record may have changed meanwhile.
        before, revision = await _record(request, record_id)
        control.require_api_owned(before.owner, "service", before.key)
        after = rest_records.with_openapi(before, document, fetched_from)
        if after != before:
            action = "openapi fetch" if fetched_from else "openapi"
            await records.replace(before.key, after, revision, who.actor(), action, before)
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        wrong = _wrong("openapi", exc, None, "openapi_file")
        return _service_page(
            request, person, before, status=exc.status, form_error=wrong, openapi_url=fields.get("openapi_url", "")
        )
    return back_to(f"{SERVICES}/{before.key}", "openapi")


ROUTES = [list_services, new_service, create_service, show_service, update_service, give_openapi]
