"""A docs page's reading of an OpenAPI document (hostile: a service's
owner wrote it) and its code samples."""

from __future__ import annotations

import ast
import json
import shlex

import pytest

from ingress.portal import openapi_view, samples
from ingress.portal.openapi_view import MAX_NODES, MAX_OPERATIONS, Field, operations, tree


def _count(field: Field | None) -> int:
    return 0 if field is None else 1 + sum(_count(c) for c in field.children)


def _doc(paths: dict, schemas: dict | None = None) -> dict:
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas or {}}}


def _get(answer_schema: dict) -> dict:
    return {
        "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": answer_schema}}}}}
    }


def test_operations_parameters_bodies_and_answers() -> None:
    doc = _doc(
        {
            "/items/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "summary": "Read",
                    "parameters": [{"$ref": "#/components/parameters/Verbose"}],
                    "responses": {},
                },
                "delete": {"deprecated": True, "responses": {"204": {"description": "gone"}}},
            },
            "/items": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Item"}, "example": {"a": 1}}
                        },
                    },
                    "responses": {"201": {"$ref": "#/components/responses/Made"}},
                }
            },
        },
        {
            "Item": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                },
            }
        },
    )
    doc["components"]["parameters"] = {"Verbose": {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}}
    doc["components"]["responses"] = {
        "Made": {
            "description": "made",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
        }
    }
    ops = operations(doc, prefix="/services/s")
    assert [(o.method, o.path) for o in ops] == [
        ("GET", "/services/s/items/{id}"),
        ("DELETE", "/services/s/items/{id}"),
        ("POST", "/services/s/items"),
    ]
    assert [(p.name, p.where, p.required) for p in ops[0].params] == [("id", "path", True), ("verbose", "query", False)]
    assert ops[1].deprecated and ops[1].answers[0].status == "204"
    body = ops[2].body
    assert body is not None and body.schema is not None and body.schema.type == "Item: object"
    assert [(c.name, c.required) for c in body.schema.children] == [("name", True), ("tags", False)]
    assert body.schema.children[1].children[0].enum == ['"a"', '"b"']
    assert json.loads(body.example) == {"a": 1}
    assert ops[2].answers[0].description == "made" and ops[2].answers[0].schema is not None


def test_a_recursive_schema_stops_where_it_refers_back() -> None:
    doc = _doc(
        {"/tree": _get({"$ref": "#/components/schemas/Node"})},
        {
            "Node": {
                "type": "object",
                "properties": {
                    "child": {"$ref": "#/components/schemas/Node"},
                    "self": {"$ref": "#/components/schemas/Loop"},
                },
            },
            "Loop": {"$ref": "#/components/schemas/Loop"},
        },
    )
    answer = operations(doc)[0].answers[0].schema
    assert answer is not None
    child, loop = answer.children
    assert child.note == "recursive" and loop.note == "recursive"


def test_a_deep_or_wide_document_is_bounded() -> None:
    deep: dict = {"type": "string"}
    for _ in range(500):
        deep = {"type": "object", "properties": {"x": deep}}
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"type": "object", "properties": {f"q{j}": {} for j in range(50)}} for i in range(500)},
    }
    paths = {f"/p{i}": _get(wide) for i in range(MAX_OPERATIONS + 50)}
    paths["/deep"] = _get(deep)
    ops = operations(_doc(paths))
    assert len(ops) == MAX_OPERATIONS
    assert sum(_count(a.schema) for o in ops for a in o.answers) <= MAX_NODES + 1000
    deep_tree = operations(_doc({"/deep": _get(deep)}))[0].answers[0].schema
    assert _count(deep_tree) <= openapi_view.MAX_DEPTH + 1


# Bounds work, not speed: unbounded, each reading below took some 4 s (the
# large value encoded whole for every node that refers to it).
@pytest.mark.timeout(20)
def test_a_large_value_many_nodes_refer_to_is_read_in_bounded_work() -> None:
    big = "x" * 400_000
    one = {"type": "string", "default": big, "enum": [big], "example": big}
    props = {f"p{i}": {"$ref": "#/components/schemas/Big"} for i in range(4000)}
    body = {"schema": {"type": "object", "properties": props}, "example": {"a": [big] * 3}}
    post = {"post": {"requestBody": {"content": {"application/json": body}}, "responses": {}}}
    doc = json.loads(json.dumps(_doc({"/a": post}, {"Big": one})))
    for _ in range(10):
        [op] = operations(doc)
    assert op.body is not None and op.body.schema is not None
    first = op.body.schema.children[0]
    assert first.type == "Big: string"
    assert len(first.default) == openapi_view.MAX_NAME and first.default.endswith("…")
    assert len(first.enum[0]) == openapi_view.MAX_NAME
    assert len(op.body.example) == openapi_view.MAX_EXAMPLE and op.body.example.startswith('{\n  "a": [\n    "xxx')


