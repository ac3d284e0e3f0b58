"""The route template a REST call's row records, from the service's OpenAPI paths."""

from __future__ import annotations

import json

import pytest

from services.openapi_routes import MAX_PATHS, RouteTable, RouteTables, templates_of


def doc(*paths: str) -> bytes:
    return json.dumps({"openapi": "3.1.0", "paths": {p: {"get": {}} for p in paths}}).encode()


def test_a_templated_path_matches_any_value_of_its_segment() -> None:
    table = RouteTable(["/users/{id}", "/users/{id}/posts/{post}", "/health"])
    assert table.match("/users/42") == "/users/{id}"
    assert table.match("/users/42/posts/7") == "/users/{id}/posts/{post}"
    assert table.match("/health") == "/health"


def test_nothing_matched_is_an_empty_route() -> None:
    table = RouteTable(["/users/{id}"])
    assert table.match("/users") == ""
    assert table.match("/users/42/extra") == ""
    assert table.match("/other") == ""
    assert RouteTable([]).match("/") == ""


def test_a_concrete_path_wins_over_a_templated_one_from_the_left() -> None:
    table = RouteTable(["/users/{id}", "/users/me", "/{kind}/me/settings", "/users/{id}/settings"])
    assert table.match("/users/me") == "/users/me"
    assert table.match("/users/7") == "/users/{id}"
    assert table.match("/users/me/settings") == "/users/{id}/settings"
    assert table.match("/teams/me/settings") == "/{kind}/me/settings"


def test_a_dead_end_on_the_literal_branch_falls_back_to_the_templated_one() -> None:
    table = RouteTable(["/files/readme", "/files/{name}/raw"])
    assert table.match("/files/readme/raw") == "/files/{name}/raw"


def test_literal_text_around_a_parameter_must_match_too() -> None:
    table = RouteTable(["/reports/{id}.json", "/reports/{id}.{format}"])
    assert table.match("/reports/9.json") == "/reports/{id}.json"
    assert table.match("/reports/9.csv") == "/reports/{id}.{format}"
    assert table.match("/reports/9") == ""


def test_trailing_slashes_and_the_root() -> None:
    table = RouteTable(["/", "/items/"])
    assert table.match("/") == "/"
    assert table.match("") == "/"
    assert table.match("/items") == "/items/"
    assert table.match("/items/") == "/items/"


def test_segments_are_decoded_one_by_one() -> None:
    table = RouteTable(["/files/{path}", "/caf\u00e9"])
    # An encoded slash stays inside its segment: one parameter, not two segments.
    assert table.match("/files/a%2Fb") == "/files/{path}"
    assert table.match("/caf%C3%A9") == "/caf\u00e9"


def test_templates_come_from_the_documents_paths_and_nothing_else() -> None:
    assert templates_of(doc("/a", "/b/{x}")) == ["/a", "/b/{x}"]
    for bad in (b"", b"not json", b"[]", b'{"paths": []}', b'{"paths": "x"}', b'{"openapi": "3.1.0"}'):
        assert templates_of(bad) == []
    assert RouteTable(["no-leading-slash", "/ok"]).match("/ok") == "/ok"


# These bound work, not speed: the unbounded code they guard against takes
# minutes on these inputs, so a hang past the timeout is the failure.
@pytest.mark.timeout(20)
def test_a_hostile_document_costs_little() -> None:
    many = [f"/p{i}/{{id}}" for i in range(MAX_PATHS + 500)]
    greedy = "/" + "".join(f"{{p{i}}}" for i in range(20))
    deep = "/" + "/".join("{x}" for _ in range(200))
    table = RouteTable([*many, greedy, deep])
    assert table.match("/p9999/1") == "/p9999/{id}"
    assert table.match(f"/p{MAX_PATHS + 1}/1") == ""  # past the cap: not compiled
    assert table.match("/" + "a" * 5000) == ""  # the 20-parameter segment was left out
    assert table.match("/" + "/".join("a" * 200)) == ""


def test_a_table_is_compiled_once_per_version_of_the_document() -> None:
    tables = RouteTables()
    first = doc("/users/{id}")
    table = tables.for_service("svc.v1", first)
    assert tables.for_service("svc.v1", first) is table
    assert tables.for_service("svc.v1", bytes(first)) is table  # same text, another object: kept
    changed = tables.for_service("svc.v1", doc("/orders/{id}"))
    assert changed is not table
    assert changed.match("/orders/1") == "/orders/{id}"
    assert tables.for_service("svc.v2", b"").match("/orders/1") == ""


@pytest.mark.timeout(20)
def test_parameters_in_one_segment_match_in_linear_time() -> None:
    # Three parameters with literal text between them cost a backtracking
    # regex cubic time in the segment's length (minutes for 8 KB of path).
    table = RouteTable(["/{a}a{b}a{c}a{d}b", "/x/{a}-{b}-{c}.{ext}"])
    for _ in range(20):  # minutes each for a backtracking regex
        assert table.match("/" + "a" * 8000) == ""
        assert table.match("/x/" + "-" * 8000) == ""
    assert table.match("/1a2a3a4b") == "/{a}a{b}a{c}a{d}b"
    assert table.match("/aaaaaaab") == "/{a}a{b}a{c}a{d}b"
    assert table.match("/aaaaaab") == ""  # four parameters take one character each at least
    assert table.match("/x/1-2-3.json") == "/x/{a}-{b}-{c}.{ext}"
    assert table.match("/x/1-2-3-4.json") == "/x/{a}-{b}-{c}.{ext}"
    assert table.match("/x/1-2.json") == ""
    assert table.match("/x/--3-4.json") == "/x/{a}-{b}-{c}.{ext}"  # a is "-"


@pytest.mark.timeout(20)
def test_a_lookup_tries_a_bounded_number_of_nodes() -> None:
    # Every path fits every segment but the last: a walk without a bound
    # would try each of the thousands of templated nodes before failing.
    shapes = ["{a}", "{a}{b}", "{a}{b}{c}", "{a}{b}{c}{d}"]
    templates = [f"/{'/'.join(shapes[(i >> (2 * d)) % 4] for d in range(6))}/end{i}" for i in range(4096)]
    table = RouteTable(templates)
    assert table.match("/aaaa/aaaa/aaaa/aaaa/aaaa/aaaa/end0") == templates[0]
    for _ in range(5_000):  # without the bound some 15 ms each: over a minute
        assert table.match("/aaaa/aaaa/aaaa/aaaa/aaaa/aaaa/none") == ""
