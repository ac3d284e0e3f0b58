from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.control import ApiKey
from services import config, model_config
from services.bus.kv import kv_key, kv_name
from services.keys import hash_key

GOOD = """
[gateway]
request_timeout_s = 5
[[tenants]]
id = "acme"
[[keys]]
id = "ci"
tenant = "acme"
key_env = "TEST_SLUICE_KEY"
models = ["gpt-*"]
[[models]]
name = "fast"
provider = "openai"
base_url = "http://127.0.0.1:1/v1/"
upstream_model = "gpt-4o-mini"
"""


def test_config_becomes_control_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLUICE_KEY", "sk-from-env")
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    cfg = config.load(path)
    assert cfg.gateway.request_timeout_s == 5
    records = config.control_records(cfg, {"sk-extra": ApiKey(id="x", tenant_id="acme")})
    assert records.keys["ci"].models == ["gpt-*"]
    assert records.keys["ci"].secrets[0].sha256 == hash_key("sk-from-env")
    assert records.keys["x"].secrets[0].sha256 == hash_key("sk-extra")
    assert records.routes["fast"].deployments[0].base_url == "http://127.0.0.1:1/v1"
    assert "sk-from-env" not in repr(records)  # only digests are stored


def test_unknown_field_and_unknown_tenant_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[gateway]\ntimeout = 1\n")
    with pytest.raises(config.ConfigError):
        config.load(path)
    path.write_text('[[keys]]\nid = "k"\ntenant = "ghost"\nsha256 = "00"\n')
    with pytest.raises(config.ConfigError, match="ghost"):
        config.control_records(config.load(path))


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_BACKEND_KEY", "sk-acme")
    example = Path(__file__).parents[2] / "compose" / "config.example.toml"
    records = config.control_records(config.load(example))
    assert records.routes["gpt-4o-mini"].deployments[0].api_key_env == "OPENAI_API_KEY"
    assert records.tenants["acme"].redaction_rules[0].name == "email"


def test_environment_variables_expand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLUICE_PORT", "1234")
    assert config.expand_env("http://h:${TEST_SLUICE_PORT}/v1") == "http://h:1234/v1"
    assert config.expand_env("${TEST_SLUICE_UNSET:-9100}") == "9100"
    with pytest.raises(config.ConfigError, match="TEST_SLUICE_UNSET"):
        config.expand_env("${TEST_SLUICE_UNSET}")


@pytest.mark.parametrize("name", ["demo-model", "llama3.1:8b", "a=b", ".hidden.", "gpt-4o mini", "模型"])
def test_kv_keys_escape_reversibly_into_what_nats_allows(name: str) -> None:
    key = kv_key(name)
    assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key) and not key.startswith(".") and not key.endswith(".")
    assert kv_name(key) == name
    assert kv_key("demo-model") == "demo-model"  # plain names stay readable


def test_models_whose_key_variable_is_unset_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("TEST_SLUICE_OPENAI_KEY", "sk-set")
    cfg = config.Config(
        models=[
            model_config.ModelConfig(name="claude", provider="anthropic", upstream_model="claude-sonnet-4-20250514"),
            model_config.ModelConfig(
                name="gpt", provider="openai", upstream_model="gpt-4o", api_key_env="TEST_SLUICE_OPENAI_KEY"
            ),
            model_config.ModelConfig(
                name="local", provider="openai", upstream_model="x", api_key_env="", base_url="http://h"
            ),
        ]
    )
    warnings = config.unset_key_variables(cfg)
    assert len(warnings) == 1 and "'claude'" in warnings[0] and "$ANTHROPIC_API_KEY" in warnings[0]


def test_limits_and_budgets_come_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[tenants]]\nid = "acme"\nlimits = { rpm = 600 }\nbudget = { usd = "100.50", period = "daily" }\n'
        '[[keys]]\nid = "ci"\ntenant = "acme"\nsha256 = "00"\nlimits = { tpm = 1000, max_parallel = 2 }\n'
        'budget = { usd = "0.000000000001" }\n'
    )
    records = config.control_records(config.load(path))
    tenant, key = records.tenants["acme"], records.keys["ci"]
    assert tenant.limits.rpm == 600 and tenant.budget is not None
    assert tenant.budget.limit_pico_usd == 100_500_000_000_000 and tenant.budget.period == "daily"
    assert key.limits.tpm == 1000 and key.limits.max_parallel == 2 and key.limits.rpm is None
    assert key.budget is not None and key.budget.limit_pico_usd == 1 and key.budget.period == "monthly"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('budget = { usd = "-1" }', "non-negative"),
        ('budget = { usd = "0.0000000000001" }', "finer"),
        ('budget = { usd = "lots" }', "decimal"),
    ],
)
def test_bad_budgets_are_config_errors(tmp_path: Path, snippet: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[[tenants]]\nid = "acme"\n{snippet}\n')
    with pytest.raises(config.ConfigError, match=message):
        config.control_records(config.load(path))


def test_ids_that_cannot_be_subject_tokens_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[tenants]]\nid = "acme.corp"\n')
    with pytest.raises(config.ConfigError, match=r"acme\.corp"):
        config.control_records(config.load(path))