@pytest.mark.timeout(20)
def test_a_long_reference_is_not_followed() -> None:
    ref = "#/" + "/".join(["a"] * 200_000)
    props = {f"p{i}": {"$ref": ref} for i in range(2000)}
    for _ in range(20):  # unbounded: the reference split whole at every node, some 2 s a reading
        [op] = operations(_doc({"/a": _get({"type": "object", "properties": props})}))
    answer = op.answers[0].schema
    assert answer is not None and answer.children[0].note == "not found"


def test_small_values_are_shown_whole() -> None:
    assert openapi_view.json_text({"a": [1, "b", None, True]}, 200) == '{"a": [1, "b", null, true]}'
    assert openapi_view.json_text("é" * 5, 200) == '"ééééé"'
    assert openapi_view.json_text(list(range(1000)), 50).endswith("…")


def test_nonsense_is_read_as_nothing() -> None:
    for doc in (
        None,
        [],
        "x",
        {"paths": []},
        {"paths": {"/a": "x"}},
        {"paths": {"/a": {"get": 1}}},
        {"paths": {1: {}}},
    ):
        assert operations(doc) == []
    odd = _doc(
        {
            "/a": {
                "get": {
                    "parameters": [1, {"in": "x"}, {"name": 5}],
                    "requestBody": {"content": "x"},
                    "responses": {"200": 5, "x": {"content": {"a/b": 7}}},
                }
            }
        }
    )
    [op] = operations(odd)
    assert op.params == [] and op.body is not None and op.body.schema is None
    assert [a.status for a in op.answers] == ["x"]
    assert openapi_view.parse(b"not json") is None and openapi_view.parse(b"") is None
    assert openapi_view.parse(b"[" * 100_000) is None
    # Only local references are followed: no file, no URL.
    external = operations(_doc({"/a": _get({"$ref": "http://evil.test/schema.json"})}))[0].answers[0].schema
    assert external is not None and external.note == "not found" and external.children == []


def test_long_strings_are_cut() -> None:
    [op] = operations(_doc({"/a": {"get": {"summary": "s" * 10_000, "description": "d" * 10_000, "responses": {}}}}))
    assert len(op.summary) <= openapi_view.MAX_NAME and len(op.description) <= openapi_view.MAX_TEXT


def test_a_tool_schema_resolves_its_own_defs() -> None:
    schema = {
        "type": "object",
        "properties": {"where": {"$ref": "#/$defs/Place"}},
        "$defs": {"Place": {"type": "string", "description": "a city"}},
    }
    field = tree(schema)
    assert field is not None and field.children[0].type == "Place: string" and field.children[0].description == "a city"
    assert tree("x") is None


def test_samples_quote_hostile_names_for_their_language() -> None:
    name = 'it\'s $(rm -rf ~) "x"'
    curl, sdk, httpx = samples.model_samples("http://127.0.0.1:8080", name, embeddings=False)
    # The shell reads the body back exactly; Python parses the programs.
    words = shlex.split(curl.code.replace("\\\n", " "))
    assert json.loads(words[words.index("-d") + 1])["model"] == name
    for sample in (sdk, httpx):
        ast.parse(sample.code)
        assert repr(name) in sample.code
    for sample in (
        samples.prompt_samples("http://h", "slug", {"text": name}) + samples.mcp_samples("http://h", name)[1:]
    ):
        if sample.id != "curl":
            ast.parse(sample.code)


def test_the_base_url_takes_only_a_plain_host() -> None:
    assert samples.base_url("https", "portal.example.com:8443") == "https://portal.example.com:8443"
    assert samples.base_url("http", "[::1]:8080") == "http://[::1]:8080"
    for host in ("evil.test/'; rm -rf /", "a b", "", None, "x" * 300):
        assert samples.base_url("http", host) == samples.DEFAULT_BASE
    assert samples.base_url("javascript", "h") == samples.DEFAULT_BASE
    assert samples.fill_path("/items/{id}/parts/{part}") == "/items/1/parts/1"
