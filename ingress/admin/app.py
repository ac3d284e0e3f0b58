"""The admin API's Litestar app, mounted by the ingress under ``/admin/``."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar, Request, Response, Router, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from ingress.admin.analytics import Analytics
from ingress.admin.deps import DEPENDENCIES
from ingress.admin.keys import Keys
from ingress.admin.mcp_servers import McpServers
from ingress.admin.prompts import Prompts
from ingress.admin.services import Services
from ingress.admin.store import ControlStore
from ingress.admin.subscriptions import ApprovalRules, Subscriptions
from ingress.admin.tenants import Tenants
from ingress.admin.usage import Usage
from ingress.admin.users import Users
from ingress.http import error_body
from schemas.errors import ErrorType, GatewayError

log = logging.getLogger("sluice.admin")
PREFIX = "/admin/v1"
# Admin requests are small records; anything larger is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024
_TYPES = {
    400: ErrorType.INVALID_REQUEST,
    401: ErrorType.AUTHENTICATION,
    403: ErrorType.PERMISSION,
    404: ErrorType.NOT_FOUND,
    405: ErrorType.INVALID_REQUEST,
    409: ErrorType.INVALID_REQUEST,
    413: ErrorType.REQUEST_TOO_LARGE,
}


def _error(status: int, type_: str, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(type_, code, message), status_code=status, headers=headers)


def _gateway_error(_: Request, exc: GatewayError) -> Response:
    return _error(exc.status, exc.type.value, exc.code, exc.message)


def _validation_error(_: Request, exc: ValidationException) -> Response:
    problems = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or ""
            problems.append(f"{where}: {item.get('message')}" if where else str(item.get("message")))
    message = "; ".join(problems) if problems else str(exc.detail)
    return _error(400, ErrorType.INVALID_REQUEST.value, "invalid_request", message)


def _http_error(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    type_ = _TYPES.get(status, ErrorType.SERVER).value
    code = {404: "unknown_url", 405: "method_not_allowed", 413: "request_too_large"}.get(status, "http_error")
    return _error(status, type_, code, str(exc.detail))


def _not_utf8(_: Request, exc: UnicodeDecodeError) -> Response:
    # Litestar decodes the body as UTF-8 before msgspec sees it, and lets the error out.
    return _error(
        400, ErrorType.INVALID_REQUEST.value, "invalid_encoding", f"The body is not valid UTF-8: {exc.reason}."
    )


def _crash(request: Request, exc: Exception) -> Response:
    log.exception("admin API failed on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, ErrorType.SERVER.value, "internal_error", "The admin API failed on this request.")


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request) -> dict[str, Any]:
    return request.app.openapi_schema.to_schema()


def build(gateway: Any, store: ControlStore) -> Litestar:
    api = Router(
        path=PREFIX,
        route_handlers=[
            Tenants,
            Keys,
            Subscriptions,
            ApprovalRules,
            Prompts,
            McpServers,
            Services,
            Users,
            Usage,
            Analytics,
            openapi_json,
        ],
        dependencies=DEPENDENCIES,
    )
    app = Litestar(
        route_handlers=[api],
        openapi_config=OpenAPIConfig(
            title="Sluice admin API",
            version="1",
            description=(
                "Tenants, API keys, subscriptions and approval, limits and budgets, prompts and their APIs, "
                "upstream MCP servers, REST services, the developer portal's people."
            ),
            # Served by ``openapi_json`` below: Litestar's own OpenAPI routes
            # would claim every unknown path under the prefix.
            render_plugins=[],
            security=[{"admin_key": []}],
            components=Components(
                security_schemes={
                    "admin_key": SecurityScheme(
                        type="http", scheme="bearer", description="A gateway or tenant admin key."
                    )
                }
            ),
        ),
        exception_handlers={
            GatewayError: _gateway_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            # Unknown paths and methods are raised before routing reaches a
            # handler; Litestar finds their handlers by status code.
            404: _http_error,
            405: _http_error,
            UnicodeDecodeError: _not_utf8,
            Exception: _crash,
        },
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
    )
    app.state.gateway = gateway
    app.state.store = store
    return app
