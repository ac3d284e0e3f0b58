"""Codex CLI (`codex exec`, the version `make agent-clients` pins) with a model provider whose
base_url is the gateway (wire_api "responses"), on deployments of every family the mock serves:
OpenAI's (Codex's body passes through), Anthropic's and Gemini's (translated both ways).

Codex asks differently for a model it knows (a slug of its bundled catalog, matched by prefix):
reasoning effort, text.verbosity, the custom apply_patch tool, tool_search; for one it does not
know, a reasoning summary and a namespace tool. This module's stack adds a gpt-5.5-* name on each
family for the first; the test config's demo-model, claude-model and gemini-model stand for the second.

What the mock counted for each answer (GET /mock/usage) is what the gateway's rows must hold; Codex
never shows a request id, so its rows are found by model and time (the named query recent_requests).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import agent_clients
from tests.stack import DEMO_KEY, Stack

KNOWN = """
[[models]]
name = "gpt-5.5-openai"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-5.5"
catalog_model = "gpt-3.5-turbo"

[[models]]
name = "gpt-5.5-anthropic"
provider = "anthropic"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "claude-sonnet-4-20250514"

[[models]]
name = "gpt-5.5-gemini"
provider = "gemini"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "gemini-2.5-flash"
"""
FAMILY = {
    "demo-model": "openai",
    "claude-model": "anthropic",
    "gemini-model": "gemini",
    "gpt-5.5-openai": "openai",
    "gpt-5.5-anthropic": "anthropic",
    "gpt-5.5-gemini": "gemini",
}
ANSWER = "Sluice routes this answer"  # the mock's first four words: [mock:chunks=4]
TIMEOUT_S = 60  # a run takes about a second; Codex would retry a refused connection for ever


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not agent_clients.codex_installed():
        pytest.fail(
            f"Codex CLI {agent_clients.CODEX_VERSION} is not in {agent_clients.CLIENTS_DIR}: "
            "run `make agent-clients` (`make test` does)"
        )
    s = Stack(tmp_path_factory.mktemp("codex"), extra_config=KNOWN).start()
    yield s
    s.stop()


def codex(stack: Stack, model: str, prompt: str, home: Path) -> str:
    """`codex exec` in a read-only sandbox; its last answer (stdout), once it exited 0."""
    try:
        done = agent_clients.codex_exec(stack.base_url.removesuffix("/v1"), DEMO_KEY, model, prompt, home, TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"codex exec ran past {TIMEOUT_S}s: {str(exc.stderr or '')[-2000:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def upstream(stack: Stack, what: str, n: int) -> list[Any]:
    """The last ``n`` requests the mock received (what="requests") or its answers' usage ("usage"), oldest first."""
    return httpx.get(f"{stack.mock_url}/mock/{what}", params={"last": n}).json()[::-1]


def rows_since(stack: Stack, model: str, since_ms: int, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The requests rows of ``model`` made since ``since_ms``, oldest first, once there are ``n``."""
    deadline = time.monotonic() + timeout
    while True:
        result = stack.query("recent_requests", minutes=10, limit=200)
        assert result["error"] is None, result["error"]
        recent = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        mine = sorted((r for r in recent if r["model"] == model and r["ts_ms"] >= since_ms), key=lambda r: r["ts_ms"])
        if len(mine) >= n or time.monotonic() > deadline:
            return [stack.request_row(r["request_id"]) for r in mine]
        time.sleep(0.1)


def run_and_check(stack: Stack, model: str, prompt: str, home: Path, requests: int) -> list[dict[str, Any]]:
    """Run Codex; it answers with the mock's text after ``requests`` upstream requests, each a
    gateway row of api "responses" holding the tokens the mock counted. The upstream bodies, oldest first."""
    before = stack.mock_stats()["requests"]
    since_ms = int(time.time() * 1000) - 1
    assert codex(stack, model, prompt, home) == ANSWER
    assert stack.mock_stats()["requests"] - before == requests
    bodies, usage = upstream(stack, "requests", requests), upstream(stack, "usage", requests)
    rows = rows_since(stack, model, since_ms, requests)
    assert [(r["api"], r["status"], r["stream"], r["tenant_id"]) for r in rows] == [
        ("responses", 200, True, "demo")
    ] * requests
    assert [{"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"]} for r in rows] == usage
    return bodies


def declared(body: dict[str, Any], family: str) -> list[str]:
    """The names of the function tools a request to the upstream declared."""
    if family == "openai":
        return [t["name"] for t in body.get("tools") or () if t.get("type") == "function"]
    if family == "anthropic":
        return [t["name"] for t in body.get("tools") or ()]
    return [f["name"] for t in body.get("tools") or () for f in t.get("functionDeclarations") or ()]


def tool_output(body: dict[str, Any], family: str) -> str:
    """The exec_command call a request to the upstream holds and its output, in its family's
    words, checked to be one pair (the output answers that call); the output's text."""
    if family == "openai":
        items = [i for i in body["input"] if isinstance(i, dict)]
        [call] = [i for i in items if i.get("type") == "function_call"]
        [output] = [i for i in items if i.get("type") == "function_call_output"]
        assert call["name"] == "exec_command" and output["call_id"] == call["call_id"]
        return output["output"] if isinstance(output["output"], str) else str(output["output"])
    if family == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        [call] = [b for b in blocks if b["type"] == "tool_use"]
        [result] = [b for b in blocks if b["type"] == "tool_result"]
        assert call["name"] == "exec_command" and result["tool_use_id"] == call["id"]
        return str(result["content"])
    parts = [p for c in body["contents"] for p in c["parts"]]
    [call] = [p["functionCall"] for p in parts if "functionCall" in p]
    [result] = [p["functionResponse"] for p in parts if "functionResponse" in p]
    assert call["name"] == result["name"] == "exec_command"
    return str(result["response"])


@pytest.mark.parametrize("model", list(FAMILY))
def test_a_prompt_is_answered(stack: Stack, model: str, tmp_path: Path) -> None:
    [body] = run_and_check(stack, model, "Say hello [mock:chunks=4]", tmp_path, requests=1)
    family = FAMILY[model]
    assert "exec_command" in declared(body, family)
    if family == "openai":  # Codex's body as it sent it
        assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
        if model.startswith("gpt-5.5"):
            assert body["text"] == {"verbosity": "low"}
            assert {"custom", "tool_search", "web_search"} <= {t["type"] for t in body["tools"]}
        else:
            assert "namespace" in {t["type"] for t in body["tools"]}


@pytest.mark.parametrize("model", list(FAMILY))
def test_the_tool_codex_declared_is_run_and_its_output_sent_back(stack: Stack, model: str, tmp_path: Path) -> None:
    """The mock calls exec_command (the first function tool) with arguments its schema allows;
    Codex runs the command (it fails harmlessly: there is no program "mock"), sends the call and
    its output back with the whole conversation, and answers with the mock's text."""
    first, second = run_and_check(stack, model, "List the files [mock:tool_once] [mock:chunks=4]", tmp_path, 2)
    family = FAMILY[model]
    assert "function_call_output" not in str(first) and "tool_result" not in str(first)
    assert "functionResponse" not in str(first)
    # Codex's report of the run (the mock's arguments for an OpenAI deployment also ask for
    # max_output_tokens 0: the shell's complaint itself is cut)
    assert "Process exited with code 127" in tool_output(second, family)
    assert declared(second, family) == declared(first, family)
