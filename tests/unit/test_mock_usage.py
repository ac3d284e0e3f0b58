"""GET /mock/usage: the tokens the mock counted for each answer, newest first, as each
family's usage said them: what a gateway's rows should hold."""

from __future__ import annotations

from typing import Any

import httpx

from loadtest.mock_upstream.app import MockUpstream


async def test_each_answer_usage_is_kept_newest_first() -> None:
    mock = MockUpstream()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await client.post(path, json=body)
            assert r.status_code == 200
            return r.json()

        chat = await post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        claude = await post(
            "/v1/messages",
            {"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "Hi [mock:chunks=2]"}]},
        )
        cut = await post("/v1/responses", {"model": "r", "input": "Hi [mock:chunks=40]", "max_output_tokens": 16})
        await post(
            "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x [mock:no_usage]"}]}
        )
        usage = (await client.get("/mock/usage", params={"last": 10})).json()
    assert usage[0] is None
    # Responses: the answer cut at max_output_tokens counts what was sent, not what was planned.
    assert cut["status"] == "incomplete"
    assert usage[1] == {"prompt_tokens": cut["usage"]["input_tokens"], "completion_tokens": 16}
    assert usage[2] == {"prompt_tokens": claude["usage"]["input_tokens"], "completion_tokens": 2}
    assert usage[3] == {
        "prompt_tokens": chat["usage"]["prompt_tokens"],
        "completion_tokens": chat["usage"]["completion_tokens"],
    }
    assert len(usage) == 4
