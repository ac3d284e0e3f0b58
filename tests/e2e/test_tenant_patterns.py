"""Tenants' own patterns end to end: the admin API refuses one RE2 cannot
run (a backreference) with a 400 naming the detector, and a pattern that
would make Python's ``re`` backtrack for ever, ``(a+)+$``, redacts a 100 KB
prompt that still reaches the upstream and is answered.

Its own gateway: the shared one takes bodies of at most 64 KB."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_admin_api import admin, error_of, new_key, unique, until
from tests.stack import Stack


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("patterns"), timeout_s=20)
    text = s.layout.config.read_text()
    assert "max_body_bytes = 65536" in text
    s.layout.config.write_text(text.replace("max_body_bytes = 65536", "max_body_bytes = 1048576"))
    s.start()
    yield s
    s.stop()


def chat(stack: Stack, key: str, content: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def upstream_got(stack: Stack) -> str:
    """The user message of the last request the mock upstream received."""
    return httpx.get(f"{stack.mock_url}/mock/requests", params={"last": 1}).json()[0]["messages"][0]["content"]


def test_a_pattern_re2_cannot_run_is_refused_naming_the_detector(roomy: Stack) -> None:
    tenant = unique("t")
    backreference = {"custom": [{"name": "doubled", "pattern": r"(\w+) \1", "action": "redact"}]}
    resp = admin(roomy, "POST", "/tenants", json={"id": tenant, "privacy": backreference})
    assert error_of(resp) == (400, "invalid_request_error", "invalid_pattern")
    assert "'doubled'" in resp.json()["error"]["message"] and "RE2" in resp.json()["error"]["message"]
    assert admin(roomy, "GET", f"/tenants/{tenant}").status_code == 404

    assert admin(roomy, "POST", "/tenants", json={"id": tenant}).status_code == 201
    lookbehind = {"custom": [{"name": "after_id", "pattern": r"(?<=id:)\d+"}]}
    resp = admin(roomy, "PATCH", f"/tenants/{tenant}", json={"privacy": lookbehind})
    assert error_of(resp) == (400, "invalid_request_error", "invalid_pattern")
    assert "'after_id'" in resp.json()["error"]["message"]
    assert admin(roomy, "GET", f"/tenants/{tenant}").json().get("privacy") is None


@pytest.mark.timeout(120)
def test_a_runaway_pattern_redacts_a_100_kb_prompt_that_is_answered(roomy: Stack) -> None:
    tenant = unique("t")
    runaway = {"custom": [{"name": "runaway", "pattern": "(a+)+$", "action": "redact"}]}
    assert admin(roomy, "POST", "/tenants", json={"id": tenant, "privacy": runaway}).status_code == 201
    key = new_key(roomy, tenant)["secret"]
    # Once the stages hold the rules, the tail run of a's is redacted.
    redacted = "hello [REDACTED:runaway]"
    until(lambda: chat(roomy, key, "hello aaaa").status_code == 200 and upstream_got(roomy) == redacted)

    # Runs of 40 a's, each followed by a space: ``re`` would try 2**40 ways
    # to split each before failing at the space.
    words = ("a" * 40 + " ") * 2_500
    resp = chat(roomy, key, words + "a" * 40)
    assert len(words) >= 100_000
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"]
    assert upstream_got(roomy) == words + "[REDACTED:runaway]"
