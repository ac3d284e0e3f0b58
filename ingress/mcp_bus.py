"""MCP for services on the bus: ``sluice.v1.in.mcp`` takes one JSON-RPC
request (tools/list, tools/call, prompts/list, prompts/get, resources/list,
resources/read, ping) with the caller's key in the ``Authorization`` header
and answers with the JSON-RPC response, the same JSON ``/mcp`` would send
(``ingress.mcp_calls`` serves both). No ``initialize`` and no session: each
request is authenticated on its own, as MCP's stateless revision does.
Served by every ingress process (queue group "mcp")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as mt
import msgspec
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, ErrorData
from mcp_types import methods as mcp_methods
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from ingress.gateway import Gateway
from ingress.mcp_calls import Caller, CallFailed, McpCalls, authenticate, error_data, error_of
from schemas import subjects
from schemas.errors import GatewayBusy, GatewayError
from services.admission import valid_reply_subject

log = logging.getLogger("sluice.ingress.mcp_bus")

# Requests one ingress process runs at once for bus callers; past this, an error at once.
MAX_IN_FLIGHT = 2048
# The MCP revision whose result shapes the answers follow (the one the SDK's clients ask for).
VERSION = LATEST_HANDSHAKE_VERSION
QUEUE = "mcp"

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode

Op = Callable[[McpCalls, Caller, Any], Awaitable[BaseModel] | BaseModel]


@dataclass(frozen=True, slots=True)
class _Method:
    params: type[BaseModel]
    run: Op


async def _call_tool(calls: McpCalls, caller: Caller, p: mt.CallToolRequestParams) -> BaseModel:
    return await calls.call_tool(caller, p.name, p.arguments)


async def _get_prompt(calls: McpCalls, caller: Caller, p: mt.GetPromptRequestParams) -> BaseModel:
    return await calls.get_prompt(caller, p.name, p.arguments)


async def _read_resource(calls: McpCalls, caller: Caller, p: mt.ReadResourceRequestParams) -> BaseModel:
    return await calls.read_resource(caller, p.uri)


METHODS: dict[str, _Method] = {
    "ping": _Method(mt.RequestParams, lambda calls, caller, p: mt.EmptyResult()),
    "tools/list": _Method(mt.PaginatedRequestParams, lambda calls, caller, p: calls.list_tools(caller)),
    "tools/call": _Method(mt.CallToolRequestParams, _call_tool),
    "prompts/list": _Method(mt.PaginatedRequestParams, lambda calls, caller, p: calls.list_prompts(caller)),
    "prompts/get": _Method(mt.GetPromptRequestParams, _get_prompt),
    "resources/list": _Method(mt.PaginatedRequestParams, lambda calls, caller, p: calls.list_resources(caller)),
    "resources/read": _Method(mt.ReadResourceRequestParams, _read_resource),
}


def _error(rpc_id: Any, error: ErrorData) -> bytes:
    return _json.encode({"jsonrpc": "2.0", "id": rpc_id, "error": error.model_dump(mode="json", exclude_none=True)})


def _wire(method: str, result: BaseModel) -> dict[str, Any]:
    """The result as ``/mcp`` sends it: MCP's field names, cut to the revision's shape."""
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if method == "ping":
        return {}
    return mcp_methods.serialize_server_result(method, VERSION, dumped)


class McpBus:
    def __init__(self, gw: Gateway, calls: McpCalls) -> None:
        self.gw = gw
        self.calls = calls
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.gw.nc.subscribe(
            subjects.IN_MCP, queue=QUEUE, cb=self._on_request, pending_msgs_limit=100_000
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()  # take no more
        for task in list(self._tasks):
            task.cancel()

    async def _on_request(self, msg: Msg) -> None:
        if not valid_reply_subject(msg.reply or ""):
            return  # nowhere to answer: running it would only spend money
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        try:
            answer = await self.answer(msg.data, msg.headers or {})
        except Exception:  # a bug: the caller still gets an answer
            log.exception("MCP bus request failed")
            answer = _error(None, ErrorData(code=INTERNAL_ERROR, message="The gateway failed on this request."))
        if answer is not None:
            await self.gw.nc.publish(msg.reply, answer)

    async def answer(self, data: bytes, headers: Mapping[str, str]) -> bytes | None:
        """The JSON-RPC answer to one message; None for a notification (JSON-RPC answers none)."""
        if len(data) > self.gw.settings.max_body_bytes:
            too_large = error_data(413, "request_too_large", "request_too_large", "The request is too large.")
            return _error(None, ErrorData(code=INVALID_REQUEST, message=too_large.message, data=too_large.data))
        try:
            message = _decode(data)
        except msgspec.DecodeError as exc:
            return _error(None, ErrorData(code=PARSE_ERROR, message=f"Parse error: {exc}"))
        if not isinstance(message, dict):
            return _error(None, ErrorData(code=INVALID_REQUEST, message="Send one JSON-RPC request object."))
        rpc_id = message.get("id")
        method, params = message.get("method"), message.get("params")
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str) or not isinstance(params, dict | None):
            return _error(
                rpc_id if isinstance(rpc_id, str | int) else None,
                ErrorData(code=INVALID_REQUEST, message="Not a JSON-RPC 2.0 request (jsonrpc, method, params)."),
            )
        if "id" not in message:
            return None
        if not isinstance(rpc_id, str | int) or isinstance(rpc_id, bool):
            return _error(None, ErrorData(code=INVALID_REQUEST, message="A request's id is a string or an integer."))
        entry = METHODS.get(method)
        if entry is None:
            known = ", ".join(METHODS)
            return _error(rpc_id, ErrorData(code=METHOD_NOT_FOUND, message=f"Method not found; served: {known}."))
        try:
            if len(self._tasks) > MAX_IN_FLIGHT:
                raise GatewayBusy("This gateway process has too many MCP bus requests in flight; retry shortly.")
            caller = authenticate(
                self.gw,
                headers.get(subjects.API_KEY_HEADER),
                "nats",
                headers.get(subjects.TRACEPARENT_HEADER, ""),
            )
            try:
                typed = entry.params.model_validate(params or {}, by_name=False)
            except ValidationError as exc:
                return _error(rpc_id, ErrorData(code=INVALID_PARAMS, message=f"Invalid params: {_first(exc)}"))
            result = entry.run(self.calls, caller, typed)
            if not isinstance(result, BaseModel):
                result = await result
        except (GatewayError, CallFailed) as exc:
            return _error(rpc_id, error_of(exc))
        return _json.encode({"jsonrpc": "2.0", "id": rpc_id, "result": _wire(method, result)})


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "params"
    return f"{where}: {err['msg']}"
