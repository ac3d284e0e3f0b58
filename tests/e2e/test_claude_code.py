"""Claude Code (`claude -p`, the version `make agent-clients` pins) with ANTHROPIC_BASE_URL at the
gateway, on deployments of every family the mock serves: Anthropic's (Claude Code's body passes
through), OpenAI's and Gemini's (translated both ways); and what else it asks of an Anthropic API:
a token count before it answers a large tool result (``POST /v1/messages/count_tokens``), and the
models list when gateway model discovery is on (``GET /v1/models``, in Anthropic's shape).

This module's stack gives two groups Claude Code's own model names as aliases (README, "Claude
Code"): its main model's to an Anthropic deployment, its small model's to an OpenAI one. Claude Code
never shows a request id, so its rows are found by model and time (the named query recent_requests).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from ingress.compression import zstd
from schemas.chat import ChatBody, Message
from services import usage as usage_svc
from tests import agent_clients
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

# Claude Code's names for its models, routed to groups of the operator's (README, "Claude Code").
CLAUDE_CODE_NAMES = """
[[models]]
name = "coder"
aliases = ["claude-opus-5-5", "claude-sonnet-4-6"]
provider = "anthropic"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "claude-sonnet-4-20250514"

[[models]]
name = "coder-small"
aliases = ["claude-haiku-4-5"]
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini"
catalog_model = "gpt-4o-mini"
"""
FAMILY = {"claude-model": "anthropic", "demo-model": "openai", "gemini-model": "gemini"}
ANSWER = "Sluice routes this answer through"  # the mock's first five words: [mock:chunks=5]
TIMEOUT_S = 90  # a run takes about a second
FIXTURES = Path(__file__).parents[1] / "fixtures" / "clients"


def claude_code_installed() -> bool:
    version = agent_clients._version("@anthropic-ai/claude-code")
    return version == agent_clients.CLAUDE_CODE_VERSION and os.access(agent_clients.CLAUDE_BIN, os.X_OK)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not claude_code_installed():
        pytest.fail(
            f"Claude Code {agent_clients.CLAUDE_CODE_VERSION} is not in {agent_clients.CLIENTS_DIR}: "
            "run `make agent-clients` (`make test` does)"
        )
    # Claude Code's requests for its default model are past the shared test gateway's 64 KB: the default 4 MiB
    s = Stack(
        tmp_path_factory.mktemp("claude-code"), timeout_s=30, extra_config=CLAUDE_CODE_NAMES, max_body_bytes=4 << 20
    ).start()
    yield s
    s.stop()


@pytest.fixture
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=root(stack), api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def root(stack: Stack) -> str:
    return stack.base_url.removesuffix("/v1")


def claude_code(stack: Stack, model: str, prompt: str, home: Path, **options: Any) -> str:
    """`claude -p PROMPT`; its answer (stdout), once it exited 0."""
    try:
        done = agent_clients.claude_print(root(stack), DEMO_KEY, model, prompt, home, TIMEOUT_S, **options)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"claude -p ran past {TIMEOUT_S}s: {str(exc.stderr or '')[-2000:]}")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout.strip()


def upstream_requests(stack: Stack, n: int) -> list[dict[str, Any]]:
    """The last ``n`` request bodies the mock received, oldest first."""
    return httpx.get(f"{stack.mock_url}/mock/requests", params={"last": n}).json()[::-1]


def rows_since(stack: Stack, since_ms: int, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The requests rows made since ``since_ms``, oldest first, once there are ``n``."""
    deadline = time.monotonic() + timeout
    while True:
        result = stack.query("recent_requests", minutes=10, limit=200)
        assert result["error"] is None, result["error"]
        recent = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        mine = sorted((r for r in recent if r["ts_ms"] >= since_ms), key=lambda r: r["ts_ms"])
        if len(mine) >= n or time.monotonic() > deadline:
            return [stack.request_row(r["request_id"]) for r in mine]
        time.sleep(0.1)


