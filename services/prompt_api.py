"""Prompt APIs without I/O: which versions answer a slug, who may call it,
what its lifecycle tells callers, and checking an answer against the
prompt's output schema (with the one repair request made when it fails).

A call runs its plan's steps in order. A plain prompt is one step; a chain's
steps are other prompts, each bound from the caller's variables and the
outputs of the steps before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import msgspec

from schemas.chat import ChatBody, Message
from schemas.control import ApiKey, Subscription
from schemas.errors import (
    ErrorType,
    GatewayError,
    PermissionDenied,
    RecordNotFound,
    UpstreamError,
)
from schemas.prompts import Prompt, PromptApi, PromptVersion
from services import policy
from services import prompts as prompt_svc

# How much of a wrong answer an error quotes.
RAW_OUTPUT_CHARS = 4000


class ApiNotFound(RecordNotFound):
    code = "api_not_found"


class ApiRetired(GatewayError):
    status = 410
    type = ErrorType.INVALID_REQUEST
    code = "api_retired"


class ApiIsDraft(PermissionDenied):
    code = "api_is_draft"


class OutputSchemaMismatch(UpstreamError):
    """The model's answer did not match the output schema, also after the repair request."""

    code = "output_schema_mismatch"

    def __init__(self, message: str, raw_output: str) -> None:
        super().__init__(message)
        self.raw_output = raw_output[:RAW_OUTPUT_CHARS]


@dataclass(frozen=True, slots=True)
class Step:
    version: PromptVersion
    label: str
    # The variable its output becomes for the steps after it.
    output: str


@dataclass(frozen=True, slots=True)
class ApiPlan:
    prompt: Prompt
    api: PromptApi
    # The version that answers the slug (a chain's own version for a chain).
    version: PromptVersion
    label: str
    steps: list[Step] = field(default_factory=list)


def version_key(prompt: str, version: int) -> str:
    return f"{prompt}.{version}"


class PromptBook:
    """The prompts and versions the process mirrors, read by slug."""

    def __init__(self, prompts: Mapping[str, Prompt], versions: Mapping[str, PromptVersion]) -> None:
        self.prompts = prompts
        self.versions = versions

    def by_slug(self, slug: str) -> Prompt | None:
        # A handful of APIs: a scan costs less than keeping an index in step with two watches.
        for prompt in self.prompts.values():
            if prompt.api is not None and prompt.api.slug == slug:
                return prompt
        return None

    def published(self) -> list[tuple[Prompt, PromptVersion, dict[str, Any] | None]]:
        """Every API a caller can call now (not drafts, not retired): its
        prompt, the version its label serves, and the output schema its
        answer follows (a chain's is its last step's)."""
        out = []
        for prompt in sorted(self.prompts.values(), key=lambda p: p.api.slug if p.api else ""):
            if prompt.api is None or prompt.api.state in ("draft", "retired"):
                continue
            try:
                plan = self.plan(prompt.api.slug)
            except ApiNotFound:
                continue
            out.append((plan.prompt, plan.version, plan.steps[-1].version.output_schema))
        return out

    def _labelled(self, prompt: Prompt, label: str) -> PromptVersion | None:
        number = prompt.labels.get(label)
        return self.versions.get(version_key(prompt.name, number)) if number else None

    def plan(self, slug: str) -> ApiPlan:
        prompt = self.by_slug(slug)
        if prompt is None or prompt.api is None:
            raise ApiNotFound(f"There is no API at /apis/{slug}.")
        api = prompt.api
        version = self._labelled(prompt, api.label)
        if version is None:
            raise ApiNotFound(f"API {slug!r}: prompt {prompt.name!r} has no version labelled {api.label!r}.")
        if not version.steps:
            return ApiPlan(prompt, api, version, api.label, [Step(version, api.label, "")])
        steps = []
        for s in version.steps[: prompt_svc.MAX_STEPS]:
            inner = self.prompts.get(s.prompt)
            step_version = self._labelled(inner, s.label) if inner is not None else None
            if step_version is None or step_version.steps:
                raise ApiNotFound(f"API {slug!r}: step {s.prompt!r} has no plain version labelled {s.label!r}.")
            steps.append(Step(step_version, s.label, s.output))
        return ApiPlan(prompt, api, version, api.label, steps)


def check_caller(slug: str, api: PromptApi, key: ApiKey, test: bool, subscriptions: Iterable[Subscription]) -> None:
    """A retired API answers 410; a draft only an admin's test call; an API
    that needs approval only a tenant with an approved subscription."""
    if api.state == "retired":
        instead = f" Use /apis/{api.successor} instead." if api.successor else ""
        raise ApiRetired(f"API {slug!r} is retired.{instead}")
    if api.state == "draft" and not (test and key.role != "caller"):
        raise ApiIsDraft(f"API {slug!r} is a draft: only an admin key may call it, with the header 'x-sluice-test: 1'.")
    if api.requires_approval:
        policy.check_subscription(key.tenant_id, f"apis/{slug}", subscriptions)


def lifecycle_headers(api: PromptApi) -> list[tuple[str, str]]:
    """A deprecated API says so (RFC 9745), when it goes away (RFC 8594),
    and where to go instead."""
    out = []
    if api.state in ("deprecated", "retired"):
        out.append(("deprecation", f"@{api.deprecated_at_ms // 1000}"))
        if api.sunset_at_ms:
            out.append(("sunset", formatdate(api.sunset_at_ms / 1000, usegmt=True)))
        if api.successor:
            out.append(("link", f'</apis/{api.successor}>; rel="successor-version"'))
    return out


def bind_step(version: PromptVersion, pool: Mapping[str, str]) -> dict[str, str]:
    """A step's own variables, from what the chain has so far (its defaults
    fill the rest): a step takes only the variables it declares."""
    declared = {v.name for v in version.variables}
    return prompt_svc.bind(version, {name: value for name, value in pool.items() if name in declared})


def parse_output(version: PromptVersion, text: str) -> tuple[Any, str | None]:
    """The answer as the API gives it: the text, or the parsed object when
    the prompt has an output schema, with what is wrong with it (or None)."""
    if version.output_schema is None:
        return text, None
    try:
        value = msgspec.json.decode(_strip_fence(text))
    except msgspec.DecodeError as exc:
        return None, f"the answer is not JSON ({exc})"
    validator = prompt_svc.output_validator(msgspec.json.encode(version.output_schema))
    for error in validator.iter_errors(value):
        where = "/" + "/".join(str(p) for p in error.instance_path)
        return None, f"at {where}: {error.message}"
    return value, None


def _strip_fence(text: str) -> str:
    # Models asked for JSON often wrap it in a Markdown code fence anyway.
    t = text.strip()
    if t.startswith("```") and t.endswith("```"):
        t = t[3:-3]
        return t[4:] if t.startswith("json") else t
    return t


def repair_body(body: ChatBody, answer: str, problem: str) -> ChatBody:
    """The same request once more, told what was wrong with its answer."""
    correction = (
        f"Your answer did not match the required JSON schema: {problem}. "
        "Answer again with only a JSON value that matches the schema."
    )
    messages = [*body.messages, Message(role="assistant", content=answer), Message(role="user", content=correction)]
    return msgspec.structs.replace(body, messages=messages, stream=False)


def as_variable(output: Any) -> str:
    """A step's output as the text the next step's variable becomes."""
    return output if isinstance(output, str) else msgspec.json.encode(output).decode()
