"""An OpenAPI document made readable: its operations, parameters, bodies
and answers as small trees a template prints, never the document itself.

A REST service's document is whoever registered it's text, so it is read
as hostile: only what is looked for is read, each string is cut, local
``$ref``s are followed (never another file or URL) with recursion stopped,
and a budget bounds the nodes a page gets however deep or wide the
document is. The template escapes every string it prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_OPERATIONS = 200
# Schema nodes on one page (every operation's together), and how deep a tree goes.
MAX_NODES = 4000
MAX_DEPTH = 6
MAX_TEXT = 2000
MAX_NAME = 200
MAX_ENUM = 30
MAX_EXAMPLE = 4000
# A local ``$ref`` longer than this is not followed: no document needs one,
# and each is split on every visit.
MAX_REF = 1000


@dataclass(slots=True)
class Field:
    """One node of a schema: a property, an array's items, an option of a union."""

    name: str
    type: str
    required: bool = False
    description: str = ""
    enum: list[str] = field(default_factory=list)
    default: str = ""
    children: list[Field] = field(default_factory=list)
    # Why the tree stops here ("recursive", "cut"), when it does.
    note: str = ""


@dataclass(slots=True)
class Param:
    name: str
    where: str
    required: bool
    type: str
    description: str = ""


@dataclass(slots=True)
class Body:
    content_type: str
    schema: Field | None
    example: str = ""


@dataclass(slots=True)
class Answer:
    status: str
    description: str
    content_type: str = ""
    schema: Field | None = None


@dataclass(slots=True)
class Operation:
    method: str
    path: str
    summary: str = ""
    description: str = ""
    deprecated: bool = False
    params: list[Param] = field(default_factory=list)
    body: Body | None = None
    answers: list[Answer] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        safe = "".join(c if c.isalnum() else "-" for c in f"{self.method}-{self.path}")
        return "op-" + safe.strip("-")[:120]