def run(stack: Stack, model: str, prompt: str, home: Path, requests: int, **options: Any) -> list[dict[str, Any]]:
    """Run Claude Code; it answers with the mock's text after ``requests`` requests reached the
    mock. Their bodies as the mock received them, oldest first (its rows: ``rows_since``)."""
    home.mkdir(parents=True, exist_ok=True)
    before = stack.mock_stats()["requests"]
    assert ANSWER in claude_code(stack, model, prompt, home, **options)
    assert stack.mock_stats()["requests"] - before == requests
    return upstream_requests(stack, requests)


def large_file(path: Path, size: int = 26_000) -> str:
    """Words to about ``size`` bytes: a Read of 25 KB or more makes Claude Code count tokens first."""
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "sigma", "theta", "zeta"]
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(" ".join(f"{rng.choice(words)}{rng.randint(1, 999)}" for _ in range(12)))
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


@pytest.mark.parametrize("model", list(FAMILY))
def test_claude_code_answers_on_every_family(stack: Stack, model: str, tmp_path: Path) -> None:
    since_ms = int(time.time() * 1000) - 1
    [body] = run(stack, model, "Say hello [mock:chunks=5]", tmp_path, requests=1)
    [row] = rows_since(stack, since_ms, 1)
    assert (row["api"], row["status"], row["model"], row["provider"]) == ("messages", 200, model, FAMILY[model])
    assert row["stream"] == 1 and row["prompt_tokens"] > 0 and row["completion_tokens"] == 5
    if FAMILY[model] == "anthropic":  # Claude Code's own body: its tools, thinking and betas as written
        assert "Read" in [t["name"] for t in body["tools"]] and "thinking" in body
    elif FAMILY[model] == "openai":
        assert "Read" in [t["function"]["name"] for t in body["tools"]]
    else:
        assert "Read" in [f["name"] for t in body["tools"] for f in t["functionDeclarations"]]


def test_the_read_the_mock_asked_for_is_counted_run_and_sent_back(stack: Stack, tmp_path: Path) -> None:
    """The mock calls Read (the first tool the model can see: Claude Code declares a deferred
    placeholder before it) with the arguments its schema allows, a file_path of "mock"; Claude
    Code reads ./mock, a 26 KB file, counts the result's tokens (the Anthropic deployment's own
    count endpoint), sends the tool_result back and answers with the mock's text."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    text = large_file(work / "mock")
    since_ms = int(time.time() * 1000) - 1
    first, count, second = run(
        stack,
        "claude-model",
        "What is in the file? [mock:tool_once] [mock:chunks=5]",
        home,
        3,
        tools=("Read",),
        cwd=work,
    )
    assert [t["name"] for t in first["tools"]] == ["DeferredToolPlaceholder", "Read"]
    assert first["tools"][0]["defer_loading"] is True
    # the count: Claude Code's body (model, messages, tools) with the deployment's model
    assert set(count) == {"model", "messages", "tools"} and count["model"] == "claude-sonnet-4-20250514"
    assert count["messages"][0]["content"].split() == text.split()
    blocks = [b for m in second["messages"] if isinstance(m["content"], list) for b in m["content"]]
    [call] = [b for b in blocks if b["type"] == "tool_use"]
    [result] = [b for b in blocks if b["type"] == "tool_result"]
    assert (call["name"], call["input"]) == ("Read", {"file_path": "mock"})
    assert result["tool_use_id"] == call["id"] and text.split()[0] in str(result["content"])
    rows = rows_since(stack, since_ms, 3)
    assert [(r["api"], r["status"], r["model"]) for r in rows] == [
        ("messages", 200, "claude-model"),
        ("count_tokens", 200, "claude-model"),
        ("messages", 200, "claude-model"),
    ]
    counted = rows[1]
    assert (counted["prompt_tokens"], counted["completion_tokens"], counted["cost_pico_usd"]) == (0, 0, 0)


def test_a_tool_call_round_trips_through_openais_family(stack: Stack, tmp_path: Path) -> None:
    """Another family gets every tool Claude Code declares (it has no deferred loading): the mock
    calls the first, the placeholder; Claude Code answers it with an error result and goes on."""
    second = run(stack, "demo-model", "Look around [mock:tool_once] [mock:chunks=5]", tmp_path, 2, tools=("Read",))[1]
    calls = [c for m in second["messages"] for c in m.get("tool_calls") or ()]
    results = [m for m in second["messages"] if m["role"] == "tool"]
    assert [c["function"]["name"] for c in calls] == ["DeferredToolPlaceholder"]
    assert [r["tool_call_id"] for r in results] == [calls[0]["id"]] and "No such tool" in str(results[0]["content"])


def test_claude_codes_own_model_names_reach_their_groups(stack: Stack, tmp_path: Path) -> None:
    """Its default main model and its haiku slot (the small, fast model), each an alias of a group;
    with gateway model discovery on, its GET /v1/models is answered in Anthropic's shape."""
    since_ms = int(time.time() * 1000) - 1
    discovery = {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}
    main = run(stack, "claude-opus-5-5", "Say hello [mock:chunks=5]", tmp_path / "a", 1, env=discovery)
    # "haiku" is Claude Code's small model: ANTHROPIC_DEFAULT_HAIKU_MODEL (claude_print sets it)
    small = run(stack, "haiku", "Say hello [mock:chunks=5]", tmp_path / "b", 1, small_model="claude-haiku-4-5")
    assert main[0]["model"] == "claude-sonnet-4-20250514" and small[0]["model"] == "gpt-4o-mini"
    rows = rows_since(stack, since_ms, 2)
    assert [(r["model"], r["model_group"], r["provider"]) for r in rows] == [
        ("claude-opus-5-5", "coder", "anthropic"),
        ("claude-haiku-4-5", "coder-small", "openai"),
    ]


