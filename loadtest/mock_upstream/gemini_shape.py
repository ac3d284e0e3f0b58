"""The mock in Gemini's shape: generateContent, streamGenerateContent (SSE),
batchEmbedContents."""

from __future__ import annotations

from typing import Any

from loadtest.mock_upstream.answer import Answer, vector
from loadtest.mock_upstream.sse import Frame, data_frame

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _text(parts: list[dict[str, Any]]) -> str:
    """The text of a turn's parts, function results included."""
    texts = []
    for p in parts:
        if "text" in p:
            texts.append(p["text"])
        elif "functionResponse" in p:
            response = p["functionResponse"].get("response") or {}
            texts.append(str(response.get("result", response)))
    return " ".join(texts)


def _declarations(req: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each function declaration, with where it is (as Gemini names a place in its errors)."""
    return [
        (f"tools[{i}].function_declarations[{j}]", f)
        for i, t in enumerate(req.get("tools") or ())
        for j, f in enumerate(t.get("functionDeclarations") or ())
    ]


def read(req: dict[str, Any]) -> tuple[str, str, int, list[tuple[str, dict]]]:
    texts = [_text(c.get("parts") or []) for c in req["contents"]]
    system = req.get("systemInstruction")
    prompt = [_text(system.get("parts") or [])] if system else []
    tools = [(f["name"], f.get("parametersJsonSchema") or f.get("parameters") or {}) for _, f in _declarations(req)]
    return "\n".join(prompt + texts), texts[-1] if texts else "", len(texts), tools


def _usage(a: Answer, visible: int) -> dict[str, Any]:
    # Gemini reports thinking apart from (and not inside) candidatesTokenCount.
    usage = {
        "promptTokenCount": a.prompt_tokens,
        "candidatesTokenCount": visible,
        "totalTokenCount": a.prompt_tokens + visible + a.reasoning_tokens,
    }
    if a.cached_tokens:
        usage["cachedContentTokenCount"] = a.cached_tokens
    if a.reasoning_tokens:
        usage["thoughtsTokenCount"] = a.reasoning_tokens
    return usage


def _candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def complete(a: Answer, model: str) -> dict[str, Any]:
    parts = [{"functionCall": {"name": a.tool.name, "args": a.tool.arguments}}] if a.tool else [{"text": a.text}]
    return {
        "candidates": [_candidate(parts, "STOP")],
        "usageMetadata": _usage(a, a.completion_tokens - a.reasoning_tokens),
        "modelVersion": model,
    }


def stream(a: Answer, model: str) -> list[Frame]:
    frames = []
    for i, w in enumerate(a.words):
        last = i == len(a.words) - 1 and a.tool is None
        doc = {
            "candidates": [_candidate([{"text": w}], "STOP" if last else None)],
            "usageMetadata": _usage(a, a.completion_tokens - a.reasoning_tokens if last else i + 1),
            "modelVersion": model,
        }
        frames.append(data_frame(doc))
    if a.tool is not None or not a.words:
        parts = [{"functionCall": {"name": a.tool.name, "args": a.tool.arguments}}] if a.tool else [{"text": ""}]
        doc = {
            "candidates": [_candidate(parts, "STOP")],
            "usageMetadata": _usage(a, a.completion_tokens - a.reasoning_tokens),
            "modelVersion": model,
        }
        frames.append(data_frame(doc))
    return frames


def error(status: int, message: str | None = None) -> dict[str, Any]:
    kind = _STATUS.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message or f"mock error {status}", "status": kind}}


# The fields of Gemini's Schema, the OpenAPI subset a declaration's ``parameters`` takes.
_SCHEMA_FIELDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties", "required",
    "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
    "default", "items", "minimum", "maximum",
})  # fmt: skip


def _unknown_field(schema: Any, at: str) -> str | None:
    """Where a Schema holds a field Gemini's has not (additionalProperties, $schema, ...), or None."""
    if not isinstance(schema, dict):
        return None
    for name in schema:
        if name not in _SCHEMA_FIELDS:
            return f"Unknown name \"{name}\" at '{at}': Cannot find field."
    subs = [(f"{at}.properties[{k}].value", v) for k, v in (schema.get("properties") or {}).items()]
    subs += [(f"{at}.any_of[{i}]", v) for i, v in enumerate(schema.get("anyOf") or ())]
    subs += [(f"{at}.items", schema["items"])] if "items" in schema else []
    return next((found for where, sub in subs if (found := _unknown_field(sub, where))), None)


def refuse(req: dict[str, Any]) -> dict[str, Any] | None:
    """Gemini's 400 for a function declaration it cannot take, before any model runs, or None:
    ``parameters`` is its OpenAPI subset (a strict tool's schema is refused), ``parametersJsonSchema``
    takes JSON Schema, and a declaration has one or the other."""
    for at, f in _declarations(req):
        if "parameters" in f and "parametersJsonSchema" in f:
            return error(400, f"{at}: parameters and parameters_json_schema are mutually exclusive.")
        problem = _unknown_field(f.get("parameters"), f"{at}.parameters")
        if problem:
            return error(400, f"Invalid JSON payload received. {problem}")
    return None


def embeddings(req: dict[str, Any]) -> dict[str, Any]:
    """Raises ValueError for what Gemini refuses with a 400 (more than 3072 dimensions)."""
    out = []
    if len(req["requests"]) > 2048:
        raise ValueError("too many texts")
    for r in req["requests"]:
        text = _text(r["content"]["parts"])
        dims = int(r.get("outputDimensionality") or 8)
        if not 1 <= dims <= 3072:
            raise ValueError("outputDimensionality must be 1..3072")
        out.append({"values": vector(text, dims)})
    return {"embeddings": out}
