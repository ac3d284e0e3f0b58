"""Re-costing after a price change: `sluice analytics recost` gives the new
totals (in the rollups the dashboard reads too), keeps the recorded rows as
they were, and a second run changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import pricing
from tests.integration.test_admin_cli import sluice
from tests.stack import DEMO_KEY, REDACT_KEY, Stack

OLD_OUTPUT, NEW_OUTPUT = '"1.50"', '"3.00"'  # gpt-3.5-turbo's output, USD per Mtok
PICO_PER_TOKEN_MORE = 1_500_000


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "models.toml"
    path.write_text(pricing.DEFAULT_CATALOG.read_text())
    return path


@pytest.fixture(scope="module")
def recost_stack(tmp_path_factory: pytest.TempPathFactory, catalog: Path) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_CATALOG", str(catalog))  # every process of the stack prices from this copy
        s = Stack(Path(tmp_path_factory.mktemp("recost"))).start()
        yield s
        s.stop()


def chat(stack: Stack, key: str, model: str) -> str:
    r = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "price me [mock:chunks=7]"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def costs(stack: Stack) -> dict[str, int]:
    result = stack.query("cost_by_tenant", hours=2)
    assert result["error"] is None, result["error"]
    return {row[0]: int(row[3]) for row in result["rows"]}


def recost(stack: Stack, *extra: str) -> str:
    env = ["--nats", stack.nats_url, "--creds", stack.creds()]
    return sluice(stack, "analytics", "recost", "--since", "1h", *extra, *env).stdout


def test_a_price_change_recosts_stored_requests_and_keeps_the_originals(recost_stack: Stack, catalog: Path) -> None:
    demo = [chat(recost_stack, DEMO_KEY, "demo-model") for _ in range(4)]  # gpt-3.5-turbo
    careful = [chat(recost_stack, REDACT_KEY, "other-model") for _ in range(2)]  # gpt-4: price unchanged
    rows = {rid: recost_stack.request_row(rid) for rid in demo + careful}
    before = costs(recost_stack)
    assert before["demo"] == sum(rows[r]["cost_pico_usd"] for r in demo) > 0
    tokens = sum(rows[r]["completion_tokens"] for r in demo)

    text = catalog.read_text()
    line = next(x for x in text.splitlines() if x.startswith('"gpt-3.5-turbo"'))
    catalog.write_text(text.replace(line, line.replace(f"output = {OLD_OUTPUT}", f"output = {NEW_OUTPUT}")))

    dry = recost(recost_stack, "--dry-run")
    assert "Would change (dry run)" in dry and "demo" in dry and "careful" not in dry
    assert costs(recost_stack) == before

    done = json.loads(recost(recost_stack, "--json"))
    (tenant,) = done["tenants"]
    assert (tenant["tenant_id"], tenant["requests"]) == ("demo", 4)
    assert tenant["new_cost_pico_usd"] - tenant["old_cost_pico_usd"] == tokens * PICO_PER_TOKEN_MORE

    # The rollups follow (their views add each correction's difference, counting no request twice).
    after = costs(recost_stack)
    assert after["demo"] == before["demo"] + tokens * PICO_PER_TOKEN_MORE
    assert after["careful"] == before["careful"]
    hourly = recost_stack.query("hourly", tenant_id="demo")["rows"]
    assert sum(r[2] for r in hourly if r[1] == "demo-model") >= 4  # request counts unchanged by corrections

    # The recorded rows are as they were; each correction says from what to what.
    for rid in demo:
        assert recost_stack.request_row(rid)["cost_pico_usd"] == rows[rid]["cost_pico_usd"]
    fixed = recost_stack.query("corrections", recost_id=done["recost_id"])
    by_id = {row[0]: (int(row[7]), int(row[8])) for row in fixed["rows"]}
    assert set(by_id) == set(demo)
    for rid in demo:
        old, new = by_id[rid]
        assert old == rows[rid]["cost_pico_usd"]
        assert new == old + rows[rid]["completion_tokens"] * PICO_PER_TOKEN_MORE

    # Run again: nothing differs any more.
    assert "nothing to correct" in recost(recost_stack)
    time.sleep(0.5)
    assert costs(recost_stack) == after
