"""The mock upstream's Gemini shape takes function declarations as Gemini does: ``parameters``
only in its OpenAPI subset (a strict tool's ``additionalProperties`` is a 400, as Gemini answers
it), ``parametersJsonSchema`` as JSON Schema, never both; the tool directive calls a tool
declared either way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from loadtest.mock_upstream.app import MockUpstream

PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
STRICT = {
    "type": "object",
    "properties": {"cmd": {"type": "string"}, "env": {"type": "array", "items": {"type": "object"}}},
    "required": ["cmd"],
    "additionalProperties": False,
}


def request(declaration: dict[str, Any]) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "Run it [mock:tool]"}]}],
        "tools": [{"functionDeclarations": [{"name": "exec_command", **declaration}]}],
    }


async def post(body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(MockUpstream()), base_url="http://mock") as client:
        return await client.post(PATH, json=body)


async def test_json_schema_parameters_are_taken_and_called() -> None:
    r = await post(request({"parametersJsonSchema": STRICT}))
    assert r.status_code == 200
    [part] = r.json()["candidates"][0]["content"]["parts"]
    assert part["functionCall"] == {"name": "exec_command", "args": {"cmd": "mock"}}


async def test_openapi_parameters_are_taken() -> None:
    plain = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}
    r = await post(request({"parameters": plain}))
    assert r.status_code == 200
    assert r.json()["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "exec_command"


@pytest.mark.parametrize(
    ("parameters", "where"),
    [
        (STRICT, "additionalProperties\" at 'tools[0].function_declarations[0].parameters'"),
        (
            {"type": "object", "properties": {"env": {"type": "array", "items": {"$ref": "#/x"}}}},
            "$ref\" at 'tools[0].function_declarations[0].parameters.properties[env].value.items'",
        ),
    ],
)
async def test_a_field_outside_gemini_schema_is_refused_where_it_is(parameters: dict[str, Any], where: str) -> None:
    r = await post(request({"parameters": parameters}))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert error["message"] == f'Invalid JSON payload received. Unknown name "{where}: Cannot find field.'


async def test_both_kinds_of_parameters_are_refused() -> None:
    r = await post(request({"parameters": {"type": "object"}, "parametersJsonSchema": STRICT}))
    assert r.status_code == 400 and "mutually exclusive" in r.json()["error"]["message"]