GROUP = """
[[models]]
name = "chat"
strategy = "priority"
aliases = ["fast", "gpt-4o-latest"]
split = { chat-a = 90, chat-b = 10 }
context_fallback = "long"
#EXTRA
[[models.deployments]]
name = "chat-a"
provider = "openai"
upstream_model = "gpt-4o-mini"
api_key_env = ""
weight = 3
rpm = 100
[[models.deployments]]
provider = "anthropic"
upstream_model = "claude-sonnet-4-20250514"
api_key_env = ""
priority = 1
[[models]]
name = "long"
provider = "gemini"
upstream_model = "gemini-2.5-flash"
api_key_env = ""
"""


def test_a_model_group_and_its_deployments_come_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GROUP.replace("chat-b", "chat-2"))
    routes = config.control_records(config.load(path)).routes
    group = routes["chat"]
    assert [d.name for d in group.deployments] == ["chat-a", "chat-2"]  # unnamed: "<group>-<n>"
    assert group.deployments[0].weight == 3 and group.deployments[0].rpm == 100
    assert group.deployments[1].priority == 1 and group.deployments[1].base_url == "https://api.anthropic.com"
    assert group.aliases == ["fast", "gpt-4o-latest"] and group.split == {"chat-a": 90, "chat-2": 10}
    assert routes["long"].deployments[0].name == "long"  # inline: one deployment named as its group


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t, "split names 'chat-b'"),
        (lambda t: t.replace("chat-b", "chat-2").replace('"long"\n', '"nowhere"\n', 1), "context_fallback 'nowhere'"),
        (lambda t: t.replace("chat-b", "chat-2").replace('"gpt-4o-latest"', '"long"'), "alias 'long'"),
        (lambda t: t.replace("chat-b", "chat-2").replace("chat-a", "long"), "defined twice"),
        (lambda t: t.replace("chat-b", "chat-2").replace('name = "chat-a"', 'name = "a\\nb"'), "deployment name"),
        (lambda t: t.replace("chat-b", "chat-2").replace("weight = 3", "weight = -1"), "weight"),
        (lambda t: t.replace("chat-b", "chat-2").replace("#EXTRA", 'provider = "openai"'), "not both"),
    ],
)
def test_group_mistakes_are_config_errors(tmp_path: Path, change, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(change(GROUP))
    with pytest.raises(config.ConfigError, match=message):
        config.control_records(config.load(path))


def test_the_demo_ships_a_fallback_group_whose_first_deployment_is_dead() -> None:
    demo = Path(config.__file__).parent / "cli" / "demo.toml"
    group = config.control_records(config.load(demo)).routes["demo-fallback"]
    assert group.strategy == "priority" and group.aliases == ["demo-failover"]
    assert group.deployments[0].base_url == "http://127.0.0.1:1/v1"


def test_the_demo_ships_three_prompt_apis_and_a_chain_of_them() -> None:
    demo = Path(config.__file__).parent / "cli" / "demo.toml"
    found = config.control_records(config.load(demo)).prompts
    assert {name: api.slug for name, (_, api) in found.items() if api} == {
        "summarize": "summarize",
        "translate": "translate",
        "sentiment": "sentiment",
        "digest": "digest",
    }
    digest, _ = found["digest"]
    assert [step.prompt for step in digest.steps] == ["extract", "summarize", "translate"]
    sentiment, _ = found["sentiment"]
    assert sentiment.output_schema["properties"]["label"]["enum"] == ["positive", "negative", "neutral"]


def test_a_chain_step_must_name_a_configured_prompt_with_messages(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[[models]]
name = "m"
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
upstream_model = "gpt-4o-mini"
[[prompts]]
name = "chain"
steps = [{ prompt = "missing" }]
"""
    )
    with pytest.raises(config.ConfigError, match="step 'missing' is not a configured prompt"):
        config.control_records(config.load(path))


def test_raw_rows_may_not_outlive_the_rollups_made_from_them(tmp_path: Path) -> None:
    path = tmp_path / "ttl.toml"
    path.write_text("[gateway]\nanalytics_raw_ttl_days = 900\nanalytics_rollup_ttl_days = 400\n")
    with pytest.raises(config.ConfigError, match="no longer than analytics_rollup_ttl_days"):
        config.load(path)
    path.write_text("[gateway]\nanalytics_raw_ttl_days = 30\nanalytics_rollup_ttl_days = 0\n")
    assert config.load(path).gateway.analytics_raw_ttl_days == 30


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        (
            '[[alerts]]\nname = "a"\nkind = "error_rate"\nthreshold = 0.5\nwebhooks = ["nope"]\n',
            "no \\[\\[webhooks\\]\\] named nope",
        ),
        ('[[alerts]]\nname = "a"\nkind = "error_rate"\nthreshold = 5\n', "at most 1"),
        ('[[alerts]]\nname = "a"\nkind = "tool_error_rate"\nthreshold = 5\n', "at most 1"),
        ('[[alerts]]\nname = "a b"\nkind = "zero_cost"\nthreshold = 0\n', "names are unique"),
        ('[[webhooks]]\nname = "w"\nurl = "ftp://x"\n', "an http\\(s\\) url"),
        ('[[alerts]]\nname = "a"\nkind = "sideways"\nthreshold = 1\n', "sideways"),
    ],
)
def test_alert_rule_mistakes_are_config_errors(tmp_path: Path, snippet: str, message: str) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(snippet)
    with pytest.raises(config.ConfigError, match=message):
        config.load(path)


def test_a_tenant_call_log_cap_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "logs.toml"
    path.write_text('[[tenants]]\nid = "t"\ncall_log_max_bytes = 10000000\n')
    with pytest.raises(config.ConfigError, match="call_log_max_bytes"):
        config.control_records(config.load(path))
