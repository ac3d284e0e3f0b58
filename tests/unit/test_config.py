from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.control import ApiKey
from services import config
from services.keys import hash_key
from services.runtime.kv import kv_key, kv_name

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
    assert records.keys[hash_key("sk-from-env")].models == ["gpt-*"]
    assert records.keys[hash_key("sk-extra")].id == "x"
    assert records.routes["fast"].deployment.base_url == "http://127.0.0.1:1/v1"
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
    assert records.routes["gpt-4o-mini"].deployment.api_key_env == "OPENAI_API_KEY"
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
            config.ModelConfig(name="claude", provider="anthropic", upstream_model="claude-sonnet-4-20250514"),
            config.ModelConfig(
                name="gpt", provider="openai", upstream_model="gpt-4o", api_key_env="TEST_SLUICE_OPENAI_KEY"
            ),
            config.ModelConfig(
                name="local", provider="openai", upstream_model="x", api_key_env="", base_url="http://h"
            ),
        ]
    )
    warnings = config.unset_key_variables(cfg)
    assert len(warnings) == 1 and "'claude'" in warnings[0] and "$ANTHROPIC_API_KEY" in warnings[0]
