"""A value that matches a JSON Schema, for requests that ask for structured
output (OpenAI's ``response_format`` with ``json_schema``, Gemini's
``responseJsonSchema``): the first enum value, the lowest allowed number,
every property of an object, numbers between their bounds. Deterministic, so tests can expect it."""

from __future__ import annotations

from typing import Any


def instance(schema: Any, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 16:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return instance(schema[key][0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: instance(sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [instance(schema.get("items") or {}, depth + 1)] * max(1, int(schema.get("minItems") or 1))
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and high is not None:
            value = (low + high) / 2
        else:
            value = low + 1 if low is not None else high - 1 if high is not None else 0
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "mock"
