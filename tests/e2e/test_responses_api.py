"""OpenAI's Responses API through the gateway with the official ``openai``
SDK, on an OpenAI deployment (the client's body passes through) and on
Anthropic and Gemini deployments (translated both ways); what the mock
upstream received is read back from it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.stack import DEMO_KEY, PRIVATE_KEY, Stack

MODELS = ["demo-model", "claude-model", "gemini-model"]
ANSWER = "Sluice routes this answer through"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def last_upstream_request(stack: Stack) -> dict:
    return httpx.get(f"{stack.mock_url}/mock/last-request").json()


@pytest.mark.parametrize("model", MODELS)
def test_create_answers_in_openai_shape_on_every_family(client: openai.OpenAI, stack: Stack, model: str) -> None:
    raw = client.responses.with_raw_response.create(model=model, input="Hello [mock:chunks=5]", instructions="Be brief")
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed"
    assert resp.id.startswith("resp_")
    assert resp.output_text == ANSWER
    assert resp.usage is not None and resp.usage.output_tokens == 5
    assert resp.usage.total_tokens == resp.usage.input_tokens + 5
    assert resp.instructions == "Be brief"
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["api"] == "responses" and row["status"] == 200
    assert row["completion_tokens"] == 5 and row["prompt_tokens"] == resp.usage.input_tokens
    seen = last_upstream_request(stack)
    if model == "demo-model":  # native: the Responses body itself went up
        assert seen["input"] == "Hello [mock:chunks=5]" and seen["instructions"] == "Be brief"
    else:
        assert "input" not in seen


@pytest.mark.parametrize("model", MODELS)
def test_stream_events_in_order_with_sequence_numbers(client: openai.OpenAI, model: str) -> None:
    events = list(client.responses.create(model=model, input="Hi [mock:chunks=5]", stream=True))
    types = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == ANSWER and len(deltas) >= 2
    tail = types[types.index("response.output_text.done") :]
    assert tail == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[-1].response
    assert done.status == "completed" and done.output_text == ANSWER
    assert done.usage is not None and done.usage.output_tokens == 5


def test_sdk_stream_helper_reads_the_stream(client: openai.OpenAI) -> None:
    with client.responses.stream(model="claude-model", input="Hi [mock:chunks=3]") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text and final.status == "completed"


def test_previous_response_id_continues_three_turns_on_gemini(client: openai.OpenAI, stack: Stack) -> None:
    first = client.responses.create(model="gemini-model", input="My name is Ada. [mock:chunks=2]")
    second = client.responses.create(
        model="gemini-model", input="What is my name? [mock:chunks=2]", previous_response_id=first.id
    )
    third = client.responses.create(
        model="gemini-model", input=[{"role": "user", "content": "And again?"}], previous_response_id=second.id
    )
    assert third.previous_response_id == second.id and third.status == "completed"
    sent = str(last_upstream_request(stack)["contents"])
    # Every earlier turn, the model's answers included, reached the upstream in order.
    at = [sent.index(t) for t in ("My name is Ada.", first.output_text, "What is my name?", "And again?")]
    assert at == sorted(at)
    items = client.responses.input_items.list(third.id, order="asc")
    texts = [c.text for i in items.data if i.type == "message" for c in i.content]
    assert texts[0].startswith("My name is Ada.") and texts[-1] == "And again?" and len(texts) == 5


def test_previous_response_id_on_openai_sends_the_whole_conversation(client: openai.OpenAI, stack: Stack) -> None:
    first = client.responses.create(model="demo-model", input="First turn [mock:chunks=2]")
    client.responses.create(model="demo-model", input="Second turn", previous_response_id=first.id)
    seen = last_upstream_request(stack)
    assert "previous_response_id" not in seen  # OpenAI never heard of the gateway's ids
    roles = [(i.get("type", "message"), i.get("role")) for i in seen["input"]]
    assert roles == [("message", "user"), ("message", "assistant"), ("message", "user")]


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="demo-model", input="Forget me", store=False)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="demo-model", input="Again", previous_response_id=resp.id)
    assert caught.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    assert caught.value.response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_another_tenant_never_reads_a_response(client: openai.OpenAI, stack: Stack) -> None:
    resp = client.responses.create(model="demo-model", input="Tenant demo's secret")
    with openai.OpenAI(base_url=stack.base_url, api_key=PRIVATE_KEY, max_retries=0, timeout=20) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(resp.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(resp.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(resp.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="demo-model", input="Go on", previous_response_id=resp.id)
    assert client.responses.retrieve(resp.id).output_text == resp.output_text


def test_retrieve_and_delete(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="claude-model", input="Keep this [mock:chunks=3]")
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text and got.usage == resp.usage
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_not-one-of-ours")


@pytest.mark.parametrize("model", MODELS)
def test_function_call_and_its_output(client: openai.OpenAI, stack: Stack, model: str) -> None:
    first = client.responses.create(model=model, input="Weather in Paris? [mock:tool]", tools=[TOOL])  # type: ignore[list-item]
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}],
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert second.status == "completed" and second.output
    assert "Sunny, 21 C" in str(last_upstream_request(stack))


@pytest.mark.parametrize("model", MODELS)
def test_streamed_function_call(client: openai.OpenAI, model: str) -> None:
    events = list(
        client.responses.create(model=model, input="Weather? [mock:tool]", tools=[TOOL], stream=True)  # type: ignore[list-item]
    )
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments.startswith("{")
    final = events[-1].response
    assert [o.type for o in final.output] == ["function_call"] and final.output[0].arguments == done[0].arguments


def test_builtin_tool_required_is_refused_off_openai(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="gemini-model", input="Search", tools=[{"type": "web_search"}], tool_choice="required"
        )
    assert "runs on OpenAI's side" in caught.value.message


def test_builtin_tool_is_left_out_off_openai_and_kept_on_it(client: openai.OpenAI, stack: Stack) -> None:
    """Agents (Codex) declare web_search with every request: another family
    answers without it; an OpenAI deployment gets it as sent."""
    tools = [TOOL, {"type": "web_search", "external_web_access": False}]
    raw = client.responses.with_raw_response.create(model="gemini-model", input="Hi [mock:chunks=2]", tools=tools)  # type: ignore[arg-type]
    answer = raw.parse()
    assert answer.status == "completed" and answer.output_text
    declared = last_upstream_request(stack)["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["get_weather"]
    assert stack.request_row(raw.headers["x-request-id"])["dropped"] == ["tools:web_search"]
    raw = client.responses.with_raw_response.create(model="demo-model", input="Hi [mock:chunks=2]", tools=tools)  # type: ignore[arg-type]
    assert last_upstream_request(stack)["tools"][1] == {"type": "web_search", "external_web_access": False}
    assert stack.request_row(raw.headers["x-request-id"])["dropped"] == []  # OpenAI got the whole body


def test_background_response_runs_as_a_job(client: openai.OpenAI) -> None:
    queued = client.responses.create(model="claude-model", input="Later [mock:chunks=3]", background=True)
    assert queued.status == "queued" and queued.background is True and queued.output == []
    deadline = time.monotonic() + 20
    got = client.responses.retrieve(queued.id)
    while got.status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, got.status
        time.sleep(0.1)
        got = client.responses.retrieve(queued.id)
    assert got.status == "completed" and got.id == queued.id and got.output_text == "Sluice routes this"
    assert got.background is True and got.usage is not None and got.usage.output_tokens == 3
    follow = client.responses.create(model="claude-model", input="And then?", previous_response_id=got.id)
    assert follow.status == "completed"


def test_background_response_cancelled_never_completes(client: openai.OpenAI, stack: Stack) -> None:
    queued = client.responses.create(
        model="demo-model", input="Slow [mock:latency_ms=3000]", background=True
    )
    time.sleep(0.5)  # the job is running: the upstream takes 3 s to answer
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    time.sleep(3.0)  # past when the upstream would have answered
    assert client.responses.retrieve(queued.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(client.responses.create(model="demo-model", input="Now").id)
