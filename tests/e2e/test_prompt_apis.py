"""Prompts published as REST APIs (``POST /apis/<slug>``), driven over real
HTTP and NATS through the whole pipeline to the mock upstream, with the
rows checked in ClickHouse."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from schemas import subjects
from schemas.prompt_calls import ApiAnswer, ApiCall
from schemas.replies import Failure
from tests.integration.test_admin_cli import sluice
from tests.stack import ADMIN_KEY, DEMO_KEY, PRIVATE_KEY, Stack

DEMO = Path(__file__).parents[2] / "services" / "cli" / "demo.toml"
SUNSET_MS = 1_893_456_000_000  # 2030-01-01


def demo_prompts() -> str:
    """The demo config's prompts, as the Stack's config template needs them."""
    text = DEMO.read_text()
    return text[text.index("[[prompts]]") :].replace("{", "{{").replace("}", "}}")


LIFECYCLE = f"""
[[prompts]]
name = "legacy"
model = "demo-model"
api = {{{{ slug = "legacy", state = "deprecated", successor = "summarize", sunset_at_ms = {SUNSET_MS} }}}}
[[prompts.messages]]
role = "user"
template = "{{{{{{{{text}}}}}}}}"
[[prompts.variables]]
name = "text"

[[prompts]]
name = "ancient"
model = "demo-model"
api = {{{{ slug = "ancient", state = "retired", successor = "summarize" }}}}
[[prompts.messages]]
role = "user"
template = "old"

[[prompts]]
name = "preview"
model = "demo-model"
api = {{{{ slug = "preview", state = "draft" }}}}
[[prompts.messages]]
role = "user"
template = "new [mock:chunks=2]"

[[prompts]]
name = "gated"
model = "demo-model"
api = {{{{ slug = "gated", state = "published", requires_approval = true }}}}
[[prompts.messages]]
role = "user"
template = "gated"

