"""An API's docs page, ``/portal/apis/<kind>/<name>``: generated from its
OpenAPI document (the gateway's own for model groups and prompt APIs, the
service's for a REST service; an MCP server's tools from its catalog), with
code samples and the try-it form.

The page finds the API among the catalog's entries for the person, so one
rule decides both what the catalog lists and which docs open: anything
else, another tenant's included, is a 404. The try-it form's script
(``static/portal.js``) calls the API itself from the browser with the key
the developer gives; the portal never sees a key's secret.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from ingress.portal import openapi_view, samples, views
from ingress.portal.catalog import entries_for, standing_label
from ingress.portal.entries import KINDS, Entry, sample_value
from ingress.portal.openapi_view import Operation
from schemas.errors import RecordNotFound
from schemas.mcp import tool_name
from schemas.rest import RestService, service_key
from services import pricing
from services.apis import openapi
from services.apis.table import APIS

# Which of the gateway's client APIs a model group answers.
EMBEDDING_PATHS = ("/v1/embeddings",)
CHAT_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens")
# Methods whose try-it sends a body.
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@cache
def client_api_document() -> dict[str, Any]:
    """The client APIs' part of the gateway's document: it changes only with the code."""
    return openapi.document(APIS, [])


def is_embedding_group(gateway: Any, name: str) -> bool:
    route = gateway.routes.items.get(name)
    catalog = pricing.load_catalog()
    modes = {catalog[d.catalog_model].mode for d in route.deployments if d.catalog_model in catalog} if route else set()
    return modes == {"embedding"}


def _find(entries: list[Entry], kind: str, name: str) -> Entry:
    found = next((e for e in entries if e.kind == kind and e.name == name), None) if kind in KINDS else None
    if found is None:
        raise RecordNotFound(f"No API {name!r} of kind {kind!r}.", code="api_not_found")
    return found


def _service(gateway: Any, name: str) -> RestService | None:
    slug, _, version = name.partition(".v")
    services = getattr(gateway, "rest_services", None)
    if services is None or (version and not version.isdigit()):
        return None
    return services.items.get(service_key(slug, int(version) if version else 1))


def model_page(gateway: Any, entry: Entry, base: str) -> dict[str, Any]:
    embeddings = is_embedding_group(gateway, entry.name)
    paths = EMBEDDING_PATHS if embeddings else CHAT_PATHS
    body = samples.embeddings_body(entry.name) if embeddings else samples.chat_body(entry.name)
    return {
        "operations": openapi_view.operations(client_api_document(), keep=lambda p: p in paths),
        "samples": samples.model_samples(base, entry.name, embeddings),
        "try_it": {
            "mode": "embeddings" if embeddings else "chat",
            "method": "POST",
            "path": paths[0],
            "model": entry.name,
            "body": json.dumps(body, indent=2, ensure_ascii=False),
        },
    }


def prompt_page(gateway: Any, entry: Entry, base: str) -> dict[str, Any]:
    published = [p for p in gateway.prompt_book.published() if p[0].api is not None and p[0].api.slug == entry.name]
    doc = openapi.document((), published)
    ops = openapi_view.operations(doc)
    variables: dict[str, Any] = {}
    if published:
        schema = openapi.variables_schema(published[0][1])
        variables = {name: sample_value(sub) for name, sub in schema["properties"].items()}
    return {
        "operations": ops,
        "samples": samples.prompt_samples(base, entry.name, variables),
        "try_it": {
            "mode": "prompt",
            "method": "POST",
            "path": f"/apis/{entry.name}",
            "body": json.dumps(variables, indent=2, ensure_ascii=False),
        },
    }


def _first_call(ops: list[Operation]) -> tuple[str, str, Any]:
    """What a try-it form starts with: the first GET's path, and the first
    example body the document gives (for when the developer picks POST)."""
    if not ops:
        return "GET", "", None
    op = next((o for o in ops if o.method == "GET"), ops[0])
    examples = (o.body.example for o in ops if o.body is not None and o.body.example)
    body = next((json.loads(e) for e in examples if _is_json(e)), None)
    return op.method, samples.fill_path(op.path), body


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def service_page(gateway: Any, entry: Entry, base: str) -> dict[str, Any]:
    service = _service(gateway, entry.name)
    if service is None:
        raise RecordNotFound(f"No API {entry.name!r} of kind 'service'.", code="api_not_found")
    prefix = "/services/" + service.slug + (f"/v{service.version}" if service.version != 1 else "")
    doc = openapi_view.parse(service.openapi)
    allowed = set(service.methods)
    ops = [o for o in openapi_view.operations(doc, prefix=prefix) if o.method in allowed]
    method, path, body = _first_call(ops)
    path = path or prefix + "/"
    title, version, description = openapi_view.info(doc)
    sample_body = body if method in BODY_METHODS else None
    return {
        "operations": ops,
        "document": {"title": title, "version": version, "description": description, "readable": doc is not None},
        "samples": samples.service_samples(base, method, path, sample_body),
        "try_it": {
            "mode": "service",
            "method": method,
            "methods": [m for m in service.methods if m != "OPTIONS"],
            "base_path": prefix + "/",
            "path": path.removeprefix(prefix + "/"),
            "body": json.dumps(body, indent=2, ensure_ascii=False) if body is not None else "",
            "price_pico_usd": service.price_pico_usd,
        },
    }


def mcp_page(gateway: Any, entry: Entry, base: str) -> dict[str, Any]:
    catalog = gateway.mcp_catalog.items.get(entry.name)
    tools = []
    for tool in sorted(catalog.tools if catalog else [], key=lambda t: t.name):
        if tool.name not in entry.tools:
            continue
        schema = openapi_view.parse(tool.input_schema)
        tools.append(
            {
                "name": tool_name(entry.name, tool.name),
                "title": openapi_view.text(tool.title, openapi_view.MAX_NAME),
                "description": openapi_view.text(tool.description),
                "read_only": bool(tool.annotations and tool.annotations.readOnlyHint),
                "arguments": openapi_view.tree(schema),
            }
        )
    first = tools[0]["name"] if tools else ""
    return {"operations": [], "tools": tools, "samples": samples.mcp_samples(base, first), "try_it": None}


_PAGES = {"model": model_page, "prompt": prompt_page, "service": service_page, "mcp": mcp_page}


async def api_response(
    request: Request, person: Any, kind: str, name: str, *, status: int = 200, **extra: Any
) -> Response:
    """The API's page for ``person``; ``extra``: more of the page's context
    (the access form's error and values, when it is shown again)."""
    entries = await entries_for(request, views.who_of(person))
    entry = _find(entries, kind, name.lstrip("/"))
    base = samples.base_url(request.url.scheme, request.headers.get("host"))
    context = _PAGES[entry.kind](request.app.state.gateway, entry, base)
    # A successor is linked when the person may open it (as in the catalog).
    successor = next((e.href for e in entries if e.kind == entry.kind and e.name == entry.successor), "")
    return views.page(
        request,
        "api.html",
        person,
        status=status,
        entry=entry,
        successor_href=successor,
        standing_label=standing_label,
        base=base,
        **context,
        **extra,
    )


@get("/apis/{kind:str}/{name:path}", include_in_schema=False)
async def api_page(request: Request, kind: FromPath[str], name: FromPath[str]) -> Response:
    person = await views.signed_in(request)
    return await api_response(request, person, kind, name)


ROUTES = [api_page]
