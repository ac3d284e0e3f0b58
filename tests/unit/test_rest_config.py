"""``[[services]]``: what the config file may say about a REST service, the
records it becomes, and the check every service record passes (the admin
API's too)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from schemas.rest import HeaderRule, RestInstance, RestService
from services import config, rest_config
from services.bus.kv_writer import audit_view

GOOD = """
[[services]]
slug = "billing"
title = "Billing"
instances = [
    { url = "http://127.0.0.1:9000/api", weight = 3, health_path = "/healthz" },
    { url = "https://billing.example.com/api/" },
]
methods = ["GET", "POST"]
connect_timeout_s = 2
read_timeout_s = 30
add_headers = [{ name = "Authorization", env = "BILLING_TOKEN", prefix = "Bearer " }]
strip_headers = ["Authorization", "cookie", "x-internal"]
max_request_bytes = 1048576
rpm = 600
max_parallel = 8
price_pico_usd = 1000000
requires_approval = true
openapi = { openapi = "3.1.0", info = { title = "Billing" }, paths = { "/invoices/{id}" = { get = {} } } }

[[services]]
slug = "billing"
version = 2
instances = [{ url = "http://127.0.0.1:9001" }]
openapi_path = "billing-v2.json"
state = "deprecated"
successor = "billing/v3"
sunset_at_ms = 1900000000000
"""
V2_DOC = {"openapi": "3.0.3", "paths": {"/invoices": {"post": {}}}}


def records_of(tmp_path: Path, text: str) -> dict[str, RestService]:
    (tmp_path / "billing-v2.json").write_text(json.dumps(V2_DOC))
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config.control_records(config.load(path)).services


def test_services_become_records_by_slug_and_version(tmp_path: Path) -> None:
    services = records_of(tmp_path, GOOD)
    assert set(services) == {"billing.v1", "billing.v2"}
    v1, v2 = services["billing.v1"], services["billing.v2"]
    assert (v1.slug, v1.version, v1.owner, v1.methods) == ("billing", 1, "config", ["GET", "POST"])
    assert v1.instances[0] == RestInstance(url="http://127.0.0.1:9000/api", weight=3, health_path="/healthz")
    assert v1.add_headers == [HeaderRule(name="Authorization", env="BILLING_TOKEN", prefix="Bearer ")]
    # Strip rules are matched against lower-cased names.
    assert v1.strip_headers == ["authorization", "cookie", "x-internal"]
    assert (v1.rpm, v1.max_parallel, v1.price_pico_usd, v1.requires_approval) == (600, 8, 1_000_000, True)
    assert json.loads(v1.openapi)["paths"] == {"/invoices/{id}": {"get": {}}}
    # The file named by openapi_path, read relative to the config file.
    assert json.loads(v2.openapi) == V2_DOC
    assert (v2.state, v2.successor, v2.sunset_at_ms) == ("deprecated", "billing/v3", 1_900_000_000_000)


def test_the_config_tables_defaults_are_the_records() -> None:
    instance = RestInstance(url="http://h/")
    table = rest_config.RestServiceConfig(slug="a", instances=[instance])
    assert rest_config.record_of(table) == RestService(slug="a", instances=[instance], owner="config")


def test_json_text_is_an_openapi_document_too(tmp_path: Path) -> None:
    text = 'openapi = \'{"openapi": "3.1.0", "paths": {}}\''
    services = records_of(tmp_path, f'[[services]]\nslug = "a"\ninstances = [{{ url = "http://h" }}]\n{text}\n')
    assert json.loads(services["a.v1"].openapi) == {"openapi": "3.1.0", "paths": {}}


def base(**change: str) -> str:
    fields = {"slug": '"svc"', "instances": '[{ url = "http://127.0.0.1:9000" }]', **change}
    return "[[services]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (base(slug='"Bad_Slug"'), "slug"),
        (base(slug='"a.b"'), "slug"),
        (base(slug='"-x"'), "slug"),
        (base(version="0"), "version"),
        (base(instances=""), "instances: at least one"),
        (base(instances='[{ url = "ftp://h/x" }]'), r"instances\[0\].url"),
        (base(instances='[{ url = "http://user:pw@h/x" }]'), "no credentials"),
        (base(instances='[{ url = "http://h/x?debug=1" }]'), "no \\?query"),
        (base(instances='[{ url = "http://h/x#f" }]'), "fragment"),
        (base(instances='[{ url = "http://h/a/../admin" }]'), "'..'"),
        (base(instances='[{ url = "http://h/a/%2e%2e/admin" }]'), "'..'"),
        (base(instances='[{ url = "http://h/a/..;x/admin" }]'), "'..'"),
        (base(instances='[{ url = "http://h:port/" }]'), r"instances\[0\].url"),
        (base(instances='[{ url = "http://h/x\\r\\nHost: evil" }]'), "printable"),
        (base(instances='[{ url = "http://h/" }, { url = "http://h/" }]'), "each URL once"),
        (base(instances='[{ url = "http://h/", weight = 0 }]'), "weight"),
        (base(instances='[{ url = "http://h/", weight = -1 }]'), "weight"),
        (base(instances='[{ url = "http://h/", weight = nan }]'), "weight"),
        (base(instances='[{ url = "http://h/", health_path = "healthz" }]'), "health_path"),
        (base(instances='[{ url = "http://h/", health_path = "/../x" }]'), "health_path"),
        (base(instances='[{ url = "http://h/", health_path = "//evil.com/x" }]'), "health_path"),
        (base(methods="[]"), "methods"),
        (base(methods='["GET", "GET"]'), "methods"),
        (base(methods='["TRACE"]'), "TRACE"),
        (base(connect_timeout_s="0"), "connect_timeout_s"),
        (base(read_timeout_s="inf"), "read_timeout_s"),
        (base(add_headers='[{ name = "X Token", env = "T" }]'), r"add_headers\[0\].name"),
        (base(add_headers='[{ name = "Host", env = "T" }]'), "hop-by-hop"),
        (base(add_headers='[{ name = "Transfer-Encoding", env = "T" }]'), "hop-by-hop"),
        (base(add_headers='[{ name = "X-A", env = "T" }, { name = "x-a", env = "U" }]'), "each header once"),
        (base(add_headers='[{ name = "X-Key", env = "MY-TOKEN" }]'), r"add_headers\[0\].env"),
        (base(add_headers='[{ name = "X-Key", env = "T", prefix = "a\\r\\nb" }]'), "prefix"),
        (base(strip_headers='["x y"]'), "strip_headers"),
        (base(max_request_bytes="0"), "max_request_bytes"),
        (base(max_response_bytes="-1"), "max_response_bytes"),
        (base(rpm="0"), "rpm"),
        (base(max_parallel="0"), "max_parallel"),
        (base(price_pico_usd="-5"), "price_pico_usd"),
        (base(price_pico_usd="10000000000000000"), "price_pico_usd"),
        (base(openapi="'[1, 2]'"), "openapi: a JSON object"),
        (base(openapi="'{not json'"), "openapi: not JSON"),
        (base(openapi="{ paths = [1] }"), "paths"),
        (base(openapi_url='"file:///etc/passwd"'), "openapi_url"),
        (base(state='"gone"'), "state"),
        (base(successor='"Not A Slug"'), "successor"),
        (base(sunset_at_ms="-1"), "sunset_at_ms"),
        (base(surprise="1"), "surprise"),
        (base() + base(), "another \\[\\[services\\]\\] has this slug and version"),
    ],
)
def test_config_mistakes_are_config_errors_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        records_of(tmp_path, text)


def test_openapi_from_a_file_is_checked_and_bounded(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="openapi_path"):
        records_of(tmp_path, base(openapi_path='"missing.json"'))
    (tmp_path / "big.json").write_text('{"x": "' + "a" * rest_config.MAX_OPENAPI_BYTES + '"}')
    with pytest.raises(config.ConfigError, match="at most"):
        records_of(tmp_path, base(openapi_path='"big.json"'))
    with pytest.raises(config.ConfigError, match="not both"):
        records_of(tmp_path, base(openapi_path='"billing-v2.json"', openapi="'{}'"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(config.ConfigError, match="a JSON object"):
        records_of(tmp_path, base(openapi_path='"list.json"'))


def test_hostile_records_from_the_admin_api_are_refused() -> None:
    ok = RestService(slug="a", instances=[RestInstance(url="http://h/")])
    assert rest_config.problem(ok) is None
    bad = [
        msgspec.structs.replace(ok, methods=["GET", "BREW"]),  # type: ignore[list-item]
        msgspec.structs.replace(ok, instances=[RestInstance(url=f"http://h/{i}") for i in range(17)]),
        msgspec.structs.replace(ok, openapi=b"{" * 100_000),
        msgspec.structs.replace(ok, openapi=b"\xff\xfe"),
        msgspec.structs.replace(ok, title="a\nb"),
        msgspec.structs.replace(ok, strip_headers=["Authorization"]),  # the API lower-cases them first
        msgspec.structs.replace(ok, successor="a"),  # itself
        msgspec.structs.replace(ok, version=10**7),
    ]
    for record in bad:
        assert rest_config.problem(record) is not None, record
    assert rest_config.problem(msgspec.structs.replace(ok, successor="a/v2")) is None
    assert rest_config.problem(msgspec.structs.replace(ok, openapi_url="https://h/openapi.json?v=2")) is None


def test_the_demo_config_publishes_demo_echo_and_a_gated_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MOCK_PORT", "9555")
    demo = Path(config.__file__).parent / "cli" / "demo.toml"
    services = config.control_records(config.load(demo)).services
    echo, gated = services["demo-echo.v1"], services["demo-echo-gated.v1"]
    assert [i.url for i in echo.instances] == ["http://127.0.0.1:9555/rest/echo"]
    assert (echo.state, echo.requires_approval, gated.requires_approval) == ("published", False, True)
    paths = json.loads(echo.openapi)["paths"]
    assert set(paths) == {"/items/{id}", "/items"}
    assert "get" in paths["/items/{id}"] and "post" in paths["/items"]
    assert gated.openapi == echo.openapi


def test_the_audit_trail_names_an_openapi_document_by_size_and_digest() -> None:
    # Copied whole into both sides of every change, megabyte documents would outgrow an event batch.
    doc = b'{"openapi": "3.1.0", "paths": {}}' + b" " * 10_000
    view = audit_view(RestService(slug="a", openapi=doc))
    assert len(view) < 500
    assert msgspec.json.decode(view)["openapi"].startswith(f"{len(doc)} bytes, sha256 ")


def test_a_service_keeps_the_date_it_was_first_deprecated() -> None:
    live = RestService(slug="a", instances=[RestInstance(url="http://h/")])
    deprecated = msgspec.structs.replace(live, state="deprecated")
    assert rest_config.deprecated_since(live, None, 5) == 0
    assert rest_config.deprecated_since(deprecated, live, 5) == 5
    before = msgspec.structs.replace(deprecated, deprecated_at_ms=3)
    assert rest_config.deprecated_since(msgspec.structs.replace(deprecated, state="retired"), before, 9) == 3
    # Published again, then deprecated again: a new date.
    assert rest_config.deprecated_since(deprecated, live, 9) == 9
