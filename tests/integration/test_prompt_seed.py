"""Seeding the config file's prompts into a real nats-server: a changed
prompt gets a new version and "production" moves to it, an unchanged one is
left alone, one made over the admin API is never touched."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from schemas import subjects
from schemas.prompts import Prompt, decode_prompt, decode_version
from services import config
from services.bus import process
from services.bus.kv import kv_key
from services.cli import bootstrap, nats_server
from services.cli.prompt_seed import version_name

BASE = """
[[tenants]]
id = "t"
[[models]]
name = "m"
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
upstream_model = "gpt-4o-mini"
[[prompts]]
name = "summarize"
model = "m"
api = {{ slug = "summarize", state = "published" }}
params = {{ temperature = {temperature} }}
[[prompts.messages]]
role = "user"
template = "Summarise: {{{{text}}}}"
[[prompts.variables]]
name = "text"
"""


async def seed(url: str, tmp: Path, text: str) -> list[str]:
    path = tmp / "c.toml"
    path.write_text(text)
    nc = await process.connect("test", url)
    try:
        return await bootstrap.prepare(nc, config.control_records(config.load(path)))
    finally:
        await nc.close()


async def read(url: str, bucket: str, name: str, decode):
    nc = await process.connect("test", url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        return decode((await kv.get(kv_key(name))).value)
    finally:
        await nc.close()


def test_a_changed_prompt_gets_a_new_version_and_production_moves(tmp_path: Path) -> None:
    port = nats_server.free_port()
    server = nats_server.start(tmp_path / "nats", port)
    url = f"nats://127.0.0.1:{port}"
    try:
        asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.2)))
        asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.2)))  # unchanged: nothing new
        first = asyncio.run(read(url, subjects.KV_PROMPTS, "summarize", decode_prompt))
        assert (first.latest, first.labels, first.api.slug, first.owner) == (
            1,
            {"production": 1},
            "summarize",
            "config",
        )
        asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.7)))
        second = asyncio.run(read(url, subjects.KV_PROMPTS, "summarize", decode_prompt))
        assert (second.latest, second.labels) == (2, {"production": 2})
        v1 = asyncio.run(read(url, subjects.KV_PROMPT_VERSIONS, version_name("summarize", 1), decode_version))
        v2 = asyncio.run(read(url, subjects.KV_PROMPT_VERSIONS, version_name("summarize", 2), decode_version))
        assert (v1.params.temperature, v2.params.temperature) == (0.2, 0.7)  # version 1 was not rewritten
        assert v2.messages[0].template == "Summarise: {{text}}" and v2.created_by == "config"
    finally:
        server.terminate()
        server.wait(10)


def test_a_prompt_made_over_the_api_is_never_touched_by_a_seed(tmp_path: Path) -> None:
    port = nats_server.free_port()
    server = nats_server.start(tmp_path / "nats", port)
    url = f"nats://127.0.0.1:{port}"

    async def make_api_owned() -> None:
        nc = await process.connect("test", url)
        kv = await nc.jetstream().key_value(subjects.KV_PROMPTS)
        await kv.put(kv_key("summarize"), msgspec.msgpack.encode(Prompt(name="summarize", latest=0, owner="api")))
        await nc.close()

    try:
        asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.2).split("[[prompts]]")[0]))
        asyncio.run(make_api_owned())
        warnings = asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.2)))
        assert any("summarize" in w for w in warnings)
        kept = asyncio.run(read(url, subjects.KV_PROMPTS, "summarize", decode_prompt))
        assert (kept.owner, kept.latest) == ("api", 0)
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('model = "m"\napi', 'model = "nope"\napi'), "not a configured model"),
        (lambda t: t.replace("{{text}}", "{{txet}}"), "not a declared variable"),
        (lambda t: t + t[t.index("[[prompts]]") :], "defined twice"),
    ],
)
def test_prompt_mistakes_in_the_config_are_config_errors(tmp_path: Path, change, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(change(BASE.format(temperature=0.2)))
    with pytest.raises(config.ConfigError, match=message):
        config.control_records(config.load(path))


def test_sluice_prompts_lists_shows_diffs_and_renders(tmp_path: Path) -> None:
    import subprocess
    import sys

    port = nats_server.free_port()
    server = nats_server.start(tmp_path / "nats", port)
    url = f"nats://127.0.0.1:{port}"

    def sluice(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "services.cli.cli", "prompts", *args, "--nats", url]
        return subprocess.run(
            cmd, capture_output=True, text=True, env={"PATH": "/usr/bin", "SLUICE_HOME": str(tmp_path)}
        )

    try:
        asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.2)))
        asyncio.run(seed(url, tmp_path, BASE.format(temperature=0.7)))
        listing = sluice("list").stdout
        assert "summarize" in listing and "production=2" in listing and "/apis/summarize (published)" in listing
        shown = json.loads(sluice("show", "summarize", "--version", "1").stdout)
        assert shown["version"] == 1 and shown["params"] == {"temperature": 0.2}
        diff = sluice("diff", "summarize", "1", "production").stdout
        assert '-    "temperature": 0.2' in diff and '+    "temperature": 0.7' in diff
        rendered = json.loads(sluice("render", "summarize", "--var", "text=a long story").stdout)
        assert rendered["messages"] == [{"role": "user", "content": "Summarise: a long story"}]
        missing = sluice("render", "summarize")
        assert missing.returncode == 1 and "Missing variable 'text'" in missing.stderr
        unknown = sluice("show", "nothing")
        assert unknown.returncode == 1 and "no prompt 'nothing'" in unknown.stderr
    finally:
        server.terminate()
        server.wait(10)
