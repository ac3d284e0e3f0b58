"""MCP's operations for one authenticated caller, whichever door it came in
by: ``/mcp`` (the SDK's server calls these from its handlers) and
``sluice.v1.in.mcp`` (``ingress.mcp_bus``). Both answer with the SDK's own
result types, so a caller sees the same JSON from either.

Listing reads this process's mirrors (the servers, their catalogs, the
prompt APIs) and shows only what ``services.mcp_access`` lets the caller
use. A call is checked here by the same rule first, so nothing is
published for a tool the caller cannot see, then goes through the pipeline
as an envelope of api "mcp" (policy checks the key, approval, limits and
budget again, authoritatively); its ``Final.tool_result`` is the answer.

Names, as callers see them:
* a server's tool or prompt: ``<server>__<name>`` (``schemas.mcp.tool_name``);
* a prompt API as a tool: ``prompt__<slug>``, its variables as the input
  schema (``prompt`` is therefore no name for an MCP server);
* a server's resource: ``sluice-mcp://<server>/<the server's own URI>``,
  its name ``<server>__<name>``; contents read come back under that URI.

Errors are JSON-RPC errors whose message says what is wrong and whose
``data`` carries the gateway's ``status``, ``type`` and ``code`` (and the
request id, ``retry_after_s``): a caller's mistake (400, 404, 413, 422) is
-32602 (invalid params, as MCP says for an unknown tool), a refusal or limit
(401, 403, 408, 409, 410, 429) is -32010, a gateway or upstream failure
(5xx) -32603.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as mt
import msgspec
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, ErrorData
from pydantic import ValidationError

from ingress.gateway import Gateway
from ingress.prompt_call import PromptCall
from ingress.session import BusSession, client_closed
from schemas import subjects
from schemas.control import ApiKey, Tenant
from schemas.envelope import Origin
from schemas.errors import (
    GatewayError,
    InvalidRequest,
    PermissionDenied,
    RecordNotFound,
    RequestTooLarge,
    UpstreamError,
)
from schemas.ids import new_id
from schemas.mcp import (
    PROMPT_NAMESPACE,
    SERVER_NAME,
    CatalogTool,
    McpCall,
    McpServer,
    ServerCatalog,
    split_name,
    tool_name,
)
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Failure, Final
from services import mcp_access, policy, prompt_api
from services.apis.openapi import variables_schema
from services.keys import hash_key, key_from_header

log = logging.getLogger("sluice.ingress.mcp")

# Prompt APIs are offered as tools under this prefix.
PROMPT_TOOLS = PROMPT_NAMESPACE
PROMPT_TOOL_PREFIX = PROMPT_TOOLS + "__"
# Resources are listed under URIs of this scheme: the server, then its own URI.
RESOURCE_SCHEME = "sluice-mcp://"
# A call's arguments, as JSON, may be at most this large.
MAX_ARGUMENT_BYTES = 1 << 20
# Longer names are refused before anything quotes or records them.
MAX_NAME_CHARS = 256
MAX_URI_CHARS = 2048
# The JSON-RPC error code of a refusal or a limit (implementation-defined band).
GATEWAY_REFUSED = -32010

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the key (by the ingress's own mirror), the header it came
    in (passed on: policy authenticates it again), and the door."""

    key: ApiKey
    authorization: str
    # sha256 of the secret presented: an MCP session is continued only by it.
    secret_sha256: str
    origin: Origin
    traceparent: str = ""


