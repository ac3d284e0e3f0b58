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


def read(req: dict[str, Any]) -> tuple[str, str, int, list[tuple[str, dict]]]:
    texts = [_text(c.get("parts") or []) for c in req["contents"]]
    system = req.get("systemInstruction")
    prompt = [_text(system.get("parts") or [])] if system else []
    tools = [
        (f["name"], f.get("parameters") or {})
        for t in req.get("tools") or ()
        for f in t.get("functionDeclarations") or ()
    ]
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


def error(status: int) -> dict[str, Any]:
    return {"error": {"code": status, "message": f"mock error {status}", "status": _STATUS.get(status, "UNKNOWN")}}


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
