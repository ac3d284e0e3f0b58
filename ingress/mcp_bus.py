"""MCP for services on the bus: ``sluice.v1.in.mcp`` takes one JSON-RPC
request (tools/list, tools/call, prompts/list, prompts/get, resources/list,
resources/read, ping) with the caller's key in the ``Authorization`` header
and answers with the JSON-RPC response, the same JSON ``/mcp`` would send
(``ingress.mcp_calls`` serves both). No ``initialize`` and no session: each
request is authenticated on its own, as MCP's stateless revision does.
Served by every ingress process (queue group "mcp").

The door subscribes when the ingress starts, but imports the ``mcp`` SDK
(its types, pydantic: ~50 MB of the process's memory) with the first
message: an ingress nobody asks for MCP does not pay for it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.msg import Msg

from ingress.gateway import Gateway
from schemas import subjects
from schemas.errors import GatewayBusy, GatewayError
from services.admission import valid_reply_subject

if TYPE_CHECKING:
    import mcp_types as mt
    from mcp_types import ErrorData
    from pydantic import BaseModel, ValidationError

    from ingress.mcp_calls import Caller, McpCalls

log = logging.getLogger("sluice.ingress.mcp_bus")

# Requests one ingress process runs at once for bus callers; past this, an error at once.
MAX_IN_FLIGHT = 2048
QUEUE = "mcp"

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode

Op = Callable[["McpCalls", "Caller", Any], "Awaitable[BaseModel] | BaseModel"]


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


@functools.cache
def methods() -> dict[str, _Method]:
    """The methods served, by name (made with the first message: see the module's doc)."""
    import mcp_types as mt

    return {
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
    from mcp_types import methods as mcp_methods
    from mcp_types.version import LATEST_HANDSHAKE_VERSION

    # The shapes follow the MCP revision the SDK's clients ask for.
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if method == "ping":
        return {}
    return mcp_methods.serialize_server_result(method, LATEST_HANDSHAKE_VERSION, dumped)


class McpBus:
    """``calls``: the ``McpCalls`` the door shares with ``/mcp``, or how to
    get them when the first message comes (the ingress makes them then)."""

    def __init__(self, gw: Gateway, calls: McpCalls | Callable[[], McpCalls]) -> None:
        self.gw = gw
        self._calls = calls
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

    @property
    def calls(self) -> McpCalls:
        if callable(self._calls):
            self._calls = self._calls()
        return self._calls

    async def _serve(self, msg: Msg) -> None:
        try:
            answer = await self.answer(msg.data, msg.headers or {})
        except Exception:  # a bug: the caller still gets an answer
            log.exception("MCP bus request failed")
            from mcp_types import INTERNAL_ERROR, ErrorData

            answer = _error(None, ErrorData(code=INTERNAL_ERROR, message="The gateway failed on this request."))
        if answer is not None:
            await self.gw.nc.publish(msg.reply, answer)

    async def answer(self, data: bytes, headers: Mapping[str, str]) -> bytes | None:
        """The JSON-RPC answer to one message; None for a notification (JSON-RPC answers none)."""
        # Imported here, with the first message (see the module's doc); then a lookup in sys.modules.
        from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, ErrorData
        from pydantic import BaseModel, ValidationError

        from ingress.mcp_calls import CallFailed, authenticate, error_data, error_of

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
        served = methods()
        entry = served.get(method)
        if entry is None:
            known = ", ".join(served)
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