class CallFailed(Exception):
    """A call that ended without a result: its Failure, from a stage or from here."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def authenticate(gw: Gateway, authorization: str | None, origin: Origin, traceparent: str = "") -> Caller:
    """The caller of this key header; AuthenticationFailed (401) if none is."""
    key = policy.authenticate(authorization, gw.keys.by_hash, time.time_ns() // 1_000_000)
    secret = key_from_header(authorization) or ""
    return Caller(key, authorization or "", hash_key(secret), origin, traceparent)


def rpc_code(status: int) -> int:
    if status in (400, 404, 413, 422):
        return INVALID_PARAMS
    if status >= 500:
        return INTERNAL_ERROR
    return GATEWAY_REFUSED


def error_data(
    status: int, type_: str, code: str, message: str, retry_after_s: float | None = None, request_id: str = ""
) -> ErrorData:
    data: dict[str, Any] = {"status": status, "type": type_, "code": code}
    if retry_after_s is not None:
        data["retry_after_s"] = retry_after_s
    if request_id:
        data["request_id"] = request_id
    return ErrorData(code=rpc_code(status), message=message, data=data)


def error_of(exc: GatewayError | CallFailed) -> ErrorData:
    if isinstance(exc, CallFailed):
        f = exc.failure
        return error_data(f.status, f.type, f.code, f.message, f.retry_after_s, f.id)
    return error_data(exc.status, exc.type.value, exc.code, exc.message, exc.retry_after_s)


def encode_arguments(arguments: Mapping[str, Any] | None) -> bytes:
    """The arguments as a JSON object, within the size limit."""
    if arguments is None:
        return b"{}"
    if not isinstance(arguments, Mapping):
        raise InvalidRequest("'arguments' must be a JSON object.", code="invalid_arguments")
    try:
        raw = _json.encode(arguments)
    except (OverflowError, TypeError):  # an integer past 64 bits: JSON has no limit, msgspec does
        raw = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_ARGUMENT_BYTES:
        raise RequestTooLarge(
            f"The call's arguments are {len(raw)} bytes as JSON; at most {MAX_ARGUMENT_BYTES} are allowed.",
            code="arguments_too_large",
        )
    return raw


def resource_uri(server: str, uri: str) -> str:
    return f"{RESOURCE_SCHEME}{server}/{uri}"


def split_resource_uri(uri: str) -> tuple[str, str] | None:
    """``(server, the server's URI)`` of a URI this gateway listed; None otherwise."""
    if not uri.startswith(RESOURCE_SCHEME):
        return None
    server, sep, own = uri[len(RESOURCE_SCHEME) :].partition("/")
    if not sep or not own or SERVER_NAME.fullmatch(server) is None:
        return None
    return server, own


def _object_schema(raw: bytes, *, required: bool) -> dict[str, Any] | None:
    """A schema as MCP (through 2025-11-25) takes it: an object at the root.
    A server's schema that is none is left out (an output schema) or makes
    the tool unlisted (an input schema: None)."""
    try:
        schema = json.loads(raw) if raw else None
    except ValueError:
        schema = None
    if not isinstance(schema, dict):
        return {"type": "object"} if required else None
    if "type" not in schema:
        return {**schema, "type": "object"}
    return schema if schema["type"] == "object" else None


def _tool(server: str, t: CatalogTool) -> mt.Tool | None:
    schema = _object_schema(t.input_schema, required=True)
    if schema is None:
        return None
    hints = t.annotations
    return mt.Tool(
        name=tool_name(server, t.name),
        title=t.title or None,
        description=t.description or None,
        input_schema=schema,
        output_schema=_object_schema(t.output_schema, required=False) if t.output_schema else None,
        annotations=mt.ToolAnnotations(
            title=hints.title,
            read_only_hint=hints.readOnlyHint,
            destructive_hint=hints.destructiveHint,
            idempotent_hint=hints.idempotentHint,
            open_world_hint=hints.openWorldHint,
        )
        if hints is not None
        else None,
    )


class McpCalls:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        # Each server's tools in MCP's shape, made once per catalog revision
        # (the mirror replaces a catalog whole when it changes).
        self._shaped: dict[str, tuple[ServerCatalog, dict[str, mt.Tool]]] = {}

    # -- who may use what

    def _tenant(self, caller: Caller) -> Tenant | None:
        return self.gw.mirrors[subjects.KV_TENANTS].items.get(caller.key.tenant_id)

    def _servers(self) -> Mapping[str, McpServer]:
        return self.gw.mcp_servers.items

    def _catalogs(self) -> list[ServerCatalog]:
        servers = self._servers()
        return sorted((c for c in self.gw.mcp_catalog.items.values() if c.server in servers), key=lambda c: c.server)

    def _shaped_tools(self, catalog: ServerCatalog) -> dict[str, mt.Tool]:
        held = self._shaped.get(catalog.server)
        if held is not None and held[0] is catalog:
            return held[1]
        shaped = {t.name: s for t in catalog.tools if (s := _tool(catalog.server, t)) is not None}
        self._shaped[catalog.server] = (catalog, shaped)
        return shaped

    def _server_for(self, caller: Caller, server: str, what: str) -> tuple[McpServer, ServerCatalog]:
        """The server of a prompt or resource, if the caller may use it."""
        record = self._servers().get(server)
        catalog = self.gw.mcp_catalog.items.get(server)
        if record is None or catalog is None:
            raise RecordNotFound(f"{what} does not exist or is not available now.", code="mcp_server_not_found")
        if not mcp_access.server_named(self._tenant(caller), caller.key, server):
            raise PermissionDenied(
                f"Key {caller.key.id!r} may not use MCP server {server!r}.", code="server_not_allowed"
            )
        return record, catalog

    def _prompt_apis(self, caller: Caller) -> list[mt.Tool]:
        subscriptions = list(self.gw.mirrors[subjects.KV_SUBSCRIPTIONS].items.values())
        tools = []
        for prompt, version, output_schema in self.gw.prompt_book.published():
            api = prompt.api
            assert api is not None
            try:
                prompt_api.check_caller(api.slug, api, caller.key, False, subscriptions)
            except GatewayError:
                continue
            out = output_schema if isinstance(output_schema, dict) and output_schema.get("type") == "object" else None
            tools.append(
                mt.Tool(
                    name=PROMPT_TOOL_PREFIX + api.slug,
                    description=f"Prompt API {api.slug!r} (prompt {prompt.name!r}, version {version.version}).",
                    input_schema=variables_schema(version),
                    output_schema=out,
                )
            )
        return tools

    # -- listing

    def list_tools(self, caller: Caller) -> mt.ListToolsResult:
        tenant = self._tenant(caller)
        tools = []
        for server, t in mcp_access.visible_tools(tenant, caller.key, self._servers(), self._catalogs()):
            shaped = self._shaped_tools(self.gw.mcp_catalog.items[server]).get(t.name)
            if shaped is not None:
                tools.append(shaped)
        return mt.ListToolsResult(tools=tools + self._prompt_apis(caller))

    def list_prompts(self, caller: Caller) -> mt.ListPromptsResult:
        tenant = self._tenant(caller)
        prompts = [
            mt.Prompt(
                name=tool_name(c.server, p.name),
                title=p.title or None,
                description=p.description or None,
                arguments=[
                    mt.PromptArgument(name=a.name, description=a.description or None, required=a.required)
                    for a in p.arguments
                ],
            )
            for c in self._catalogs()
            if mcp_access.server_named(tenant, caller.key, c.server)
            for p in c.prompts
        ]
        return mt.ListPromptsResult(prompts=prompts)

    def list_resources(self, caller: Caller) -> mt.ListResourcesResult:
        tenant = self._tenant(caller)
        resources = [
            mt.Resource(
                uri=resource_uri(c.server, r.uri),
                name=tool_name(c.server, r.name),
                title=r.title or None,
                description=r.description or None,
                mime_type=r.mime_type or None,
            )
            for c in self._catalogs()
            if mcp_access.server_named(tenant, caller.key, c.server)
            for r in c.resources
        ]
        return mt.ListResourcesResult(resources=resources)

    # -- calls

    async def call_tool(self, caller: Caller, name: str, arguments: Mapping[str, Any] | None) -> mt.CallToolResult:
        received_ns = time.time_ns()
        request_id = new_id(received_ns)
        if name.startswith(PROMPT_TOOL_PREFIX):
            return await self._call_prompt_api(caller, name[len(PROMPT_TOOL_PREFIX) :], arguments, request_id)
        call = McpCall(server="", name=name[:MAX_NAME_CHARS])
        try:
            if len(name) > MAX_NAME_CHARS:
                raise InvalidRequest(f"Tool names are at most {MAX_NAME_CHARS} characters.", code="tool_not_found")
            parts = split_name(name)
            if parts is None:
                raise RecordNotFound(
                    f"Tool {name!r} does not exist: tools are named '<server>__<tool>' (see tools/list).",
                    code="tool_not_found",
                )
            call.server, call.name = parts
            server = self._servers().get(call.server)
            catalog = self.gw.mcp_catalog.items.get(call.server)
            if server is None:
                raise RecordNotFound(f"Tool {name!r} does not exist (see tools/list).", code="tool_not_found")
            mcp_access.check_tool(self._tenant(caller), caller.key, server, catalog, call.name)
            call.arguments = encode_arguments(arguments)
        except GatewayError as exc:
            raise self._refused(caller, call, request_id, received_ns, exc) from None
        assert server is not None
        final = await self._run(caller, call, request_id, received_ns, server)
        return _result(mt.CallToolResult, final, "CallToolResult")

    async def get_prompt(self, caller: Caller, name: str, arguments: Mapping[str, str] | None) -> mt.GetPromptResult:
        received_ns = time.time_ns()
        request_id = new_id(received_ns)
        call = McpCall(server="", method="prompts/get", name=name[:MAX_NAME_CHARS])
        try:
            parts = split_name(name) if len(name) <= MAX_NAME_CHARS else None
            if parts is None:
                raise RecordNotFound(
                    f"Prompt {call.name!r} does not exist: prompts are named '<server>__<prompt>' (see prompts/list).",
                    code="prompt_not_found",
                )
            call.server, call.name = parts
            server, catalog = self._server_for(caller, call.server, f"Prompt {name!r}")
            if not any(p.name == call.name for p in catalog.prompts):
                raise RecordNotFound(f"Prompt {name!r} does not exist (see prompts/list).", code="prompt_not_found")
            call.arguments = encode_arguments(arguments)
        except GatewayError as exc:
            raise self._refused(caller, call, request_id, received_ns, exc) from None
        final = await self._run(caller, call, request_id, received_ns, server)
        return _result(mt.GetPromptResult, final, "GetPromptResult")

    async def read_resource(self, caller: Caller, uri: str) -> mt.ReadResourceResult:
        received_ns = time.time_ns()
        request_id = new_id(received_ns)
        call = McpCall(server="", method="resources/read", name=uri[:MAX_URI_CHARS])
        try:
            parts = split_resource_uri(uri) if len(uri) <= MAX_URI_CHARS else None
            if parts is None:
                raise RecordNotFound(
                    f"Resource {call.name!r} does not exist: resources are read by the URIs resources/list gives "
                    f"({RESOURCE_SCHEME}<server>/<uri>).",
                    code="resource_not_found",
                )
            call.server, call.name = parts
            server, catalog = self._server_for(caller, call.server, f"Resource {uri!r}")
            if not any(r.uri == call.name for r in catalog.resources):
                raise RecordNotFound(
                    f"Resource {uri!r} does not exist (see resources/list).", code="resource_not_found"
                )
        except GatewayError as exc:
            raise self._refused(caller, call, request_id, received_ns, exc) from None
        final = await self._run(caller, call, request_id, received_ns, server)
        result = _result(mt.ReadResourceResult, final, "ReadResourceResult")
        for contents in result.contents:
            if contents.uri == call.name:
                contents.uri = uri  # what the caller asked for, as it was listed
        return result

    def _refused(
        self, caller: Caller, call: McpCall, request_id: str, received_ns: int, exc: GatewayError
    ) -> CallFailed:
        """A call refused before it was published: recorded (a row like any call's) and raised."""
        failure = Failure.from_error(request_id, exc, key_id=caller.key.id, tenant_id=caller.key.tenant_id)
        model = tool_name(call.server, call.name) if call.server else call.name
        self.gw.record(request_id, received_ns, "mcp", model, False, failure, [], origin=caller.origin, tool=call)
        return CallFailed(failure)

    async def _run(self, caller: Caller, call: McpCall, request_id: str, received_ns: int, server: McpServer) -> Final:
        """Publish the call and wait for its Final; CallFailed with its Failure otherwise."""
        gw = self.gw
        # The server's own timeout may be longer than a model request's.
        timeout_s = max(gw.settings.request_timeout_s, server.timeout_s)
        session = BusSession(
            gw,
            "mcp",
            tool_name(call.server, call.name),
            False,
            received_ns,
            request_id,
            origin=caller.origin,
            deadline_ns=received_ns + int(timeout_s * 1e9),
        )
        session.key_id, session.tenant_id = caller.key.id, caller.key.tenant_id
        try:
            await session.publish(caller.authorization, tool=call, traceparent=caller.traceparent)
            reply = await session.collect()
        except BaseException:
            # The caller went away (its request cancelled): so does the call upstream.
            with anyio.CancelScope(shield=True):
                await session.cancel()
            raise
        finally:
            session.close()
        if reply is None:
            raise CallFailed(client_closed(request_id))
        if isinstance(reply, Failure):
            raise CallFailed(reply)
        return reply

    async def _call_prompt_api(
        self, caller: Caller, slug: str, arguments: Mapping[str, Any] | None, request_id: str
    ) -> mt.CallToolResult:
        received_ns = time.time_ns()
        call = PromptCall(
            self.gw,
            slug[:MAX_NAME_CHARS],
            dict(arguments or {}),
            request_id=request_id,
            received_ns=received_ns,
            origin=caller.origin,
            api_key=caller.authorization,
            traceparent=caller.traceparent,
        )
        try:
            encode_arguments(arguments)
        except GatewayError as exc:
            raise CallFailed(call.refuse(exc)) from None
        try:
            result = await call.run()
        except BaseException:
            call.cancel()
            raise
        if isinstance(result, Failure):
            raise CallFailed(result)
        return _prompt_api_result(result)


def _prompt_api_result(answer: ApiAnswer) -> mt.CallToolResult:
    output = answer.output
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return mt.CallToolResult(
        content=[mt.TextContent(text=text)],
        structured_content=output if isinstance(output, dict) else None,
    )


def _result(kind: type[Any], final: Final, what: str) -> Any:
    """The upstream's result JSON as the SDK's type; a 502 if it is not one."""
    try:
        return kind.model_validate_json(final.tool_result or b"{}", by_name=False)
    except ValidationError as exc:
        log.warning("request %s: the MCP server's result is no %s: %s", final.id, what, exc)
        error = UpstreamError(f"The MCP server's answer is not a valid {what}.", status=502, code="invalid_mcp_result")
        raise CallFailed(Failure.from_error(final.id, error)) from None
