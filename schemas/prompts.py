"""Prompts: versioned templates that become plain REST APIs.

A version is immutable once made; labels (``production``, ``staging``, any
name) point at versions and move, which is how a prompt is rolled out and
rolled back. A prompt published as an API has a lifecycle state.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.control import Owner

VariableType = Literal["string", "number", "enum"]
ApiState = Literal["draft", "published", "deprecated", "retired"]


class Variable(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    name: str
    type: VariableType = "string"
    required: bool = True
    # Used when the caller leaves it out (then it is not required).
    default: str | float | None = None
    # The allowed values of an "enum".
    values: list[str] = []
    description: str = ""


class PromptMessage(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["system", "user", "assistant"]
    # Text with {{variable}} placeholders; nothing else is interpreted.
    template: str


class PromptParams(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


class ChainStep(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """One step of a chain: another prompt, called with the chain's variables
    and the outputs of the steps before it (those it declares)."""

    prompt: str
    label: str = "production"
    # The variable this step's output becomes for the steps after it.
    output: str = ""


class PromptVersion(msgspec.Struct, omit_defaults=True):
    """One immutable version of a prompt: either messages sent to ``model``,
    or a chain of ``steps`` (each another prompt) run in order."""

    prompt: str
    version: int
    messages: list[PromptMessage] = []
    # The model group that answers it ("" for a chain).
    model: str = ""
    steps: list[ChainStep] = []
    variables: list[Variable] = []
    params: PromptParams = msgspec.field(default_factory=PromptParams)
    # A JSON Schema the answer must match; the answer is then parsed JSON.
    output_schema: dict[str, Any] | None = None
    note: str = ""
    created_at_ms: int = 0
    created_by: str = ""


class PromptApi(msgspec.Struct, omit_defaults=True):
    """A prompt published as ``POST /apis/<slug>``."""

    slug: str
    state: ApiState = "draft"
    # The label whose version answers.
    label: str = "production"
    # Where callers should go instead, once deprecated or retired.
    successor: str = ""
    # When it was deprecated (the ``Deprecation`` header), and when it goes away.
    deprecated_at_ms: int = 0
    sunset_at_ms: int = 0
    # Callers need an approved subscription of their tenant to "apis/<slug>".
    requires_approval: bool = False


class Prompt(msgspec.Struct, omit_defaults=True):
    """A prompt's record: its labels and its API, if published. Versions are
    kept apart (one record each), so a label move never rewrites them."""

    name: str
    latest: int = 0
    # label -> version
    labels: dict[str, int] = {}
    api: PromptApi | None = None
    created_at_ms: int = 0
    owner: Owner = "config"


decode_prompt = msgspec.msgpack.Decoder(Prompt).decode
decode_version = msgspec.msgpack.Decoder(PromptVersion).decode
