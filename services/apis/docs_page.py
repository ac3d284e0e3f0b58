"""``/docs``: the OpenAPI document as one readable page, rendered on the
server (no script, nothing fetched from elsewhere): each endpoint with its
fields, and each prompt API with its variables and answer."""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h2 { border-bottom: 1px solid #ddd; margin-top: 2.5rem; }
.op { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem; margin: 1rem 0; }
.op.deprecated { opacity: 0.7; }
.method { font-weight: bold; color: #fff; background: #2a7; border-radius: 4px; padding: 0 0.4rem; }
code, pre { background: #f5f5f5; border-radius: 4px; }
pre { padding: 0.5rem; overflow-x: auto; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: left; }
"""


def _fields(schema: dict[str, Any]) -> str:
    props = schema.get("properties") or {}
    if not props:
        return "<p>No variables.</p>"
    required = set(schema.get("required") or ())
    rows = []
    for name, sub in props.items():
        kind = " | ".join(json.dumps(v) for v in sub["enum"]) if "enum" in sub else sub.get("type", "")
        default = json.dumps(sub["default"]) if "default" in sub else ""
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(kind))}</td>"
            f"<td>{'yes' if name in required else 'no'}</td><td>{escape(default)}</td>"
            f"<td>{escape(sub.get('description', ''))}</td></tr>"
        )
    head = "<tr><th>variable</th><th>type</th><th>required</th><th>default</th><th></th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _sample(sub: dict[str, Any]) -> Any:
    if "default" in sub:
        return sub["default"]
    if "enum" in sub:
        return sub["enum"][0]
    return 1 if sub.get("type") == "number" else "..."


def _example(base_url: str, path: str, schema: dict[str, Any]) -> str:
    sample = {name: _sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    return (
        f'curl {base_url}{path} \\\n  -H "authorization: Bearer $SLUICE_KEY" \\\n'
        f"  -H 'content-type: application/json' \\\n  -d '{json.dumps(sample)}'"
    )


def _operation(base_url: str, path: str, op: dict[str, Any]) -> str:
    deprecated = " deprecated" if op.get("deprecated") else ""
    body_type, body_content = next(iter(op["requestBody"]["content"].items()))
    body = body_content["schema"]
    parts = [
        f'<div class="op{deprecated}" id="{escape(op["operationId"])}">',
        f'<h3><span class="method">POST</span> <code>{escape(path)}</code> {escape(op.get("summary", ""))}</h3>',
    ]
    if op.get("description"):
        parts += [f"<p>{escape(p)}</p>" for p in op["description"].split("\n\n")]
    if path.startswith("/apis/"):
        output = op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["output"]
        parts += [
            _fields(body),
            "<p>Answer: <code>output</code> is</p>",
            f"<pre>{escape(json.dumps(output, indent=2))}</pre>",
            "<p>Add <code>?stream=true</code> for server-sent events: <code>delta</code> events, then the "
            "<code>answer</code>.</p>",
            f"<pre>{escape(_example(base_url, path, body))}</pre>",
        ]
    else:
        name = body.get("$ref", "").rsplit("/", 1)[-1]
        parts.append(
            f"<p>Request body ({escape(body_type)}): <code>{escape(name)}</code> in "
            '<a href="/openapi.json">/openapi.json</a>.</p>'
        )
        answers = op["responses"]["200"]["content"]
        parts.append(f"<p>Answers: {', '.join(f'<code>{escape(t)}</code>' for t in answers)}.</p>")
        if body_type == "multipart/form-data":
            parts.append("<p>An upload: over HTTP only (not on the bus nor the WebSocket).</p>")
    parts.append("</div>")
    return "\n".join(parts)


def render(doc: dict[str, Any], base_url: str) -> str:
    sections: dict[str, list[str]] = {}
    for path, item in doc["paths"].items():
        op = item["post"]
        sections.setdefault(op["tags"][0], []).append(_operation(base_url, path, op))
    body = [f"<h1>{escape(doc['info']['title'])}</h1>", f"<p>{escape(doc['info']['description'])}</p>"]
    body.append(
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Every call needs '
        "<code>Authorization: Bearer &lt;key&gt;</code>.</p>"
    )
    for tag in ("prompt APIs", "client APIs"):
        if tag in sections:
            body.append(f"<h2>{escape(tag)}</h2>")
            body += sections[tag]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sluice APIs</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
