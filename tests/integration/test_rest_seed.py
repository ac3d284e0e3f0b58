"""REST services seeded from the config file: a re-seed creates, updates and
deletes only the file's own records (by ``<slug>.v<N>``), never one the admin
API made."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from schemas import subjects
from schemas.rest import RestInstance, RestService, decode_service
from services import config
from services.bus import process
from services.bus.kv import read_bucket
from services.bus.kv_writer import KvWriter
from services.cli import bootstrap

SEEDED = """
[[services]]
slug = "a"
instances = [{{ url = "http://127.0.0.1:1/a" }}]
rpm = {rpm}
openapi = {{ openapi = "3.1.0", paths = {{ "/x" = {{ get = {{}} }} }} }}

[[services]]
slug = "a"
version = 2
instances = [{{ url = "http://127.0.0.1:1/a2" }}]
state = "{v2_state}"

[[services]]
slug = "{second}"
instances = [{{ url = "http://127.0.0.1:2/b" }}]
"""


async def seed_and_read(url: str, tmp: Path, text: str) -> tuple[list[str], dict[str, RestService]]:
    path = tmp / "c.toml"
    path.write_text(text)
    nc = await process.connect("test", url)
    try:
        warnings = await bootstrap.prepare(nc, config.control_records(config.load(path)))
        return warnings, await read_bucket(nc, subjects.KV_SERVICES, decode_service)
    finally:
        await nc.close()


async def api_service(url: str, service: RestService) -> None:
    nc = await process.connect("test", url)
    try:
        await KvWriter(nc.jetstream(), lambda _: None).write(
            subjects.KV_SERVICES, service.key, service, revision=0, actor="t", action="create", record_type="service"
        )
    finally:
        await nc.close()


def test_a_reseed_changes_only_the_config_files_services(nats_url: str, tmp_path: Path) -> None:
    _, services = asyncio.run(seed_and_read(nats_url, tmp_path, SEEDED.format(rpm=5, second="b", v2_state="published")))
    assert {n: s.owner for n, s in services.items()} == {"a.v1": "config", "a.v2": "config", "b.v1": "config"}
    assert services["a.v1"].rpm == 5 and services["a.v1"].created_at_ms > 0
    assert msgspec.json.decode(services["a.v1"].openapi)["paths"] == {"/x": {"get": {}}}
    mine = RestService(slug="mine", instances=[RestInstance(url="http://127.0.0.1:3/m")], owner="api")
    asyncio.run(api_service(nats_url, mine))

    # "a" changes, "b" leaves the file, "mine" (the admin API's) is named by the file too.
    warnings, after = asyncio.run(
        seed_and_read(nats_url, tmp_path, SEEDED.format(rpm=9, second="mine", v2_state="deprecated"))
    )
    assert set(after) == {"a.v1", "a.v2", "mine.v1"}  # b deleted
    assert after["a.v1"].rpm == 9 and after["a.v1"].created_at_ms == services["a.v1"].created_at_ms
    # Deprecated by this seed: since now (its callers' Deprecation header), and kept from then on.
    assert services["a.v2"].deprecated_at_ms == 0
    assert after["a.v2"].state == "deprecated" and after["a.v2"].deprecated_at_ms >= services["a.v1"].created_at_ms
    assert (after["mine.v1"].owner, after["mine.v1"].instances) == ("api", mine.instances)  # untouched
    assert any("service 'mine.v1'" in w and "admin API" in w for w in warnings), warnings