def test_claude_codes_models_request_is_answered_in_anthropics_shape(stack: Stack) -> None:
    captured = json.loads((FIXTURES / "claude_code_models_request.json").read_text())
    headers = {k: v for k, v in captured["headers"].items() if k.lower() not in ("host", "connection")}
    headers["x-api-key"] = DEMO_KEY
    answer = httpx.get(root(stack) + captured["path"], headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    # Claude Code accepts zstd, and gets it; httpx here reads gzip, deflate and br only.
    assert answer.headers["content-encoding"] == "zstd"
    listed = json.loads(zstd.decompress(answer.content))
    ids = [m["id"] for m in listed["data"]]
    assert {"claude-opus-5-5", "claude-sonnet-4-6", "claude-haiku-4-5", "coder", "claude-model"} <= set(ids)
    assert ids == sorted(ids) and listed["has_more"] is False
    assert (listed["first_id"], listed["last_id"]) == (ids[0], ids[-1])
    assert all(set(m) == {"type", "id", "display_name", "created_at"} and m["type"] == "model" for m in listed["data"])
    # the key is checked, and refused in Anthropic's shape
    refused = httpx.get(root(stack) + captured["path"], headers={**headers, "x-api-key": "sk-nope"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"


def test_the_anthropic_sdk_pages_through_the_models(stack: Stack, claude: anthropic.Anthropic) -> None:
    first = claude.models.list(limit=3)
    assert len(first.data) == 3 and first.has_more
    every = [m.id for m in claude.models.list(limit=3)]  # the SDK follows after_id
    assert every == sorted(every) and len(every) == len(set(every)) > 3
    # Bearer without anthropic-version: OpenAI's shape, as before
    openai_shaped = httpx.get(f"{stack.base_url}/models", headers={"authorization": f"Bearer {DEMO_KEY}"}).json()
    assert openai_shaped["object"] == "list" and [m["id"] for m in openai_shaped["data"]] == every


SYSTEM = "You count words for a living."
MESSAGES = [
    {"role": "user", "content": "How many tokens do these few words make?"},
    {"role": "assistant", "content": "Let me count them."},
    {"role": "user", "content": "Please do, and tell me."},
]


def test_anthropic_counts_exactly_what_its_message_would_use(stack: Stack, claude: anthropic.Anthropic) -> None:
    counted = claude.messages.with_raw_response.count_tokens  # type: ignore[attr-defined]
    raw = counted(
        model="claude-model",
        system=SYSTEM,
        messages=MESSAGES,
        extra_headers={"anthropic-beta": "token-counting-2024-11-01"},
    )
    assert raw.headers["x-sluice-token-count"] == "upstream" and raw.headers["x-sluice-deployment"] == "claude-model"
    assert httpx.get(f"{stack.mock_url}/mock/last-headers").json()["anthropic-beta"] == "token-counting-2024-11-01"
    message = claude.messages.create(model="claude-model", max_tokens=20, system=SYSTEM, messages=MESSAGES)
    assert raw.parse().input_tokens == message.usage.input_tokens > 0
    row = stack.request_row(raw.headers["x-request-id"])
    assert (row["api"], row["status"], row["provider"], row["deployment"]) == (
        "count_tokens",
        200,
        "anthropic",
        "claude-model",
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost_pico_usd"]) == (0, 0, 0)


@pytest.mark.parametrize("model", ["demo-model", "gemini-model", "claude-haiku-4-5"])
def test_other_families_are_counted_by_the_gateway(stack: Stack, claude: anthropic.Anthropic, model: str) -> None:
    before = stack.mock_stats()["requests"]
    raw = claude.messages.with_raw_response.count_tokens(model=model, system=SYSTEM, messages=MESSAGES)
    assert raw.headers["x-sluice-token-count"] == "gateway"
    assert stack.mock_stats()["requests"] == before  # no upstream call
    # what the gateway counts as the prompt of a completion whose upstream reports no usage
    catalog = {"demo-model": "gpt-3.5-turbo", "gemini-model": None, "claude-haiku-4-5": "gpt-4o-mini"}[model]
    unified = ChatBody(
        model=model, messages=[Message(role="system", content=SYSTEM), *(Message(**m) for m in MESSAGES)]
    )
    assert raw.parse().input_tokens == usage_svc.settle(None, unified, "", catalog).prompt_tokens
    row = stack.request_row(raw.headers["x-request-id"])
    assert (row["api"], row["status"], row["cost_pico_usd"], row["prompt_tokens"]) == ("count_tokens", 200, 0, 0)


def test_a_count_checks_the_key_and_takes_a_request_but_no_tokens_or_budget(
    stack: Stack, claude: anthropic.Anthropic
) -> None:
    stranger = anthropic.Anthropic(base_url=root(stack), api_key="sk-nope", max_retries=0)
    with stranger, pytest.raises(anthropic.AuthenticationError):
        stranger.messages.count_tokens(model="claude-model", messages=MESSAGES)
    # a key with room for 3 requests a minute, 60 tokens and a budget of a millionth of a dollar
    made = httpx.post(
        f"{stack.admin_url}/keys",
        json={"tenant": "demo", "limits": {"rpm": 3, "tpm": 60}, "budget": {"usd": "0.000001", "period": "daily"}},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    long_prompt = [{"role": "user", "content": "word " * 200}]
    with anthropic.Anthropic(base_url=root(stack), api_key=made.json()["secret"], max_retries=0) as limited:
        deadline = time.monotonic() + 5
        while True:  # a new key reaches the stages within a second
            try:
                raw = limited.messages.with_raw_response.count_tokens(model="demo-model", messages=long_prompt)
                break
            except anthropic.AuthenticationError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert raw.parse().input_tokens > 200  # more than the key's tokens a minute: counting uses none
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "2"
        with pytest.raises(anthropic.RateLimitError):  # the same prompt as a message would pass both
            limited.messages.create(model="demo-model", max_tokens=10, messages=long_prompt)
        limited.messages.count_tokens(model="claude-model", messages=long_prompt)
        limited.messages.count_tokens(model="gemini-model", messages=long_prompt)
        with pytest.raises(anthropic.RateLimitError) as fourth:  # the fourth request this minute
            limited.messages.count_tokens(model="demo-model", messages=long_prompt)
    assert "3 requests per minute" in str(fourth.value)