def text(value: Any, most: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        return ""
    return value if len(value) <= most else value[: most - 1] + "…"


def json_text(value: Any, most: int, indent: int | None = None) -> str:
    """A JSON value as text cut at ``most`` characters, in work bounded by
    ``most`` too: one large default, enum or example may be referred to by
    thousands of nodes, so encoding it whole and cutting after is not."""
    try:
        return text(json.dumps(_bounded(value, most), indent=indent, ensure_ascii=False), most)
    except (TypeError, ValueError, RecursionError):
        return ""


def _bounded(value: Any, most: int) -> Any:
    """A copy of ``value`` with no more than about ``most`` characters of
    strings and nodes: enough to fill ``most`` characters of text, never more."""
    room = most + 1

    def walk(node: Any, depth: int) -> Any:
        nonlocal room
        room -= 1
        if isinstance(node, str):
            cut = node[: max(room, 0) + 1]
            room -= len(cut)
            return cut
        if room <= 0 or depth > MAX_DEPTH * 4:
            return "…"
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key, sub in node.items():
                if room <= 0:
                    break
                name = str(key)[: max(room, 0) + 1]
                room -= len(name)
                out[name] = walk(sub, depth + 1)
            return out
        if isinstance(node, list):
            return [walk(sub, depth + 1) for sub in node[: max(room, 0)]]
        return node

    return walk(value, 0)


class _Reader:
    """One document's reading: its ``$ref`` targets and the node budget."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.budget = MAX_NODES

    def resolve(self, ref: str) -> Any:
        """A local reference (``#/components/schemas/Echo``), or None."""
        if not ref.startswith("#/") or len(ref) > MAX_REF:
            return None
        node: Any = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def deref(self, value: Any, seen: tuple[str, ...]) -> tuple[Any, str, tuple[str, ...], bool]:
        """A ``$ref`` followed (a chain of them too, within reason): the
        target (None if missing or recursive), the name it was reached by,
        the refs on the way, and whether it came back to one of them."""
        name = ""
        for _ in range(8):
            if not isinstance(value, Mapping) or not isinstance(value.get("$ref"), str):
                break
            ref = value["$ref"]
            if ref in seen:
                return None, text(ref.rsplit("/", 1)[-1], MAX_NAME), seen, True
            name, seen = text(ref.rsplit("/", 1)[-1], MAX_NAME), (*seen, ref)
            value = self.resolve(ref)
        return value, name, seen, False

    def node(self, schema: Any, name: str, required: bool, depth: int, seen: tuple[str, ...]) -> Field:
        self.budget -= 1
        target, ref_name, path, recursive = self.deref(schema, seen)
        if target is None and ref_name:
            return Field(name, ref_name, required, note="recursive" if recursive else "not found")
        if not isinstance(target, Mapping):
            return Field(name, "any", required)
        out = Field(
            name=name,
            type=self.type_of(target, ref_name),
            required=required,
            description=text(target.get("description")) or text(target.get("title"), MAX_NAME),
            enum=[json_text(v, MAX_NAME) for v in _list(target.get("enum"))[:MAX_ENUM]],
            default=json_text(target["default"], MAX_NAME) if "default" in target else "",
        )
        if "const" in target:
            out.enum = [json_text(target["const"], MAX_NAME)]
        if depth >= MAX_DEPTH or self.budget <= 0:
            if _has_children(target):
                out.note = "cut"
            return out
        out.children = self.children(target, depth, path)
        return out

    def children(self, schema: Mapping[str, Any], depth: int, seen: tuple[str, ...]) -> list[Field]:
        out: list[Field] = []
        props = schema.get("properties")
        if isinstance(props, Mapping):
            required = {r for r in _list(schema.get("required")) if isinstance(r, str)}
            for key, sub in props.items():
                if self.budget <= 0:
                    out.append(Field("…", "", note="cut"))
                    break
                out.append(self.node(sub, text(str(key), MAX_NAME), key in required, depth + 1, seen))
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and self.budget > 0:
            out.append(self.node(extra, "{any name}", False, depth + 1, seen))
        items = schema.get("items")
        if isinstance(items, Mapping) and self.budget > 0:
            out.append(self.node(items, "[items]", False, depth + 1, seen))
        for word in ("oneOf", "anyOf", "allOf"):
            for i, option in enumerate(_list(schema.get(word))[:MAX_ENUM]):
                if self.budget <= 0:
                    break
                label = "all of, part" if word == "allOf" else "option"
                out.append(self.node(option, f"({label} {i + 1})", False, depth + 1, seen))
        return out

    @staticmethod
    def type_of(schema: Mapping[str, Any], ref_name: str) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            label = " or ".join(text(k, 20) for k in kind if isinstance(k, str))
        elif isinstance(kind, str):
            label = text(kind, 20)
        elif "oneOf" in schema or "anyOf" in schema:
            label = "one of"
        elif "allOf" in schema:
            label = "all of"
        elif "properties" in schema:
            label = "object"
        else:
            label = "any"
        if isinstance(schema.get("format"), str):
            label += f" ({text(schema['format'], 30)})"
        if label.startswith("array") and isinstance(schema.get("items"), Mapping):
            item_ref = schema["items"].get("$ref")
            if isinstance(item_ref, str):
                label += f" of {text(item_ref.rsplit('/', 1)[-1], MAX_NAME)}"
        return f"{ref_name}: {label}" if ref_name else label


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _has_children(schema: Mapping[str, Any]) -> bool:
    return any(k in schema for k in ("properties", "items", "additionalProperties", "oneOf", "anyOf", "allOf"))


def _content(content: Any) -> tuple[str, Any, Any]:
    """The first media type of a body or answer (JSON first), its schema and example."""
    if not isinstance(content, Mapping) or not content:
        return "", None, None
    kinds = [k for k in content if isinstance(k, str)]
    chosen = next((k for k in kinds if "json" in k), kinds[0] if kinds else "")
    media = content.get(chosen)
    if not isinstance(media, Mapping):
        return text(chosen, MAX_NAME), None, None
    return text(chosen, MAX_NAME), media.get("schema"), media.get("example")


def _example(value: Any) -> str:
    return "" if value is None else json_text(value, MAX_EXAMPLE, indent=2)


def _params(reader: _Reader, item: Mapping[str, Any], op: Mapping[str, Any]) -> list[Param]:
    out: dict[tuple[str, str], Param] = {}
    for raw in [*_list(item.get("parameters")), *_list(op.get("parameters"))][:100]:
        p, _, _, _ = reader.deref(raw, ())
        if not isinstance(p, Mapping) or not isinstance(p.get("name"), str):
            continue
        schema, ref_name, _, _ = reader.deref(p.get("schema"), ())
        kind = _Reader.type_of(schema, ref_name) if isinstance(schema, Mapping) else "any"
        where = text(p.get("in"), 20) or "query"
        # An operation's own parameter replaces its path's of the same name and place.
        out[(p["name"], where)] = Param(
            name=text(p["name"], MAX_NAME),
            where=where,
            required=p.get("required") is True,
            type=kind,
            description=text(p.get("description")),
        )
    return list(out.values())


def operations(doc: Any, keep: Callable[[str], bool] = lambda path: True, prefix: str = "") -> list[Operation]:
    """The document's operations whose path ``keep`` accepts, in its order,
    with ``prefix`` before each path (a service's ``/services/<slug>``)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("paths"), Mapping):
        return []
    reader = _Reader(doc)
    out: list[Operation] = []
    for path, item in doc["paths"].items():
        if not isinstance(path, str) or not isinstance(item, Mapping) or not keep(path):
            continue
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            if len(out) >= MAX_OPERATIONS:
                return out
            out.append(_operation(reader, prefix + text(path, MAX_NAME), method, item, op))
    return out


def _operation(reader: _Reader, path: str, method: str, item: Mapping[str, Any], op: Mapping[str, Any]) -> Operation:
    body = None
    request, _, _, _ = reader.deref(op.get("requestBody"), ())
    if isinstance(request, Mapping):
        kind, schema, example = _content(request.get("content"))
        body = Body(kind, reader.node(schema, "body", request.get("required") is True, 0, ()) if schema else None)
        body.example = _example(example)
    answers = []
    responses = op.get("responses")
    for status, raw in list(responses.items())[:30] if isinstance(responses, Mapping) else []:
        answer, _, _, _ = reader.deref(raw, ())
        if not isinstance(answer, Mapping):
            continue
        kind, schema, _ = _content(answer.get("content"))
        answers.append(
            Answer(
                status=text(str(status), 10),
                description=text(answer.get("description")),
                content_type=kind,
                schema=reader.node(schema, "answer", False, 0, ()) if schema is not None else None,
            )
        )
    return Operation(
        method=method.upper(),
        path=path,
        summary=text(op.get("summary"), MAX_NAME),
        description=text(op.get("description")) or text(item.get("description")),
        deprecated=op.get("deprecated") is True,
        params=_params(reader, item, op),
        body=body,
        answers=answers,
    )


def info(doc: Any) -> tuple[str, str, str]:
    """The document's title, version and description (cut)."""
    meta = doc.get("info") if isinstance(doc, Mapping) else None
    if not isinstance(meta, Mapping):
        return "", "", ""
    return text(meta.get("title"), MAX_NAME), text(meta.get("version"), 40), text(meta.get("description"))


def parse(document: bytes) -> Any:
    """A service's stored document (JSON text), or None when it is not JSON."""
    if not document:
        return None
    try:
        return json.loads(document)
    except (ValueError, RecursionError):
        return None


def tree(schema: Any, name: str = "arguments") -> Field | None:
    """A lone JSON Schema (an MCP tool's input) as a tree; its own
    ``#/$defs/...`` references resolve against itself."""
    if not isinstance(schema, Mapping):
        return None
    return _Reader(schema).node(schema, name, False, 0, ())
