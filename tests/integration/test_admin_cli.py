"""``sluice tenants|keys|subscriptions|limits|budgets`` against a running
gateway, in the forms scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.stack import ADMIN_KEY, Stack


def sluice(stack: Stack, *args: str, key: str = ADMIN_KEY, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICE_ADMIN_KEY": key, "SLUICE_URL": f"http://127.0.0.1:{stack.layout.http_port}"}
    env.pop("SLUICE_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "services.cli.cli", *args], capture_output=True, text=True, env=env, check=check
    )


def chat_status(stack: Stack, secret: str) -> int:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": "hi [mock:chunks=1]"}]},
        headers={"authorization": f"Bearer {secret}"},
        timeout=20,
    ).status_code


def wait_status(stack: Stack, secret: str, status: int) -> None:
    deadline = time.monotonic() + 5
    while chat_status(stack, secret) != status:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_create_a_tenant_and_a_limited_key_then_rotate_and_disable_it(stack: Stack) -> None:
    tenant = f"cli-{time.monotonic_ns() % 10**8}"
    out = sluice(stack, "tenants", "create", tenant, "--rpm", "600").stdout
    assert tenant in out and "600 rpm" in out  # a table, for people
    made = json.loads(
        sluice(
            stack,
            "keys",
            "create",
            "--tenant",
            tenant,
            "--models",
            "demo-*",
            "--rpm",
            "100",
            "--tpm",
            "50000",
            "--max-parallel",
            "4",
            "--budget-usd",
            "5.00",
            "--budget-period",
            "daily",
            "--json",
        ).stdout
    )
    assert made["id"].startswith("key_") and made["secret"].startswith("sk-sluice-")
    assert made["limits"] == {"rpm": 100, "tpm": 50000, "max_parallel": 4}
    assert made["budget"] == {"usd": "5", "period": "daily"}
    wait_status(stack, made["secret"], 200)

    rotated = json.loads(sluice(stack, "keys", "rotate", made["id"], "--grace-seconds", "30", "--json").stdout)
    assert rotated["id"] == made["id"] and rotated["secret"] != made["secret"]
    wait_status(stack, rotated["secret"], 200)
    assert chat_status(stack, made["secret"]) == 200  # in its grace period

    listed = sluice(stack, "keys", "list", "--tenant", tenant).stdout
    assert made["id"] in listed and "active" in listed
    sluice(stack, "keys", "disable", made["id"])
    wait_status(stack, rotated["secret"], 401)
    shown = json.loads(sluice(stack, "keys", "show", made["id"], "--json").stdout)
    assert shown["disabled"] is True and "secret" not in shown

    budget = json.loads(sluice(stack, "budgets", "set", "--tenant", tenant, "--usd", "12.50", "--json").stdout)
    assert budget["budget"] == {"usd": "12.5", "period": "monthly"}
    limits = json.loads(sluice(stack, "limits", "set", "--tenant", tenant, "--tpm", "9000", "--json").stdout)
    assert limits["limits"] == {"rpm": 600, "tpm": 9000}  # the rpm it had stays

    table = sluice(stack, "usage", "--tenant", tenant).stdout
    assert "budgets now" in table and made["id"] in table and "12.5" in table


def test_subscriptions_are_approved_from_the_command_line(stack: Stack) -> None:
    tenant = f"cli-sub-{time.monotonic_ns() % 10**8}"
    sluice(stack, "tenants", "create", tenant)
    sub = json.loads(sluice(stack, "subscriptions", "create", "claude-*", "--tenant", tenant, "--json").stdout)
    assert sub["state"] == "pending"
    pending = sluice(stack, "subscriptions", "list", "--status", "pending").stdout
    assert sub["id"] in pending
    approved = json.loads(sluice(stack, "subscriptions", "approve", sub["id"], "--json").stdout)
    assert approved["state"] == "approved" and approved["decided_by"] == "admin"


def test_errors_are_one_clear_line_and_exit_1(stack: Stack) -> None:
    res = sluice(stack, "keys", "create", "--tenant", "no-such-tenant", check=False)
    assert res.returncode == 1 and "No tenant 'no-such-tenant'" in res.stderr and "404" in res.stderr
    res = sluice(stack, "tenants", "create", "x", "--budget-usd", "-3", check=False)
    assert res.returncode == 1 and "budget.usd" in res.stderr
    res = sluice(stack, "tenants", "list", key="sk-wrong", check=False)
    assert res.returncode == 1 and "Incorrect API key" in res.stderr
    env_url = ["--url", "http://127.0.0.1:9"]
    res = sluice(stack, "tenants", "list", *env_url, check=False)
    assert res.returncode == 1 and "no gateway answers" in res.stderr


def test_a_tenants_cache_and_a_keys_pin_right_from_the_command_line(stack: Stack) -> None:
    tenant = f"cli-cache-{time.monotonic_ns() % 10**8}"
    made = json.loads(sluice(stack, "tenants", "create", tenant, "--cache-max-age", "300", "--json").stdout)
    assert made["cache"]["max_age_s"] == 300
    key = json.loads(sluice(stack, "keys", "create", "--tenant", tenant, "--may-pin", "--json").stdout)
    assert key["may_pin"] is True
    off = json.loads(sluice(stack, "tenants", "update", tenant, "--cache-max-age", "0", "--json").stdout)
    assert off["cache"] is None
    refused = sluice(stack, "tenants", "update", tenant, "--cache-max-age", "60", "--cache-default", "90", check=False)
    assert refused.returncode == 1 and "default_max_age_s" in refused.stderr


def test_privacy_rules_from_a_file_and_off_again(stack: Stack, tmp_path: Path) -> None:
    tenant = f"cli-priv-{time.monotonic_ns() % 10**8}"
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"detectors": {"email": "mask", "card": "block"}}))
    made = json.loads(sluice(stack, "tenants", "create", tenant, "--privacy-file", str(rules), "--json").stdout)
    assert made["privacy"]["detectors"] == {"email": "mask", "card": "block"}
    broken = tmp_path / "broken.json"
    broken.write_text("{detectors")
    failed = sluice(stack, "tenants", "update", tenant, "--privacy-file", str(broken), check=False)
    assert failed.returncode == 1 and "not JSON" in failed.stderr
    off = json.loads(sluice(stack, "tenants", "update", tenant, "--privacy-file", "off", "--json").stdout)
    assert off.get("privacy") is None
