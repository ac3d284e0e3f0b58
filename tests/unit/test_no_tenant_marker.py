""" "-" names no tenant (a gateway admin's key) in KV keys and stored blob
names, so no tenant may be called "-": neither the config nor the admin API
(and the portal's form, which decodes the same body) makes one. And a
tenant's file records are those that say they are its, whatever key they
sit under."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from schemas.admin import TenantCreate
from schemas.control import NO_TENANT, TENANT_ID_PATTERN
from schemas.files import FileRecord, encode_record
from schemas.tasks import BlobRef
from services import config
from services.bus.file_records import FileRecords, record_key


def test_the_config_refuses_a_tenant_called_dash(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[tenants]]\nid = "-"\n')
    with pytest.raises(config.ConfigError, match="names no tenant"):
        config.control_records(config.load(path))
    # A dash inside a name is a name.
    path.write_text('[[tenants]]\nid = "-a-"\n[[tenants]]\nid = "--"\n')
    assert set(config.control_records(config.load(path)).tenants) == {"-a-", "--"}


def test_the_admin_api_refuses_a_tenant_called_dash() -> None:
    with pytest.raises(msgspec.ValidationError, match="id"):
        msgspec.json.decode(b'{"id": "-"}', type=TenantCreate)
    assert msgspec.json.decode(b'{"id": "a-b"}', type=TenantCreate).id == "a-b"


@pytest.mark.parametrize(("name", "ok"), [(NO_TENANT, False), ("", False), ("a.b", False), ("_", True), ("-x", True)])
def test_tenant_id_pattern(name: str, ok: bool) -> None:
    assert bool(TENANT_ID_PATTERN.fullmatch(name)) is ok


def record(file_id: str, tenant_id: str) -> FileRecord:
    return FileRecord(
        id=file_id,
        bytes=3,
        created_at=1,
        filename="in.jsonl",
        purpose="batch",
        tenant_id=tenant_id,
        key_id="k1",
        blob=BlobRef(name=f"{tenant_id or NO_TENANT}/file/abcdefghijklmnopqrstuvwx", size=3),
    )


class FakeKV:
    """The files bucket, as far as ``FileRecords`` reads it: entries by key."""

    def __init__(self, entries: dict[str, FileRecord]) -> None:
        self.entries = entries

    async def get(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(value=encode_record(self.entries[key]), revision=1)

    async def watch(self, keys: str, ignore_deletes: bool) -> AsyncIterator[SimpleNamespace | None]:
        prefix = keys.removesuffix("*")
        matching = [(k, r) for k, r in self.entries.items() if keys in (">", "*.*") or k.startswith(prefix)]

        async def entries() -> AsyncIterator[SimpleNamespace | None]:
            for _, r in matching:
                yield SimpleNamespace(operation=None, value=encode_record(r), revision=1)
            yield None

        class Watcher:
            def __aiter__(self) -> AsyncIterator[SimpleNamespace | None]:
                return entries()

            async def stop(self) -> None:
                pass

        return Watcher()  # type: ignore[return-value]


def records_over(entries: dict[str, FileRecord]) -> FileRecords:
    files = FileRecords(js=None)  # type: ignore[arg-type]
    files._kv = FakeKV(entries)  # type: ignore[assignment]
    return files


async def test_a_tenant_lists_and_reads_only_records_that_say_they_are_its() -> None:
    """A record under the admin's "-" keys (or any other tenant's) that says it is another's is not
    listed, nor read, as the caller's: the key and the record must both name the caller's tenant."""
    own = record("file-own", "")
    stray = record("file-stray", "acme")  # under the admin's keys, but acme's
    files = records_over({record_key("", "file-own"): own, record_key("", "file-stray"): stray})
    listed = [r.id async for r in files.of_tenant("")]
    assert listed == ["file-own"]
    assert await files.get("", "file-own") == own
    assert await files.get("", "file-stray") is None
    # The sweep still sees every record.
    assert {r.id async for r in files.every()} == {"file-own", "file-stray"}
