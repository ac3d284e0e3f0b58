"""Changing prompt records, without I/O: a new prompt, a new version, a
published API and its state. Versions are never rewritten: a change is the
next version, and labels move between them."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from schemas.control import ID_PATTERN
from schemas.errors import InvalidRequest, RecordConflict
from schemas.prompts import Prompt, PromptApi, PromptVersion
from services import prompts

# The audit action of each state an API moves to.
STATE_ACTIONS = {"draft": "unpublish", "published": "publish", "deprecated": "deprecate", "retired": "retire"}


def check_version(
    version: PromptVersion,
    others: Mapping[str, Prompt],
    version_of: Callable[[str, int], PromptVersion | None],
    model_known: Callable[[str], bool],
) -> None:
    """A version that can run: well formed, its model served here, and each
    chain step a prompt with messages."""
    prompts.check(version)
    if version.model and not model_known(version.model):
        raise InvalidRequest(f"Model {version.model!r} is not a model of this gateway.", code="model_not_found")
    for step in version.steps:
        inner = others.get(step.prompt)
        number = inner.labels.get(step.label) if inner is not None else None
        target = version_of(step.prompt, number) if number else None
        if target is None or target.steps:
            raise InvalidRequest(
                f"Step {step.prompt!r}: no prompt with messages labelled {step.label!r}.", code="invalid_prompt"
            )


def first(name: str, content: PromptVersion, now_ms: int, actor: str) -> tuple[Prompt, PromptVersion]:
    if not ID_PATTERN.fullmatch(name):
        raise InvalidRequest(f"Prompt name {name!r}: use 1-64 letters, digits, '_' or '-'.")
    version = msgspec.structs.replace(content, prompt=name, version=1, created_at_ms=now_ms, created_by=actor)
    return Prompt(name=name, latest=1, labels={"production": 1}, created_at_ms=now_ms, owner="api"), version


def next_version(
    prompt: Prompt, content: PromptVersion, now_ms: int, actor: str, label: str = ""
) -> tuple[Prompt, PromptVersion]:
    """The prompt's next version; ``label`` (e.g. "staging") moves to it at once."""
    number = prompt.latest + 1
    version = msgspec.structs.replace(
        content, prompt=prompt.name, version=number, created_at_ms=now_ms, created_by=actor
    )
    updated = msgspec.structs.replace(prompt, latest=number)
    if label:
        updated = prompts.with_label(updated, label, number)
    return updated, version


def with_api(prompt: Prompt, api: PromptApi, others: Mapping[str, Prompt], now_ms: int) -> tuple[Prompt, str]:
    """The prompt published (or its API changed), and the audit action."""
    if not ID_PATTERN.fullmatch(api.slug):
        raise InvalidRequest(f"API slug {api.slug!r}: use 1-64 letters, digits, '_' or '-'.")
    for other in others.values():
        if other.name != prompt.name and other.api is not None and other.api.slug == api.slug:
            raise RecordConflict(f"API slug {api.slug!r} is taken by prompt {other.name!r}.")
    if api.label not in prompt.labels:
        raise InvalidRequest(f"Prompt {prompt.name!r} has no label {api.label!r} to serve.")
    before = prompt.api
    api = dated(api, before, now_ms)
    changed_state = before is None or before.state != api.state
    action = STATE_ACTIONS[api.state] if changed_state else "update"
    return msgspec.structs.replace(prompt, api=api), action


def dated(api: PromptApi, before: PromptApi | None, now_ms: int) -> PromptApi:
    """An API deprecated (or retired) keeps the date it was first deprecated:
    the ``Deprecation`` header says since when."""
    if api.state not in ("deprecated", "retired") or api.deprecated_at_ms:
        return api
    since = before.deprecated_at_ms if before is not None and before.deprecated_at_ms else now_ms
    return msgspec.structs.replace(api, deprecated_at_ms=since)
