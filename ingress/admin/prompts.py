"""/admin/v1/prompts: versioned prompts, their labels, and the API each is
published as. Gateway admins write; any admin reads. Versions are
immutable; a label move (or rollback) and an API state change are audited."""

from __future__ import annotations

from litestar import Controller, delete, get, post, put

from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import (
    ApiIn,
    Deleted,
    DiffOut,
    Id,
    Label,
    LabelMove,
    Number,
    PromptContent,
    PromptCreate,
    VersionCreate,
)
from schemas.prompts import Prompt, PromptApi, PromptVersion
from services import control, prompt_records, prompts
from services.control import Actor
from services.prompt_api import version_key


class Prompts(Controller):
    path = "/prompts"
    tags = ["prompts"]

    def _check(self, store: ControlStore, version: PromptVersion) -> None:
        prompt_records.check_version(
            version,
            store.prompts.mirror.items,
            lambda name, n: store.prompt_versions.mirror.items.get(version_key(name, n)),
            store.model_known,
        )

    @post("/", responses=ERROR_RESPONSES)
    async def create_prompt(self, data: PromptCreate, actor: Actor, store: ControlStore) -> Prompt:
        control.require_gateway_admin(actor, "create prompts")
        prompt, version = prompt_records.first(data.name, _version(data), now_ms(), actor.key_id)
        self._check(store, version)
        if data.api is not None:
            prompt, _ = prompt_records.with_api(prompt, _api(data.api), store.prompts.mirror.items, now_ms())
        await store.prompt_versions.create(version_key(prompt.name, 1), version, actor)
        await store.prompts.create(prompt.name, prompt, actor)
        return prompt

    @get("/", responses=ERROR_RESPONSES)
    async def list_prompts(self, actor: Actor, store: ControlStore) -> list[Prompt]:
        return sorted(store.prompts.all(), key=lambda p: p.name)

    @get("/{name:str}", responses=ERROR_RESPONSES)
    async def get_prompt(self, name: Id, actor: Actor, store: ControlStore) -> Prompt:
        prompt, _ = await store.prompts.get(name)
        return prompt

    @delete("/{name:str}", status_code=200, responses=ERROR_RESPONSES)
    async def delete_prompt(self, name: Id, actor: Actor, store: ControlStore) -> Deleted:
        """Its versions stay, as history; its API is gone."""
        control.require_gateway_admin(actor, "delete prompts")
        prompt, revision = await store.prompts.get(name)
        control.require_api_owned(prompt.owner, "prompt", name)
        await store.prompts.delete(name, revision, actor, prompt)
        return Deleted(id=name)

    @post("/{name:str}/versions", responses=ERROR_RESPONSES)
    async def create_version(self, name: Id, data: VersionCreate, actor: Actor, store: ControlStore) -> PromptVersion:
        control.require_gateway_admin(actor, "add prompt versions")
        before, revision = await store.prompts.get(name)
        control.require_api_owned(before.owner, "prompt", name)
        prompt, version = prompt_records.next_version(before, _version(data), now_ms(), actor.key_id, data.label or "")
        self._check(store, version)
        await store.prompt_versions.create(version_key(name, version.version), version, actor)
        await store.prompts.replace(name, prompt, revision, actor, "version", before)
        return version

    @get("/{name:str}/versions/{number:int}", responses=ERROR_RESPONSES)
    async def get_version(self, name: Id, number: Number, actor: Actor, store: ControlStore) -> PromptVersion:
        version, _ = await store.prompt_versions.get(version_key(name, number))
        return version

    @put("/{name:str}/labels/{label:str}", responses=ERROR_RESPONSES)
    async def move_label(self, name: Id, label: Label, data: LabelMove, actor: Actor, store: ControlStore) -> Prompt:
        """Point a label at a version: a rollout, or a rollback to an older one."""
        control.require_gateway_admin(actor, "move prompt labels")
        before, revision = await store.prompts.get(name)
        control.require_api_owned(before.owner, "prompt", name)
        prompt = prompts.with_label(before, label, data.version)
        await store.prompts.replace(name, prompt, revision, actor, f"label {label}", before)
        return prompt

    @put("/{name:str}/api", responses=ERROR_RESPONSES)
    async def set_api(self, name: Id, data: ApiIn, actor: Actor, store: ControlStore) -> Prompt:
        """Publish the prompt as POST /apis/<slug>, or move its API through
        its lifecycle: draft, published, deprecated, retired."""
        control.require_gateway_admin(actor, "publish prompts")
        before, revision = await store.prompts.get(name)
        control.require_api_owned(before.owner, "prompt", name)
        prompt, action = prompt_records.with_api(before, _api(data), store.prompts.mirror.items, now_ms())
        await store.prompts.replace(name, prompt, revision, actor, action, before)
        return prompt

    @get("/{name:str}/diff", responses=ERROR_RESPONSES)
    async def diff(self, name: Id, actor: Actor, store: ControlStore, a: str, b: str = "production") -> DiffOut:
        """What changed between two versions (numbers or labels)."""
        prompt, _ = await store.prompts.get(name)
        first, _ = await store.prompt_versions.get(version_key(name, prompts.version_of(prompt, a)))
        second, _ = await store.prompt_versions.get(version_key(name, prompts.version_of(prompt, b)))
        return DiffOut(diff=prompts.diff(first, second))


def _version(data: PromptContent) -> PromptVersion:
    """The version a request's content makes (its prompt and number are set by the records)."""
    fields = {f: getattr(data, f) for f in PromptContent.__struct_fields__}
    return PromptVersion(prompt="", version=0, **fields)


def _api(data: ApiIn) -> PromptApi:
    return PromptApi(**{f: getattr(data, f) for f in data.__struct_fields__})
