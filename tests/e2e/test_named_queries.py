"""Named queries (SQL files in analytics/named/) over the admin API and the
command line, on rows the test makes."""

from __future__ import annotations

import json
import time

import httpx

from analytics.queries import NAMED
from tests.integration.test_admin_cli import sluice
from tests.stack import ADMIN_KEY, DEMO_KEY, REDACT_KEY, Stack


def chat(stack: Stack, key: str, text: str) -> str:
    r = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def test_every_named_query_file_declares_what_it_answers_and_its_parameters() -> None:
    assert {"stats", "spend", "request", "prompt_versions"} <= set(NAMED)
    for name, named in NAMED.items():
        assert named.description, name
        for param in named.params:
            assert "{" + param + ":" in named.sql, (name, param)


def test_the_admin_api_runs_named_queries_and_a_tenant_admin_sees_its_own_tenant(stack: Stack) -> None:
    since = time.time_ns()
    mine, theirs = chat(stack, DEMO_KEY, "named mine"), chat(stack, REDACT_KEY, "named theirs")
    stack.request_row(mine), stack.request_row(theirs)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    made = httpx.post(f"{stack.admin_url}/keys", json={"tenant": "demo", "role": "tenant_admin"}, headers=admin)
    tenant_admin = {"authorization": f"Bearer {made.json()['secret']}"}

    everyone = httpx.get(f"{stack.admin_url}/analytics/spend", params={"since_ns": since}, headers=admin).json()
    assert {row[0] for row in everyone["rows"]} >= {"demo", "careful"}
    own = httpx.get(f"{stack.admin_url}/analytics/spend", params={"since_ns": since}, headers=tenant_admin).json()
    assert {row[0] for row in own["rows"]} == {"demo"}
    other = httpx.get(f"{stack.admin_url}/analytics/spend", params={"tenant_id": "careful"}, headers=tenant_admin)
    assert other.status_code == 403
    assert httpx.get(f"{stack.admin_url}/analytics/event_counts", headers=tenant_admin).status_code == 403
    listed = {q["name"] for q in httpx.get(f"{stack.admin_url}/analytics", headers=tenant_admin).json()}
    assert "spend" in listed and "event_counts" not in listed
    assert httpx.get(f"{stack.admin_url}/analytics/nope", headers=admin).status_code == 404
    bad = httpx.get(f"{stack.admin_url}/analytics/spend", params={"since_ns": "soon"}, headers=admin)
    assert bad.status_code == 400
    as_caller = httpx.get(f"{stack.admin_url}/analytics/spend", headers={"authorization": f"Bearer {DEMO_KEY}"})
    assert as_caller.status_code == 403


def test_sluice_stats_runs_any_named_query_as_a_table_or_json(stack: Stack) -> None:
    request_id = chat(stack, DEMO_KEY, "named cli")
    stack.request_row(request_id)
    env = ["--nats", stack.nats_url, "--creds", stack.creds()]
    table = sluice(stack, "stats", "request", "--param", f"request_id={request_id}", *env).stdout
    assert request_id in table and "cost_usd" in table.splitlines()[0]
    rows = json.loads(sluice(stack, "stats", "request", "--param", f"request_id={request_id}", "--json", *env).stdout)
    assert rows[0]["request_id"] == request_id and rows[0]["status"] == 200
    wrong = sluice(stack, "stats", "request", "--param", "who=me", *env, check=False)
    assert wrong.returncode == 1 and "takes: request_id" in wrong.stderr
    assert "spend" in sluice(stack, "stats", "--list").stdout