[[prompts]]
name = "scored"
model = "demo-model"
api = {{{{ slug = "scored", state = "published" }}}}
[[prompts.messages]]
role = "user"
template = "Score {{{{{{{{n}}}}}}}} in {{{{{{{{unit}}}}}}}}"
[[prompts.variables]]
name = "n"
type = "number"
[[prompts.variables]]
name = "unit"
type = "enum"
values = ["cm", "m"]
"""


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("apis"), timeout_s=10, extra_config=demo_prompts() + LIFECYCLE).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(apis: Stack) -> Iterator[httpx.Client]:
    url = apis.base_url.removesuffix("/v1")
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def admin(apis: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apis.admin_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=20) as c:
        yield c


def last_upstream_request(stack: Stack) -> dict:
    return httpx.get(f"{stack.mock_url}/mock/last-request").json()


def api_call_row(stack: Stack, request_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = stack.query("api_call", request_id=request_id)
        if result["rows"]:
            return dict(zip(result["columns"], result["rows"][0], strict=True))
        assert time.monotonic() < deadline, f"no api_calls row for {request_id}"
        time.sleep(0.1)


def children(stack: Stack, parent_id: str, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = stack.query("children", parent_id=parent_id)
        if len(result["rows"]) >= count:
            return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        assert time.monotonic() < deadline, f"{len(result['rows'])} of {count} child rows of {parent_id}"
        time.sleep(0.1)


def test_summarize_fills_its_variable_and_answers_the_models_text(apis: Stack, http: httpx.Client) -> None:
    r = http.post("/apis/summarize", json={"text": "Rivers carry water to the sea. [mock:echo]"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "Rivers carry water to the sea. [mock:echo]"
    assert body["prompt"] == {"name": "summarize", "version": 1, "label": "production"}
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0
    sent = last_upstream_request(apis)
    assert sent["messages"][0] == {"role": "system", "content": "Summarise the user's text in at most three sentences."}
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 300

    call = api_call_row(apis, body["request_id"])
    assert (call["slug"], call["prompt_name"], call["prompt_version"], call["status"]) == (
        "summarize",
        "summarize",
        1,
        200,
    )
    [child] = children(apis, body["request_id"], 1)
    assert (child["prompt_name"], child["prompt_version"], child["prompt_label"]) == ("summarize", 1, "production")
    assert int(call["cost_pico_usd"]) == int(child["cost_pico_usd"]) == body["cost"]["pico_usd"] > 0


def test_a_calls_traceparent_is_on_each_steps_row(apis: Stack, http: httpx.Client) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace}-00f067aa0ba902b7-01"
    r = http.post("/apis/summarize", json={"text": "traced [mock:echo]"}, headers={"traceparent": traceparent})
    assert r.status_code == 200, r.text
    [child] = children(apis, r.json()["request_id"], 1)
    assert child["trace_id"] == trace


def test_translate_uses_the_default_and_the_given_language(apis: Stack, http: httpx.Client) -> None:
    assert http.post("/apis/translate", json={"text": "Hallo"}).status_code == 200
    assert "into French." in last_upstream_request(apis)["messages"][0]["content"]
    assert http.post("/apis/translate", json={"text": "Hallo", "target_language": "German"}).status_code == 200
    assert "into German." in last_upstream_request(apis)["messages"][0]["content"]


def test_sentiment_answers_the_parsed_object_its_schema_asks_for(apis: Stack, http: httpx.Client) -> None:
    r = http.post("/apis/sentiment", json={"text": "I love it"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"label": "positive", "score": 0.0}
    fmt = last_upstream_request(apis)["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["label", "score"]


def test_a_wrong_answer_is_repaired_once(apis: Stack, http: httpx.Client) -> None:
    r = http.post("/apis/sentiment", json={"text": "meh [mock:bad_json_once]"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"label": "positive", "score": 0.0}
    repair = last_upstream_request(apis)["messages"]
    assert repair[-2]["role"] == "assistant" and "did not match the required JSON schema" in repair[-1]["content"]
    call = api_call_row(apis, r.json()["request_id"])
    assert (call["calls"], call["schema_failures"], call["status"]) == (2, 1, 200)
    assert len(children(apis, r.json()["request_id"], 2)) == 2


def test_an_answer_still_wrong_after_the_repair_is_a_502_with_the_raw_text(apis: Stack, http: httpx.Client) -> None:
    r = http.post("/apis/sentiment", json={"text": "meh [mock:bad_json]"})
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "output_schema_mismatch"
    assert "required property" in error["message"]
    assert json.loads(error["raw_output"]) == {"mock": "this answer does not match the schema"}
    call = api_call_row(apis, r.headers["x-request-id"])
    assert (call["calls"], call["schema_failures"], call["status"]) == (2, 2, 502)


@pytest.mark.parametrize(
    ("slug", "body", "status", "words"),
    [
        ("summarize", {}, 400, "Missing variable 'text'"),
        ("summarize", {"text": 3}, 400, "'text' must be a string"),
        ("summarize", {"text": "a", "txt": "b"}, 400, "Unknown variable 'txt'"),
        ("scored", {"n": "three", "unit": "cm"}, 400, "'n' must be a number"),
        ("scored", {"n": 3, "unit": "km"}, 400, "must be one of cm, m"),
        ("nowhere", {"text": "a"}, 404, "no API at /apis/nowhere"),
    ],
)
def test_bad_variables_and_unknown_apis_are_named(
    http: httpx.Client, slug: str, body: dict, status: int, words: str
) -> None:
    r = http.post(f"/apis/{slug}", json=body)
    assert r.status_code == status
    assert words in r.json()["error"]["message"]


def test_a_body_that_is_no_json_object_is_a_400(http: httpx.Client) -> None:
    for raw in (b"[1, 2]", b"{not json", b'"text"'):
        r = http.post("/apis/summarize", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, raw
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_a_call_without_a_valid_key_is_a_401(apis: Stack) -> None:
    url = apis.base_url.removesuffix("/v1")
    assert httpx.post(f"{url}/apis/summarize", json={"text": "a"}).status_code == 401
    r = httpx.post(f"{url}/apis/summarize", json={"text": "a"}, headers={"authorization": "Bearer sk-wrong"})
    assert r.status_code == 401


def test_a_three_step_chain_records_one_parent_and_three_children(apis: Stack, http: httpx.Client) -> None:
    r = http.post("/apis/digest", json={"text": "Water is wet. [mock:echo]", "target_language": "Dutch"})
    assert r.status_code == 200, r.text
    body = r.json()
    # Each step echoes its user message: the text went through all three.
    assert body["output"] == "Water is wet. [mock:echo]"
    assert "into Dutch." in last_upstream_request(apis)["messages"][0]["content"]
    rows = children(apis, body["request_id"], 3)
    assert [row["prompt_name"] for row in rows] == ["extract", "summarize", "translate"]
    call = api_call_row(apis, body["request_id"])
    assert call["calls"] == 3 and call["prompt_name"] == "digest"
    assert int(call["cost_pico_usd"]) == sum(int(row["cost_pico_usd"]) for row in rows) == body["cost"]["pico_usd"]
    assert call["prompt_tokens"] == sum(row["prompt_tokens"] for row in rows) == body["usage"]["prompt_tokens"]
    # The parent's time covers its children's, one after the other.
    assert call["latency_ns"] >= sum(row["latency_ns"] for row in rows)


def test_a_deprecated_api_still_answers_and_says_when_it_goes(http: httpx.Client) -> None:
    r = http.post("/apis/legacy", json={"text": "x"})
    assert r.status_code == 200
    assert r.headers["deprecation"].startswith("@") and int(r.headers["deprecation"][1:]) > 1_700_000_000
    assert r.headers["sunset"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert r.headers["link"] == '</apis/summarize>; rel="successor-version"'


def test_a_retired_api_is_gone_and_names_its_successor(http: httpx.Client) -> None:
    r = http.post("/apis/ancient", json={})
    assert r.status_code == 410
    assert r.json()["error"]["code"] == "api_retired"
    assert "/apis/summarize" in r.json()["error"]["message"]
    assert r.headers["link"] == '</apis/summarize>; rel="successor-version"'


def test_a_draft_answers_only_an_admin_that_says_it_is_testing(apis: Stack, http: httpx.Client) -> None:
    assert http.post("/apis/preview", json={}, headers={"x-sluice-test": "1"}).status_code == 403
    url = apis.base_url.removesuffix("/v1")
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(f"{url}/apis/preview", json={}, headers=admin)
    assert r.status_code == 403 and r.json()["error"]["code"] == "api_is_draft"
    r = httpx.post(f"{url}/apis/preview", json={}, headers={**admin, "x-sluice-test": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "Sluice routes"


def test_an_api_that_needs_approval_refuses_a_tenant_without_one(http: httpx.Client) -> None:
    r = http.post("/apis/gated", json={})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "subscription_required"


def test_stream_sends_the_text_as_it_comes_then_the_answer(apis: Stack, http: httpx.Client) -> None:
    events = []
    with http.stream("POST", "/apis/summarize?stream=true", json={"text": "go [mock:chunks=6]"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    deltas = [data["text"] for event, data in events if event == "delta"]
    assert len(deltas) == 6
    assert events[-1][0] == "answer"
    assert events[-1][1]["output"] == "".join(deltas) == "Sluice routes this answer through a"
    assert events[-1][1]["usage"]["completion_tokens"] == 6


def test_an_api_over_nats_answers_in_the_encoding_it_was_asked_in(apis: Stack) -> None:
    async def go() -> tuple[dict, ApiAnswer, Failure]:
        nc = await apis.connect()
        try:
            headers = {subjects.API_KEY_HEADER: f"Bearer {DEMO_KEY}"}
            ask = json.dumps({"variables": {"text": "over the bus [mock:echo]"}}).encode()
            as_json = await nc.request(subjects.in_api("summarize"), ask, timeout=20, headers=headers)
            packed = msgspec.msgpack.encode(ApiCall(variables={"text": "packed [mock:echo]"}))
            as_msgpack = await nc.request(subjects.in_api("summarize"), packed, timeout=20, headers=headers)
            bad = msgspec.msgpack.encode(ApiCall(variables={}))
            refused = await nc.request(subjects.in_api("summarize"), bad, timeout=20, headers=headers)
        finally:
            await nc.close()
        decode = msgspec.msgpack.Decoder(ApiAnswer | Failure).decode
        return json.loads(as_json.data), decode(as_msgpack.data), decode(refused.data)

    answer, packed, refused = asyncio.run(go())
    assert answer["output"] == "over the bus [mock:echo]" and answer["prompt"]["name"] == "summarize"
    assert isinstance(packed, ApiAnswer) and packed.output == "packed [mock:echo]"
    assert isinstance(refused, Failure) and refused.status == 400 and "'text'" in refused.message
    call = api_call_row(apis, packed.request_id)
    assert (call["origin"], call["status"]) == ("nats", 200)
    [child] = children(apis, packed.request_id, 1)
    assert child["origin"] == "nats"


def test_versions_and_labels_move_and_roll_back_through_the_admin_api(
    apis: Stack, http: httpx.Client, admin: httpx.Client
) -> None:

    def content(text: str) -> dict:
        return {
            "model": "demo-model",
            "messages": [{"role": "user", "template": text + " {{word}} [mock:echo]"}],
            "variables": [{"name": "word"}],
        }

    made = admin.post(
        "/prompts", json={"name": "greet", **content("v1"), "api": {"slug": "greet", "state": "published"}}
    )
    assert made.status_code == 201, made.text
    assert made.json()["labels"] == {"production": 1}
    assert http.post("/apis/greet", json={"word": "hi"}).json()["output"] == "v1 hi [mock:echo]"

    second = admin.post("/prompts/greet/versions", json={**content("v2"), "label": "staging"})
    assert second.status_code == 201 and second.json()["version"] == 2
    # staging points at v2; production, which the API serves, still at v1
    assert admin.get("/prompts/greet").json()["labels"] == {"production": 1, "staging": 2}
    assert http.post("/apis/greet", json={"word": "hi"}).json()["output"] == "v1 hi [mock:echo]"
    diff = admin.get("/prompts/greet/diff", params={"a": "production", "b": "staging"}).json()["diff"]
    assert '-      "template": "v1 {{word}} [mock:echo]"' in diff and '+      "template": "v2' in diff

    assert admin.put("/prompts/greet/labels/production", json={"version": 2}).status_code == 200
    answer = http.post("/apis/greet", json={"word": "hi"}).json()
    assert (answer["output"], answer["prompt"]["version"]) == ("v2 hi [mock:echo]", 2)
    assert admin.put("/prompts/greet/labels/production", json={"version": 1}).status_code == 200  # rollback
    assert http.post("/apis/greet", json={"word": "hi"}).json()["prompt"]["version"] == 1
    assert admin.put("/prompts/greet/labels/production", json={"version": 9}).status_code == 404

    gone = admin.put("/prompts/greet/api", json={"slug": "greet", "state": "retired", "successor": "summarize"})
    assert gone.status_code == 200 and gone.json()["api"]["deprecated_at_ms"] > 0
    assert http.post("/apis/greet", json={"word": "hi"}).status_code == 410
    wanted, actions, deadline = {"create", "version", "label production", "retire"}, set(), time.monotonic() + 30
    while not wanted <= actions and time.monotonic() < deadline:
        time.sleep(0.2)
        trail = apis.query("audit", limit=200)
        actions = {row[2] for row in trail["rows"] if row[4] == "greet" and row[3] == "prompt"}
    assert wanted <= actions


def test_prompt_writes_need_a_gateway_admin_and_valid_content(apis: Stack, admin: httpx.Client) -> None:
    as_caller = httpx.post(
        f"{apis.admin_url}/prompts", json={"name": "x"}, headers={"authorization": f"Bearer {DEMO_KEY}"}
    )
    assert as_caller.status_code == 403
    no_model = {"name": "bad", "model": "nope", "messages": [{"role": "user", "template": "hi"}]}
    assert admin.post("/prompts", json=no_model).json()["error"]["code"] == "model_not_found"
    undeclared = {"name": "bad", "model": "demo-model", "messages": [{"role": "user", "template": "{{who}}"}]}
    r = admin.post("/prompts", json=undeclared)
    assert r.status_code == 400 and "{{who}}" in r.json()["error"]["message"]
    bad_schema = {**undeclared, "messages": [{"role": "user", "template": "hi"}], "output_schema": {"type": "objec"}}
    assert "not a valid JSON Schema" in admin.post("/prompts", json=bad_schema).json()["error"]["message"]
    taken = {**bad_schema, "output_schema": None, "name": "other", "api": {"slug": "summarize"}}
    assert admin.post("/prompts", json=taken).status_code == 409
    # The config file owns the demo prompts: the admin API leaves them alone.
    assert admin.put("/prompts/summarize/labels/production", json={"version": 1}).status_code == 409


def test_the_command_line_creates_versions_labels_and_publishes(
    apis: Stack, http: httpx.Client, tmp_path: Path
) -> None:
    first = tmp_path / "v1.toml"
    first.write_text(
        'model = "demo-model"\n[[messages]]\nrole = "user"\ntemplate = "one {{x}} [mock:echo]"\n'
        '[[variables]]\nname = "x"\n'
    )
    second = tmp_path / "v2.json"
    second.write_text(
        json.dumps({"model": "demo-model", "messages": [{"role": "user", "template": "two [mock:echo]"}]})
    )
    assert sluice(apis, "prompts", "create", "cli-made", str(first)).returncode == 0
    made = json.loads(sluice(apis, "prompts", "version", "cli-made", str(second), "--label", "staging").stdout)
    assert made["version"] == 2
    sluice(apis, "prompts", "publish", "cli-made", "--slug", "cli", "--serve", "staging")
    assert http.post("/apis/cli", json={}).json()["output"] == "two [mock:echo]"
    sluice(apis, "prompts", "label", "cli-made", "staging", "1")  # roll staging back
    assert http.post("/apis/cli", json={"x": "!"}).json()["output"] == "one ! [mock:echo]"
    sluice(
        apis,
        "prompts",
        "publish",
        "cli-made",
        "--slug",
        "cli",
        "--serve",
        "staging",
        "--state",
        "deprecated",
        "--successor",
        "summarize",
        "--sunset",
        "2031-06-01T00:00:00Z",
    )
    r = http.post("/apis/cli", json={"x": "!"})
    assert r.status_code == 200 and r.headers["sunset"] == "Sun, 01 Jun 2031 00:00:00 GMT"

    wrong = sluice(apis, "prompts", "label", "cli-made", "staging", "7", check=False)
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and "no version 7" in wrong.stderr


def test_openapi_describes_each_published_api_from_its_variables(apis: Stack, http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/messages"):
        assert path in doc["paths"]
    chat_body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "messages" in doc["components"]["schemas"][chat_body["$ref"].rsplit("/", 1)[-1]]["properties"]
    translate = doc["paths"]["/apis/translate"]["post"]
    variables = translate["requestBody"]["content"]["application/json"]["schema"]
    assert variables["required"] == ["text"]
    assert variables["properties"]["target_language"] == {"type": "string", "default": "French"}
    scored = doc["paths"]["/apis/scored"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert scored["properties"]["unit"]["enum"] == ["cm", "m"] and scored["properties"]["n"]["type"] == "number"
    answer = doc["paths"]["/apis/sentiment"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["output"]["properties"]["label"]["enum"] == ["positive", "negative", "neutral"]
    # A chain answers with its last step's output.
    assert doc["paths"]["/apis/digest"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert doc["paths"]["/apis/legacy"]["post"]["deprecated"] is True
    for hidden in ("/apis/preview", "/apis/ancient"):  # a draft and a retired API
        assert hidden not in doc["paths"]

    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/apis/translate" in page.text and "target_language" in page.text and "<script" not in page.text


def test_a_client_that_goes_away_mid_stream_cancels_the_upstream_call(apis: Stack) -> None:
    before = apis.mock_stats()["cancelled_streams"]
    url = apis.base_url.removesuffix("/v1")
    with (
        httpx.Client(timeout=20, headers={"authorization": f"Bearer {DEMO_KEY}"}) as client,
        client.stream(
            "POST", f"{url}/apis/summarize?stream=true", json={"text": "[mock:chunks=200] [mock:chunk_ms=20]"}
        ) as r,
    ):
        lines = r.iter_lines()
        assert next(lines) == "event: delta"
        request_id = r.headers["x-request-id"]
    apis.wait_upstream_cancelled(before)
    call = api_call_row(apis, request_id)
    assert call["error_code"] == "client_closed"
    [child] = children(apis, request_id, 1)
    # The step is charged for what the upstream generated before the cancel.
    assert child["client_disconnected"] and 0 < child["completion_tokens"] < 200
    assert int(call["cost_pico_usd"]) == int(child["cost_pico_usd"]) > 0


def test_hostile_bus_calls_get_a_clear_answer_and_run_nothing(apis: Stack) -> None:
    async def go() -> list[bytes]:
        nc = await apis.connect()
        headers = {subjects.API_KEY_HEADER: f"Bearer {DEMO_KEY}"}
        before = apis.mock_stats()["requests"]
        answers = []
        try:
            for payload in (
                b"\xc1\x00",
                b'{"variables": [1, 2]}',
                b'{"variables": {"text": "x"}, "reply": "not.an.inbox"}',
                msgspec.msgpack.encode({"variables": {"text": "x"}, "stream": "yes"}),
            ):
                msg = await nc.request(subjects.in_api("summarize"), payload, timeout=10, headers=headers)
                answers.append(msg.data)
            # No reply subject at all: nothing to answer, so nothing runs.
            await nc.publish(subjects.in_api("summarize"), b'{"variables": {"text": "x"}}', headers=headers)
            await nc.flush()
            await asyncio.sleep(0.3)
        finally:
            await nc.close()
        assert apis.mock_stats()["requests"] == before
        return answers

    answers = asyncio.run(go())
    decode = msgspec.msgpack.Decoder(Failure).decode
    assert decode(answers[0]).code == "invalid_json"
    assert json.loads(answers[1])["error"]["status"] == 400
    assert "inbox" in json.loads(answers[2])["error"]["message"]
    assert decode(answers[3]).status == 400


def test_a_provider_killed_mid_call_ends_the_call_with_a_clear_error_and_a_row(apis: Stack) -> None:
    """Last in this module: it kills the provider (the supervisor starts another)."""
    url = apis.base_url.removesuffix("/v1")
    events: list[str] = []
    with (
        httpx.Client(timeout=30, headers={"authorization": f"Bearer {DEMO_KEY}"}) as client,
        client.stream(
            "POST", f"{url}/apis/summarize?stream=true", json={"text": "[mock:chunks=300] [mock:chunk_ms=20]"}
        ) as r,
    ):
        request_id = r.headers["x-request-id"]
        provider = apis.layout.process_of("provider")
        before = apis.supervisor.pids()[provider]
        for line in r.iter_lines():
            events.append(line)
            if len(events) == 6:  # a few deltas in
                os.kill(before, signal.SIGKILL)
    assert "event: error" in events
    error = json.loads(events[events.index("event: error") + 1].removeprefix("data: "))["error"]
    assert error["code"] == "worker_died"
    call = api_call_row(apis, request_id)
    assert (call["status"], call["error_code"]) == (502, "worker_died")
    deadline = time.monotonic() + 30
    while apis.supervisor.pids().get(provider) in (before, None):
        assert time.monotonic() < deadline, "the provider was not restarted"
        time.sleep(0.1)


def test_a_prompt_apis_variables_are_masked_like_any_message(apis: Stack) -> None:
    """Tenant "private" masks every detector: a value bound into the
    template never reaches the upstream, and the answer has it back."""
    url = apis.base_url.removesuffix("/v1")
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {PRIVATE_KEY}"}, timeout=20) as private:
        r = private.post("/apis/summarize", json={"text": "Write to jane.doe@example.com today. [mock:echo]"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "Write to jane.doe@example.com today. [mock:echo]"
    sent = json.dumps(last_upstream_request(apis))
    assert "jane.doe@example.com" not in sent and "[EMAIL_1]" in sent
