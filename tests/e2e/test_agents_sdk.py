"""The OpenAI Agents SDK (openai-agents) through the gateway's /v1/responses: an agent with one
function tool runs to completion, streamed (Runner.run_streamed) and not (Runner.run), on an
OpenAI deployment (the SDK's body passes through) and on Anthropic and Gemini deployments
(translated both ways). ``[mock:tool_once]`` makes the model call the tool; the SDK runs it, sends
its output back, and the model's next answer (the mock's text) is the final output. Tracing is off:
nothing leaves 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from agents import Agent, FunctionTool, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.stack import DEMO_KEY, Stack

MODELS = ["demo-model", "claude-model", "gemini-model"]
ANSWER = "Sluice routes this answer"  # the mock's first four words: [mock:chunks=4]
PROMPT = "What is the weather in Paris? [mock:tool_once] [mock:chunks=4]"


@pytest.fixture(scope="module", autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # else the SDK posts traces to api.openai.com
    yield
    set_tracing_disabled(False)


def weather_tool(calls: list[str]) -> FunctionTool:
    """get_weather, counting its runs in ``calls`` (one string parameter: the Anthropic- and
    Gemini-shaped mock fills each required argument with the string "mock")."""

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    return get_weather


async def run_agent(stack: Stack, model: str, streamed: bool, calls: list[str]) -> tuple[object, int]:
    """The run's result and how many requests the upstream received for it."""
    before = stack.mock_stats()["requests"]
    async with AsyncOpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as client:
        agent = Agent(
            name="weather",
            instructions="Answer briefly.",
            tools=[weather_tool(calls)],
            model=OpenAIResponsesModel(model=model, openai_client=client),
        )
        if streamed:
            result = Runner.run_streamed(agent, PROMPT)
            kinds = [event.type async for event in result.stream_events()]
            assert "run_item_stream_event" in kinds and "raw_response_event" in kinds
        else:
            result = await Runner.run(agent, PROMPT)
    return result, stack.mock_stats()["requests"] - before


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("model", MODELS)
async def test_an_agent_runs_its_tool_and_answers(stack: Stack, model: str, streamed: bool) -> None:
    calls: list[str] = []
    result, requests = await run_agent(stack, model, streamed, calls)
    assert len(calls) == 1 and calls[0]  # the SDK ran the tool once, with the model's argument
    assert result.final_output == ANSWER  # type: ignore[attr-defined]
    kinds = [item.type for item in result.new_items]  # type: ignore[attr-defined]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    # Two model calls: the tool call, then the answer to a request carrying the tool's output.
    assert requests == 2 and len(result.raw_responses) == 2  # type: ignore[attr-defined]
    seen = httpx.get(f"{stack.mock_url}/mock/last-request").text
    assert f"Sunny in {calls[0]}" in seen
    # The usage the SDK added up is what the mock counted for its two answers.
    counted = httpx.get(f"{stack.mock_url}/mock/usage", params={"last": 2}).json()
    usage = result.context_wrapper.usage  # type: ignore[attr-defined]
    assert usage.requests == 2
    assert usage.input_tokens == sum(u["prompt_tokens"] for u in counted)
    assert usage.output_tokens == sum(u["completion_tokens"] for u in counted)
