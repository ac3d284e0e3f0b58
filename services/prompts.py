"""Prompts without I/O: checking a version, binding a caller's variables,
rendering the chat request, moving labels, and a diff of two versions.

Templates are plain text with ``{{name}}`` placeholders, filled in one pass:
a value that itself contains ``{{...}}`` is text, never expanded again, and
nothing else in a template is interpreted.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

import msgspec

from schemas.chat import ChatBody, Message
from schemas.errors import InvalidRequest, RecordNotFound
from schemas.prompts import Prompt, PromptVersion, Variable

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}")
_json = msgspec.json.Encoder(order="deterministic")


class PromptInvalid(InvalidRequest):
    code = "invalid_prompt"


class VariableInvalid(InvalidRequest):
    code = "invalid_variable"


# The most steps a chain may have.
MAX_STEPS = 8


def check(version: PromptVersion) -> None:
    """A version that can be rendered: declared variables, used placeholders,
    enums with values, defaults of the right type, a usable output schema;
    or a chain of steps that each name a prompt."""
    if version.steps:
        _check_chain(version)
    elif not version.messages:
        raise PromptInvalid("A prompt needs at least one message, or steps (a chain).")
    elif not version.model:
        raise PromptInvalid("A prompt needs the model that answers it.")
    if version.output_schema is not None:
        if version.steps:
            raise PromptInvalid("A chain's output is its last step's: give that prompt the output schema.")
        problem = schema_problem(version.output_schema)
        if problem:
            raise PromptInvalid(f"The output schema is not a valid JSON Schema: {problem}")
    declared: dict[str, Variable] = {}
    for v in version.variables:
        if not NAME.fullmatch(v.name):
            raise PromptInvalid(f"Variable name {v.name!r}: use letters, digits and '_', not starting with a digit.")
        if v.name in declared:
            raise PromptInvalid(f"Variable {v.name!r} is declared twice.")
        if v.type == "enum" and not v.values:
            raise PromptInvalid(f"Variable {v.name!r} is an enum without values.")
        if v.default is not None:
            _typed(v, v.default, what="its default")
        declared[v.name] = v
    for m in version.messages:
        for name in PLACEHOLDER.findall(m.template):
            if name not in declared:
                raise PromptInvalid(f"The template uses {{{{{name}}}}}, which is not a declared variable.")


def _check_chain(version: PromptVersion) -> None:
    if version.messages or version.model:
        raise PromptInvalid("A chain has steps, not messages or a model of its own.")
    if len(version.steps) > MAX_STEPS:
        raise PromptInvalid(f"A chain has at most {MAX_STEPS} steps.")
    for step in version.steps:
        if step.prompt == version.prompt:
            raise PromptInvalid("A chain cannot call itself.")
        if step.output and not NAME.fullmatch(step.output):
            raise PromptInvalid(f"Step output {step.output!r}: use letters, digits and '_'.")
        if not LABEL.fullmatch(step.label):
            raise PromptInvalid(f"Step label {step.label!r}: use 1-64 letters, digits, '_' or '-'.")


@functools.lru_cache(maxsize=256)
def output_validator(schema_json: bytes) -> Any:
    """A compiled validator of an output schema (given as its JSON)."""
    # Imported here: only a process that checks or runs a prompt with an
    # output schema needs it (~3 MB).
    import jsonschema_rs

    return jsonschema_rs.validator_for(msgspec.json.decode(schema_json))


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a usable JSON Schema, or None."""
    import jsonschema_rs

    try:
        output_validator(msgspec.json.encode(schema))
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        return str(exc).splitlines()[0]
    return None


def bind(version: PromptVersion, given: dict[str, Any]) -> dict[str, str]:
    """The caller's variables, checked against the declarations, as the text
    each placeholder becomes. A mistake names the variable."""
    declared = {v.name: v for v in version.variables}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise VariableInvalid(f"Unknown variable {unknown[0]!r}; this prompt takes: {', '.join(sorted(declared))}.")
    out = {}
    for name, v in declared.items():
        value = given.get(name)
        if value is None:
            value = v.default
        if value is not None:
            out[name] = _typed(v, value, what=f"variable {name!r}")
        elif v.required:
            raise VariableInvalid(f"Missing variable {name!r} ({v.type}).")
        else:
            out[name] = ""
    return out


def _typed(v: Variable, value: Any, *, what: str) -> str:
    if v.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise VariableInvalid(f"{what[0].upper()}{what[1:]} must be a number, got {type(value).__name__}.")
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        raise VariableInvalid(f"{what[0].upper()}{what[1:]} must be a string, got {type(value).__name__}.")
    if v.type == "enum" and value not in v.values:
        raise VariableInvalid(f"{what[0].upper()}{what[1:]} must be one of {', '.join(v.values)}; got {value!r}.")
    return value


def render(version: PromptVersion, values: dict[str, str], *, stream: bool = False) -> ChatBody:
    """The chat request a bound prompt becomes."""

    def fill(template: str) -> str:
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

    messages = [Message(role=m.role, content=fill(m.template)) for m in version.messages]
    response_format = None
    if version.output_schema is not None:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(version.prompt), "schema": version.output_schema, "strict": True},
        }
    p = version.params
    return ChatBody(
        model=version.model,
        messages=messages,
        stream=stream,
        temperature=p.temperature,
        top_p=p.top_p,
        max_tokens=p.max_tokens,
        response_format=response_format,
    )


def _schema_name(prompt: str) -> str:
    # OpenAI allows letters, digits, '_' and '-' in a schema's name, at most 64.
    return re.sub(r"[^A-Za-z0-9_-]", "_", prompt)[:64] or "output"


def version_of(prompt: Prompt, label_or_version: str) -> int:
    """A label's version, or a version given as its number."""
    if label_or_version.isdigit():
        number = int(label_or_version)
        if not 1 <= number <= prompt.latest:
            raise RecordNotFound(f"Prompt {prompt.name!r} has no version {number}.")
        return number
    if label_or_version not in prompt.labels:
        labels = ", ".join(sorted(prompt.labels)) or "none"
        raise RecordNotFound(f"Prompt {prompt.name!r} has no label {label_or_version!r} (labels: {labels}).")
    return prompt.labels[label_or_version]


def with_label(prompt: Prompt, label: str, version: int) -> Prompt:
    """The prompt with ``label`` pointing at ``version`` (a move or a rollback)."""
    if not LABEL.fullmatch(label) or label.isdigit():
        raise InvalidRequest(f"Label {label!r}: use 1-64 letters, digits, '_' or '-', not only digits.")
    if not 1 <= version <= prompt.latest:
        raise RecordNotFound(f"Prompt {prompt.name!r} has no version {version}.")
    return msgspec.structs.replace(prompt, labels={**prompt.labels, label: version})


def diff(a: PromptVersion, b: PromptVersion) -> str:
    """What changed from ``a`` to ``b``, as a unified diff of their content."""

    def lines(v: PromptVersion) -> list[str]:
        content = msgspec.structs.replace(v, created_at_ms=0, created_by="", version=0)
        text = msgspec.json.format(_json.encode(content).decode(), indent=2)
        return text.splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(a), lines(b), f"{a.prompt} v{a.version}", f"{b.prompt} v{b.version}"))
