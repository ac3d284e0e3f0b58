"""The ingress's MCP operations (ingress.mcp_calls) and its bus door
(ingress.mcp_bus) over fake mirrors: what a caller is shown, what is
published for a call and what never is, and the JSON-RPC errors a caller
gets. The pipeline is a fake ``_run`` that records what would be published."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from ingress import mcp_bus, mcp_calls
from ingress.mcp_calls import Caller, CallFailed, McpCalls
from schemas import subjects
from schemas.chat import Usage
from schemas.control import ApiKey, Secret, Subscription, Tenant
from schemas.errors import QuotaExceeded
from schemas.mcp import (
    CatalogPrompt,
    CatalogResource,
    CatalogTool,
    McpCall,
    McpServer,
    PromptArgument,
    ServerCatalog,
    ToolAnnotations,
)
from schemas.prompts import Prompt, PromptApi, PromptMessage, PromptVersion, Variable
from schemas.replies import Failure, Final
from services.config import GatewaySettings
from services.keys import hash_key
from services.prompt_api import PromptBook

SECRET = "sk-test-mcp-0123456789"
OTHER_SECRET = "sk-test-mcp-other-999"
ECHO_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def catalog() -> ServerCatalog:
    return ServerCatalog(
        server="demo-tools",
        tools=[
            CatalogTool(name="echo", description="Echo", input_schema=json.dumps(ECHO_SCHEMA).encode()),
            CatalogTool(name="lookup", annotations=ToolAnnotations(readOnlyHint=True)),
            CatalogTool(name="delete_item", annotations=ToolAnnotations(destructiveHint=True)),
            # No object at the root: MCP (through 2025-11-25) cannot list it.
            CatalogTool(name="odd", input_schema=b'{"type":"string"}'),
        ],
        prompts=[CatalogPrompt(name="greeting", arguments=[PromptArgument(name="name", required=True)])],
        resources=[CatalogResource(uri="demo://readme", name="readme", mime_type="text/plain")],
    )


class FakeGateway:
    def __init__(self, tenant: Tenant, key: ApiKey, subscriptions: list[Subscription] | None = None) -> None:
        other = ApiKey(id="k-other", tenant_id="other", secrets=[Secret(hash_key(OTHER_SECRET))])
        self.keys = SimpleNamespace(by_hash={hash_key(SECRET): key, hash_key(OTHER_SECRET): other})
        self.mirrors: dict[str, Any] = {
            subjects.KV_TENANTS: SimpleNamespace(items={tenant.id: tenant, "other": Tenant(id="other")}),
            subjects.KV_SUBSCRIPTIONS: SimpleNamespace(items={s.id: s for s in subscriptions or []}),
        }
        servers = {"demo-tools": McpServer(name="demo-tools", urls=["http://x/mcp"]), "gone": McpServer(name="gone")}
        self.mcp_servers = SimpleNamespace(items=servers)
        # "stray" has a catalog but is no registered server: never shown.
        self.mcp_catalog = SimpleNamespace(items={"demo-tools": catalog(), "stray": ServerCatalog(server="stray")})
        prompts = {
            "summ": Prompt(name="summ", labels={"production": 1}, api=PromptApi(slug="summarize", state="published")),
            "gated": Prompt(
                name="gated",
                labels={"production": 1},
                api=PromptApi(slug="gated", state="published", requires_approval=True),
            ),
        }
        v = PromptVersion(
            prompt="summ",
            version=1,
            model="m",
            messages=[PromptMessage(role="user", template="{{text}}")],
            variables=[Variable(name="text"), Variable(name="style", required=False, default="short")],
        )
        versions = {"summ.1": v, "gated.1": msgspec.structs.replace(v, prompt="gated")}
        self.prompt_book = PromptBook(prompts, versions)
        self.settings = GatewaySettings()
        self.rows: list[tuple[str, str, Final | Failure, McpCall | None]] = []

    def record(
        self, request_id: str, received_ns: int, api: str, model: str, stream: bool, reply: Any, spans: list, **kw: Any
    ) -> None:
        self.rows.append((api, model, reply, kw.get("tool")))


class FakePipeline:
    """Stands in for McpCalls._run: what would be published, and the answer."""

    def __init__(self, result: dict | None = None, failure: Failure | None = None) -> None:
        self.published: list[McpCall] = []
        self.result = result if result is not None else {"content": [{"type": "text", "text": "hi"}]}
        self.failure = failure

    async def __call__(
        self, caller: Caller, call: McpCall, request_id: str, received_ns: int, server: McpServer
    ) -> Final:
        self.published.append(call)
        if self.failure is not None:
            raise CallFailed(self.failure)
        return Final(id=request_id, seq=0, model="", usage=Usage(), tool_result=json.dumps(self.result).encode())


def setup(
    tenant: Tenant, key_patterns: list[str] | None = None, **pipeline: Any
) -> tuple[FakeGateway, McpCalls, Caller, FakePipeline]:
    key = ApiKey(id="k1", tenant_id=tenant.id, secrets=[Secret(hash_key(SECRET))], mcp_tools=key_patterns)
    gw = FakeGateway(tenant, key)
    calls = McpCalls(gw)  # type: ignore[arg-type]
    fake = FakePipeline(**pipeline)
    calls._run = fake  # type: ignore[method-assign]
    caller = mcp_calls.authenticate(gw, f"Bearer {SECRET}", "http")  # type: ignore[arg-type]
    return gw, calls, caller, fake


ALL = Tenant(id="acme", mcp_tools=["demo-tools__*"])


def names(result: Any) -> list[str]:
    return [t.name for t in result.tools]


def test_a_caller_sees_the_tools_its_tenant_and_key_name_namespaced_with_their_schemas_and_hints() -> None:
    _, calls, caller, _ = setup(ALL)
    listed = calls.list_tools(caller)
    # Not "odd" (no object schema), nothing of "stray" (no server), and the
    # prompt API that needs no approval as a tool.
    assert names(listed) == ["demo-tools__delete_item", "demo-tools__echo", "demo-tools__lookup", "prompt__summarize"]
    echo = listed.tools[1]
    assert echo.input_schema == ECHO_SCHEMA and echo.description == "Echo"
    assert listed.tools[2].annotations is not None and listed.tools[2].annotations.read_only_hint is True
    summarize = listed.tools[3]
    assert summarize.input_schema["required"] == ["text"] and set(summarize.input_schema["properties"]) == {
        "text",
        "style",
    }


def test_deny_by_default_a_keys_own_patterns_narrow_and_read_only_tenants_see_read_only_tools() -> None:
    assert names(setup(Tenant(id="acme"))[1].list_tools(setup(Tenant(id="acme"))[2])) == ["prompt__summarize"]
    _, calls, caller, _ = setup(ALL, key_patterns=["demo-tools__echo"])
    assert names(calls.list_tools(caller)) == ["demo-tools__echo", "prompt__summarize"]
    _, calls, caller, _ = setup(Tenant(id="acme", mcp_tools=["demo-tools__*"], mcp_safety="read_only"))
    assert names(calls.list_tools(caller)) == ["demo-tools__lookup", "prompt__summarize"]


async def test_a_call_is_published_as_the_servers_own_tool_and_its_result_is_the_upstreams() -> None:
    result = {"content": [{"type": "text", "text": "boom"}], "isError": True}
    _, calls, caller, fake = setup(ALL, result=result)
    answer = await calls.call_tool(caller, "demo-tools__echo", {"text": "hello", "n": 2**70})
    assert answer.is_error is True and answer.content[0].text == "boom"  # type: ignore[union-attr]
    [call] = fake.published
    assert (call.server, call.method, call.name) == ("demo-tools", "tools/call", "echo")
    assert json.loads(call.arguments) == {"text": "hello", "n": 2**70}


@pytest.mark.parametrize(
    ("name", "arguments", "status", "code"),
    [
        ("echo", {}, 404, "tool_not_found"),  # no namespace
        ("other-server__echo", {}, 404, "tool_not_found"),
        ("demo-tools__nope", {}, 404, "tool_not_found"),
        ("x" * 10_000, {}, 400, "tool_not_found"),
        ("demo-tools__odd", {}, 403, "tool_not_allowed"),  # listed to no one, named by no pattern
        ("demo-tools__echo", {"text": "a" * (1 << 20)}, 413, "arguments_too_large"),
    ],
)
async def test_a_call_refused_here_publishes_nothing_and_is_recorded(
    name: str, arguments: dict, status: int, code: str
) -> None:
    tenant = Tenant(id="acme", mcp_tools=["demo-tools__echo", "demo-tools__lookup", "demo-tools__nope"])
    gw, calls, caller, fake = setup(tenant)
    with pytest.raises(CallFailed) as refused:
        await calls.call_tool(caller, name, arguments)
    failure = refused.value.failure
    assert (failure.status, failure.code) == (status, code), failure.message
    assert fake.published == []
    [(api, model, reply, tool)] = gw.rows
    assert api == "mcp" and reply is failure and tool is not None and len(model) <= 256
    error = mcp_calls.error_of(refused.value)
    assert error.code == -32602 if status in (400, 404, 413) else error.code == -32010
    assert error.data["status"] == status and error.data["code"] == code and error.data["request_id"] == failure.id


async def test_a_refusal_from_the_pipeline_reaches_the_caller_with_its_status_and_retry_hint() -> None:
    failure = Failure.from_error("r1", QuotaExceeded("Budget spent.", retry_after_s=30))
    _, calls, caller, _ = setup(ALL, failure=failure)
    with pytest.raises(CallFailed) as refused:
        await calls.call_tool(caller, "demo-tools__echo", {"text": "x"})
    error = mcp_calls.error_of(refused.value)
    assert error.code == mcp_calls.GATEWAY_REFUSED and error.message == "Budget spent."
    assert error.data == {
        "status": 429,
        "type": "insufficient_quota",
        "code": "insufficient_quota",
        "retry_after_s": 30,
        "request_id": "r1",
    }


async def test_an_upstream_answer_that_is_no_call_tool_result_is_a_502() -> None:
    _, calls, caller, _ = setup(ALL, result={"content": "not a list"})
    with pytest.raises(CallFailed) as failed:
        await calls.call_tool(caller, "demo-tools__echo", {"text": "x"})
    assert failed.value.failure.status == 502 and mcp_calls.error_of(failed.value).code == -32603


async def test_prompts_and_resources_are_namespaced_and_read_by_the_names_they_were_listed_under() -> None:
    result = {"contents": [{"uri": "demo://readme", "text": "read me", "mimeType": "text/plain"}]}
    _, calls, caller, fake = setup(ALL, result=result)
    [prompt] = calls.list_prompts(caller).prompts
    assert prompt.name == "demo-tools__greeting" and prompt.arguments[0].required is True  # type: ignore[index]
    [resource] = calls.list_resources(caller).resources
    assert resource.uri == "sluice-mcp://demo-tools/demo://readme" and resource.name == "demo-tools__readme"
    read = await calls.read_resource(caller, resource.uri)
    assert read.contents[0].uri == resource.uri
    assert (fake.published[0].server, fake.published[0].method, fake.published[0].name) == (
        "demo-tools",
        "resources/read",
        "demo://readme",
    )
    fake.result = {"messages": [{"role": "user", "content": {"type": "text", "text": "Hello, Ada"}}]}
    got = await calls.get_prompt(caller, "demo-tools__greeting", {"name": "Ada"})
    assert got.messages[0].content.text == "Hello, Ada"  # type: ignore[union-attr]
    assert fake.published[1].method == "prompts/get" and json.loads(fake.published[1].arguments) == {"name": "Ada"}
    for uri in ("demo://readme", "sluice-mcp://demo-tools/demo://other", "sluice-mcp://gone/x"):
        with pytest.raises(CallFailed) as refused:
            await calls.read_resource(caller, uri)
        assert refused.value.failure.status == 404
    assert len(fake.published) == 2


async def test_a_tenant_no_pattern_names_sees_no_prompts_or_resources_and_cannot_read_them() -> None:
    _, calls, caller, fake = setup(Tenant(id="acme", mcp_tools=["github__*"]))
    assert calls.list_prompts(caller).prompts == [] and calls.list_resources(caller).resources == []
    with pytest.raises(CallFailed) as refused:
        await calls.get_prompt(caller, "demo-tools__greeting", {"name": "x"})
    assert refused.value.failure.status == 403 and fake.published == []


# -- the bus door


def bus(tenant: Tenant = ALL, **pipeline: Any) -> tuple[mcp_bus.McpBus, FakePipeline]:
    gw, calls, _, fake = setup(tenant, **pipeline)
    return mcp_bus.McpBus(gw, calls), fake  # type: ignore[arg-type]


async def ask(door: mcp_bus.McpBus, message: Any, key: str | None = SECRET) -> dict:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = await door.answer(data, headers)
    assert answer is not None
    return json.loads(answer)


def rpc(method: str, params: dict | None = None, rid: int = 7) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": method, **({"params": params} if params is not None else {})}


async def test_the_bus_door_answers_json_rpc_in_mcps_shape() -> None:
    door, fake = bus()
    listed = await ask(door, rpc("tools/list"))
    assert listed["id"] == 7 and listed["result"]["tools"][1]["inputSchema"] == ECHO_SCHEMA
    assert listed["result"]["tools"][2]["annotations"] == {"readOnlyHint": True}
    called = await ask(door, rpc("tools/call", {"name": "demo-tools__echo", "arguments": {"text": "hi"}}))
    assert called == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "hi"}], "isError": False},
    }
    assert [c.name for c in fake.published] == ["echo"]
    assert await door.answer(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode(), {}) is None


@pytest.mark.parametrize(
    ("message", "key", "code", "status"),
    [
        (b"{not json", SECRET, -32700, None),
        ([rpc("tools/list")], SECRET, -32600, None),  # a batch
        ({"id": 1, "method": "tools/list"}, SECRET, -32600, None),  # no jsonrpc
        (rpc("tools/frobnicate"), SECRET, -32601, None),
        (rpc("tools/call", {"name": "demo-tools__echo", "arguments": ["not", "an", "object"]}), SECRET, -32602, None),
        (rpc("tools/call", {"name": "other__echo", "arguments": {}}), SECRET, -32602, 404),
        (rpc("tools/call", {"name": "demo-tools__echo", "arguments": {}}), None, -32010, 401),
        (rpc("tools/call", {"name": "demo-tools__echo", "arguments": {}}), "sk-wrong", -32010, 401),
    ],
)
async def test_the_bus_door_refuses_bad_messages_with_json_rpc_errors_and_publishes_nothing(
    message: Any, key: str | None, code: int, status: int | None
) -> None:
    door, fake = bus()
    answer = await ask(door, message, key)
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["message"]
    if status is not None:
        assert answer["error"]["data"]["status"] == status
    assert fake.published == []


class FakePromptCall:
    """Stands in for PromptCall: the variables it was given, and its answer."""

    made: list[FakePromptCall] = []
    answer: Any = None

    def __init__(self, gw: Any, slug: str, variables: dict, **kw: Any) -> None:
        self.slug, self.variables, self.kw = slug, variables, kw
        FakePromptCall.made.append(self)

    async def run(self) -> Any:
        return FakePromptCall.answer

    def refuse(self, error: Any) -> Failure:
        return Failure.from_error(self.kw["request_id"], error)


async def test_a_prompt_api_is_called_as_a_tool_with_its_variables_and_answers_its_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from schemas.envelope import PromptRef
    from schemas.prompt_calls import ApiAnswer

    monkeypatch.setattr(mcp_calls, "PromptCall", FakePromptCall)
    FakePromptCall.made = []
    _, calls, caller, fake = setup(ALL)
    FakePromptCall.answer = ApiAnswer(
        request_id="r", output={"label": "good"}, prompt=PromptRef(name="summ", version=1), usage=Usage()
    )
    result = await calls.call_tool(caller, "prompt__summarize", {"text": "long text"})
    [made] = FakePromptCall.made
    assert made.slug == "summarize" and made.variables == {"text": "long text"}
    assert made.kw["api_key"] == f"Bearer {SECRET}" and made.kw["origin"] == "http"
    assert json.loads(result.content[0].text) == {"label": "good"}  # type: ignore[union-attr]
    assert result.structured_content == {"label": "good"}
    FakePromptCall.answer = Failure.from_error("r2", QuotaExceeded("Budget spent."))
    with pytest.raises(CallFailed) as refused:
        await calls.call_tool(caller, "prompt__summarize", {"text": "x"})
    assert refused.value.failure.status == 429
    with pytest.raises(CallFailed) as too_large:
        await calls.call_tool(caller, "prompt__summarize", {"text": "a" * (1 << 20)})
    assert too_large.value.failure.status == 413 and len(FakePromptCall.made) == 3
    assert fake.published == []  # a prompt API's steps are its own requests, not MCP calls
