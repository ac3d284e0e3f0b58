"""Seeding the prompts the config file owns: a prompt whose content changed
gets a new version (versions are never rewritten) and "production" moves to
it; an unchanged prompt is left alone; one the file stopped naming is
deleted (its versions stay, as history)."""

from __future__ import annotations

import time

import msgspec

from schemas import subjects
from schemas.prompts import Prompt, PromptApi, PromptVersion, decode_version
from services import prompt_records
from services.bus.kv_writer import KvWriter


def version_name(prompt: str, version: int) -> str:
    return f"{prompt}.{version}"


def _content(v: PromptVersion) -> PromptVersion:
    """What a version says, without when, by whom and its number."""
    return msgspec.structs.replace(v, version=0, created_at_ms=0, created_by="")


async def seed_prompts(
    writer: KvWriter, wanted: dict[str, tuple[PromptVersion, PromptApi | None]], existing: dict[str, tuple[Prompt, int]]
) -> list[str]:
    warnings = []
    now_ms = int(time.time() * 1000)
    for name, (content, api) in wanted.items():
        current, revision = existing.get(name, (None, 0))
        if current is not None and current.owner != "config":
            warnings.append(f"prompt {name!r}: made through the admin API, so the config file's is ignored")
            continue
        prompt = current or Prompt(name=name, created_at_ms=now_ms)
        latest = None
        if prompt.latest:
            latest, _ = await writer.read(
                subjects.KV_PROMPT_VERSIONS, version_name(name, prompt.latest), decode_version
            )
        changed = latest is None or _content(latest) != _content(content)
        if changed:
            number = prompt.latest + 1
            version = msgspec.structs.replace(content, version=number, created_at_ms=now_ms, created_by="config")
            await writer.write(
                subjects.KV_PROMPT_VERSIONS,
                version_name(name, number),
                version,
                revision=0,
                actor="config",
                action="create",
                record_type="prompt_version",
            )
            prompt = msgspec.structs.replace(prompt, latest=number, labels={**prompt.labels, "production": number})
        if api is not None:
            api = prompt_records.dated(api, current.api if current is not None else None, now_ms)
        prompt = msgspec.structs.replace(prompt, api=api, owner="config")
        if prompt != current:
            await writer.write(
                subjects.KV_PROMPTS,
                name,
                prompt,
                revision=revision,
                actor="config",
                action="update" if revision else "create",
                record_type="prompt",
                before=current,
            )
    for name, (current, revision) in existing.items():
        if name not in wanted and current.owner == "config":
            await writer.delete(
                subjects.KV_PROMPTS, name, revision=revision, actor="config", record_type="prompt", before=current
            )
    return warnings
