"""The ingress's OpenAPI document, generated: the client APIs from their
request and answer Structs, and each published prompt API from its
variables and output schema, as they are now (a label move shows at once).

A row that takes an upload (``ClientApi.parse_form``) is described as
multipart/form-data: its form Struct's ``bytes`` fields are files
(``format: binary``). An answer that is not JSON (speech's audio, a
transcript in text, srt or vtt) is listed under its own media types."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.prompts import Prompt, PromptVersion, Variable
from services.apis.base import ClientApi

REF = "#/components/schemas/{name}"
_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "raw_output": {"type": "string", "description": "A prompt API's answer that broke its schema."},
            },
        }
    },
}
_COST_PARTS = ("pico_usd", "input_pico_usd", "cached_input_pico_usd", "output_pico_usd")
_ANSWER_FIELDS = {
    "request_id": {"type": "string"},
    "prompt": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "version": {"type": "integer"}, "label": {"type": "string"}},
    },
    "usage": {
        "type": "object",
        "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    },
    "cost": {
        "type": "object",
        "description": "Exact integers in pico-USD (1e-12 USD), and the total in USD.",
        "properties": {
            "usd": {"type": "number"},
            **{
                k: {"type": "integer"}
                for k in ("pico_usd", "input_pico_usd", "cached_input_pico_usd", "output_pico_usd")
            },
        },
    },
}


def variable_schema(v: Variable) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number" if v.type == "number" else "string"}
    if v.type == "enum":
        out["enum"] = list(v.values)
    if v.default is not None:
        out["default"] = v.default
    if v.description:
        out["description"] = v.description
    return out


def variables_schema(version: PromptVersion) -> dict[str, Any]:
    required = [v.name for v in version.variables if v.required and v.default is None]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {v.name: variable_schema(v) for v in version.variables},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _answer_schema(output: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["output", "request_id", "prompt", "usage", "cost"],
        "properties": {"output": output or {"type": "string"}, **_ANSWER_FIELDS},
    }


_BINARY = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}
# The answers a row gives besides JSON, by its ``api`` (``ClientApi.media_type``
# says which per request; the table does not list them all).
_OTHER_ANSWERS: dict[str, dict[str, Any]] = {
    "speech": {"audio/*": {"schema": _BINARY}},
    # text and srt as text/plain, vtt as text/vtt.
    "transcriptions": {"text/plain": {"schema": _TEXT}, "text/vtt": {"schema": _TEXT}},
    "translations": {"text/plain": {"schema": _TEXT}, "text/vtt": {"schema": _TEXT}},
}
# Answers that are never JSON (an error still is).
_NOT_JSON = frozenset({"speech"})


def _responses(
    ok: dict[str, Any], *, stream: bool = False, other: dict[str, Any] | None = None, json: bool = True
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ok}} if json else {}
    content.update(other or {})
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {"200": {"description": "The answer", "content": content}}
    for status, what in (
        ("400", "A missing or mistyped field, named in the message"),
        ("401", "No key, or a key that is not valid"),
        ("403", "The key may not call this"),
        ("413", "The body, or an upload's files, larger than the gateway takes (max_body_bytes, max_upload_bytes)"),
        ("429", "A limit or budget is used up"),
        ("502", "The upstream failed (or, for a prompt API, its answer broke the output schema)"),
    ):
        responses[status] = {"description": what, "content": {"application/json": {"schema": _ERROR}}}
    return responses


def _as_files(schema: Any) -> Any:
    """A form Struct's schema with its ``bytes`` (base64 in JSON) as files."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and schema.get("contentEncoding") == "base64":
            return {k: v for k, v in schema.items() if k != "contentEncoding"} | {"format": "binary"}
        return {k: _as_files(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_as_files(v) for v in schema]
    return schema


def _client_operation(api: ClientApi, operation_id: str, request: dict[str, Any], answer: dict[str, Any]) -> dict:
    body_type = "multipart/form-data" if api.parse_form is not None else "application/json"
    return {
        "operationId": operation_id,
        "summary": api.summary,
        "tags": ["client APIs"],
        "requestBody": {"required": True, "content": {body_type: {"schema": request}}},
        "responses": _responses(
            answer,
            stream=api.streams,
            other=_OTHER_ANSWERS.get(api.name),
            json=api.name not in _NOT_JSON,
        ),
    }


def _prompt_operation(prompt: Prompt, version: PromptVersion, output_of: dict[str, Any] | None) -> dict[str, Any]:
    assert prompt.api is not None
    api = prompt.api
    lines = [f"Prompt `{prompt.name}`, version {version.version} (label `{api.label}`)."]
    if version.steps:
        lines.append("A chain: " + " → ".join(s.prompt for s in version.steps) + ".")
    if version.note:
        lines.append(version.note)
    if api.state == "deprecated":
        lines.append(f"Deprecated; use /apis/{api.successor} instead." if api.successor else "Deprecated.")
    op: dict[str, Any] = {
        "operationId": f"api_{api.slug}",
        "summary": f"{api.slug} ({api.state})",
        "description": "\n\n".join(lines),
        "tags": ["prompt APIs"],
        "parameters": [
            {"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean", "default": False}}
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": variables_schema(version)}}},
        "responses": _responses(_answer_schema(output_of), stream=True),
    }
    if api.state == "deprecated":
        op["deprecated"] = True
    return op


def document(
    apis: tuple[ClientApi, ...],
    published: list[tuple[Prompt, PromptVersion, dict[str, Any] | None]],
) -> dict[str, Any]:
    """``published``: each published API's prompt, the version it serves,
    and the output schema its answer follows (a chain's is its last step's)."""
    schemas, components = msgspec.json.schema_components(
        [t for api in apis for t in (api.request_type, api.response_type)], ref_template=REF
    )
    paths: dict[str, Any] = {}
    named: set[str] = set()
    for i, api in enumerate(apis):
        if api.parse_form is not None:
            name = schemas[2 * i].get("$ref", "").rsplit("/", 1)[-1]
            if name in components:
                components[name] = _as_files(components[name])
        # Unique, as OpenAPI asks: a second path of the same API (rerank's /v2) is named by its path.
        operation_id = api.name if api.name not in named else api.path.strip("/").replace("/", "_")
        named.add(operation_id)
        paths[api.path] = {"post": _client_operation(api, operation_id, schemas[2 * i], schemas[2 * i + 1])}
    for prompt, version, output in published:
        assert prompt.api is not None
        paths[f"/apis/{prompt.api.slug}"] = {"post": _prompt_operation(prompt, version, output)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice",
            "version": "1",
            "description": "OpenAI- and Anthropic-compatible endpoints, and prompts published as REST APIs.",
        },
        "paths": paths,
        "components": {
            "schemas": {**components, "Error": _ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
