"""/admin/v1/analytics/<name>: the named analytics queries over HTTP. A
gateway admin runs any; a tenant admin those that narrow to a tenant, always
narrowed to its own."""

from __future__ import annotations

from litestar import Controller, Request, get

from analytics.queries import NAMED
from ingress.admin.deps import ERROR_RESPONSES
from ingress.admin.store import ControlStore
from schemas.admin import NamedQueryInfo, QueryOut
from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound
from services import control
from services.control import Actor


class Analytics(Controller):
    path = "/analytics"
    tags = ["analytics"]

    @get("/", responses=ERROR_RESPONSES)
    async def list_queries(self, actor: Actor) -> list[NamedQueryInfo]:
        return [
            NamedQueryInfo(name, q.description, {k: t for k, (t, _) in q.params.items()}, q.per_tenant)
            for name, q in NAMED.items()
            if actor.is_gateway_admin or q.per_tenant
        ]

    @get("/{name:str}", responses=ERROR_RESPONSES)
    async def run_query(self, name: str, request: Request, actor: Actor, store: ControlStore) -> QueryOut:
        """The query's parameters come as query-string parameters."""
        named = NAMED.get(name)
        if named is None:
            raise RecordNotFound(f"No named query {name!r}; GET /admin/v1/analytics lists them.")
        params: dict[str, int | str] = {}
        for key, value in request.query_params.items():
            if key not in named.params:
                raise InvalidRequest(f"Query {name!r} takes no parameter {key!r}; it takes: {', '.join(named.params)}.")
            kind = named.params[key][0]
            if kind.startswith(("UInt", "Int")) and not value.lstrip("-").isdigit():
                raise InvalidRequest(f"Parameter {key!r} must be an integer.")
            params[key] = value
        if not actor.is_gateway_admin:
            if not named.per_tenant:
                raise PermissionDenied(f"Query {name!r} spans every tenant: a gateway admin's.", code="not_an_admin")
            params["tenant_id"] = control.tenant_asked_for(actor, str(params.get("tenant_id") or "") or None)
        result = await store.named_query(name, params)
        return QueryOut(name=name, columns=result.columns, rows=result.rows)
