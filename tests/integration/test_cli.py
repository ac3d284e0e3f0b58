"""The ``sluice`` command line against a running stack."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from services.cli.nats_server import free_port
from tests.stack import DEMO_KEY, Stack


def test_sluice_stats_prints_table_and_json(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "other-model", "messages": [{"role": "user", "content": "stats please [mock:chunks=3]"}]},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
    )
    assert resp.status_code == 200
    stack.request_row(resp.headers["x-request-id"])
    cmd = [sys.executable, "-m", "services.cli.cli", "stats", "--nats", stack.nats_url, "--creds", stack.creds()]
    table = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "other-model" in table and "p99 ms" in table and "cost USD" in table
    data = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)
    other = next(r for r in data if r["model"] == "other-model")
    assert other["requests"] >= 1 and other["completion_tokens"] >= 3
    assert len(other["latency_ms"]) == 3 and other["latency_ms"][0] > 0


def test_sluice_models_shows_configured_models_with_prices(stack: Stack) -> None:
    cmd = [sys.executable, "-m", "services.cli.cli", "models", "--config", str(stack.layout.config)]
    table = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lines = {line.split()[0]: line.split() for line in table.splitlines()[3:]}
    assert lines["claude-model"][:3] == ["claude-model", "anthropic", "claude-sonnet-4-20250514"]
    assert lines["claude-model"][5:8] == ["3", "0.3", "15"]  # USD per Mtok: in, cached, out
    assert "(not in catalog: unpriced)" in table  # dead-model
    data = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)
    gemini = next(r for r in data if r["model"] == "gemini-model")
    assert gemini["pricing"]["output"] == "2.5" and gemini["context_window"] == 1048576


def test_sluice_models_catalog_lists_every_family() -> None:
    cmd = [sys.executable, "-m", "services.cli.cli", "models", "--catalog", "--json"]
    data = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert len(data) >= 100
    assert {"openai", "azure", "anthropic", "gemini", "mistral", "cohere", "groq"} <= {r["provider"] for r in data}
    bad = subprocess.run([*cmd[:-2], "--config", "/nonexistent.toml"], capture_output=True, text=True)
    assert bad.returncode == 2 and "nonexistent" in bad.stderr


def test_commands_that_need_the_gateway_say_so_when_it_is_not_running(tmp_path) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    config = tmp_path / "c.toml"
    config.write_text("")
    for args in (
        ["stats", "--nats", nowhere],
        ["seed", "--config", str(config), "--nats", nowhere],
        ["status", "--nats", nowhere],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "services.cli.cli", *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 1
        assert "is `sluice up` running?" in done.stderr and nowhere in done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1  # one plain line, no retry noise


def test_sluice_analytics_migrate_applies_each_migration_once(tmp_path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    cmd = [sys.executable, "-m", "services.cli.cli", "analytics", "migrate", "--clickhouse", dsn]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert first.startswith("applied: 001_tables.sql") and "007_prompt_apis.sql" in first
    assert subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip() == "already up to date"
    unreachable = subprocess.run([*cmd[:-1], f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True)
    assert unreachable.returncode == 1 and "cannot open" in unreachable.stderr
