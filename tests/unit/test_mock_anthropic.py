"""The mock upstream in Anthropic's shape, as Claude Code meets it: its token
count says what its answer's usage would, and a deferred tool (Claude Code
declares a placeholder first) is not one the model can call."""

from __future__ import annotations

from typing import Any

import httpx

from loadtest.mock_upstream.app import MockUpstream

READ = {
    "name": "Read",
    "description": "Reads a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
}
PLACEHOLDER = {
    "name": "DeferredToolPlaceholder",
    "description": "Reserved placeholder that keeps deferred tool loading active; never call this tool.",
    "input_schema": {"type": "object", "properties": {}},
    "defer_loading": True,
}


async def post(mock: MockUpstream, path: str, doc: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        return await client.post(path, json=doc)


async def test_the_count_is_the_input_its_answer_reports() -> None:
    mock = MockUpstream()
    doc = {
        "model": "claude-sonnet-4-20250514",
        "system": "You are a careful counter.",
        "messages": [
            {"role": "user", "content": "Count these words please"},
            {"role": "assistant", "content": [{"type": "text", "text": "Which ones?"}]},
            {"role": "user", "content": "All of them"},
        ],
    }
    counted = await post(mock, "/v1/messages/count_tokens", doc)
    answered = await post(mock, "/v1/messages", {**doc, "max_tokens": 50})
    assert counted.status_code == 200 and answered.status_code == 200
    # a word each (14) and 4 a message (12)
    assert counted.json() == {"input_tokens": answered.json()["usage"]["input_tokens"]} == {"input_tokens": 26}
    # directives apply: a test can make the count fail, on one named upstream too
    doc["messages"][-1]["content"] = "All of them [mock:status=529]"
    failed = await post(mock, "/@a/v1/messages/count_tokens", doc)
    assert failed.status_code == 529 and failed.json()["error"]["type"] == "overloaded_error"
    assert mock.stats.by_upstream == {"a": 1}


async def test_a_deferred_tool_is_not_the_one_called() -> None:
    doc = {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 50,
        "tools": [PLACEHOLDER, READ],
        "messages": [{"role": "user", "content": "Read it [mock:tool]"}],
    }
    answer = (await post(MockUpstream(), "/v1/messages", doc)).json()
    [call] = answer["content"]
    assert (call["type"], call["name"], call["input"]) == ("tool_use", "Read", {"file_path": "mock"})
    only_deferred = {**doc, "tools": [PLACEHOLDER]}
    answer = (await post(MockUpstream(), "/v1/messages", only_deferred)).json()
    assert [b["type"] for b in answer["content"]] == ["text"] and answer["stop_reason"] == "end_turn"
