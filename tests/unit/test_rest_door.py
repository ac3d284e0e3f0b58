"""What the ingress checks of a REST call before publishing it (services/rest_door.py)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.admin_services import Successor, Version
from schemas.errors import GatewayError, InvalidRequest, RecordNotFound
from schemas.rest import RestCall, RestInstance, RestService, service_key
from services import rest_config, rest_door, rest_policy
from services.rest_door import Target

INSTANCE = [RestInstance(url="http://127.0.0.1:9000")]
SERVICES = {
    service_key("billing", 1): RestService(slug="billing", instances=INSTANCE),
    service_key("billing", 3): RestService(slug="billing", version=3, instances=INSTANCE),
}
has = rest_door.has_version_in(SERVICES)


def test_a_path_names_its_service_its_version_and_the_path_under_it() -> None:
    assert rest_door.target_of("/services/billing/invoices/7", "a=1", has) == Target("billing", 1, "/invoices/7", "a=1")
    assert rest_door.target_of("/services/billing/v3/invoices", "", has) == Target("billing", 3, "/invoices", "")
    assert rest_door.target_of("/services/billing/v3", "", has) == Target("billing", 3, "/", "")
    assert rest_door.target_of("/services/billing", "", has) == Target("billing", 1, "/", "")
    assert rest_door.target_of("/services/billing/", "", has).path == "/"
    assert Target("billing", 1, "/x", "q=1").path_and_query == "/x?q=1"


def test_a_version_segment_the_service_lacks_is_part_of_the_path() -> None:
    # No version 2: "/v2/..." is the version-1 service's own path.
    assert rest_door.target_of("/services/billing/v2/items", "", has) == Target("billing", 1, "/v2/items", "")
    for odd in ("v03", "v0", "v", "vx", "v1000000", "v99999999999"):
        assert rest_door.target_of(f"/services/billing/{odd}/x", "", has).path == f"/{odd}/x"


def test_a_draft_version_does_not_shadow_the_path_but_every_other_state_does() -> None:
    services = {
        s.key: s
        for s in (
            RestService(slug="api", instances=INSTANCE),
            RestService(slug="api", version=2, state="draft", instances=INSTANCE),
            RestService(slug="api", version=3, state="deprecated", instances=INSTANCE),
            RestService(slug="api", version=4, state="retired", instances=INSTANCE),
            RestService(slug="api", version=5, instances=INSTANCE),
        )
    }
    has_api = rest_door.has_version_in(services)

    def resolved(path: str, method: str = "GET") -> tuple[Target, RestService | GatewayError]:
        target = rest_door.target_of(path, "", has_api)
        call = RestCall(service=target.slug, version=target.version, method=method, path=target.path)
        try:
            return target, rest_policy.find_service(call, services)
        except GatewayError as exc:
            return target, exc

    # A draft is not there for callers: its "/v2/..." is version 1's own path.
    target, found = resolved("/services/api/v2/items")
    assert target == Target("api", 1, "/v2/items", "") and found == services["api.v1"]
    for version in (3, 5):
        target, found = resolved(f"/services/api/v{version}/items")
        assert target == Target("api", version, "/items", "") and found == services[f"api.v{version}"]
    # A retired version still owns its path: it is gone (410), not version 1's.
    target, found = resolved("/services/api/v4/items")
    assert target.version == 4 and isinstance(found, GatewayError) and found.status == 410
    # A bus caller names the version itself: the draft is not there (404), as at the door.
    draft_call = RestCall(service="api", version=2, method="GET", path="/items")
    with pytest.raises(RecordNotFound):
        rest_policy.find_service(draft_call, services)


def test_a_path_that_names_no_service_is_a_404() -> None:
    for path in ("/services/", "/services/Bad_Slug/x", "/services/-x", "/servicesx/a"):
        with pytest.raises(RecordNotFound) as missing:
            rest_door.target_of(path, "", has)
        assert missing.value.code == "service_not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/services/billing/..",
        "/services/billing/a/../../admin",
        "/services/billing/%2e%2e/admin",
        "/services/billing/%2E%2e",
        "/services/billing/.",
        "/services/billing/a/..%2fadmin",
        "/services/billing/a/..%5cadmin",
        "/services/billing/a/..\\admin",
        "/services/billing/%252e%252e/admin",
        "/services/billing/a%00b",
        "/services/billing/a%0d%0aX-Injected:%201",
        "/services/billing/caf\u00e9",
        "/services/billing/a b",
    ],
)
def test_a_path_that_could_climb_out_of_the_base_or_smuggle_bytes_is_refused(path: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        rest_door.target_of(path, "", has)
    assert (refused.value.status, refused.value.code) == (400, "invalid_path")


def test_dots_inside_a_segment_and_encoded_slashes_pass_as_sent() -> None:
    target = rest_door.target_of("/services/billing/files/a..b/v1.2/x%2Fy", "", has)
    assert target.path == "/files/a..b/v1.2/x%2Fy"


def test_an_unsafe_query_or_an_overlong_target_is_refused() -> None:
    for query in ("a=\x01", "a=\u00e9", "a b", "x#frag"):
        with pytest.raises(InvalidRequest) as refused:
            rest_door.target_of("/services/billing/x", query, has)
        assert refused.value.code == "invalid_path"
    with pytest.raises(InvalidRequest) as too_long:
        rest_door.target_of("/services/billing/" + "a" * 9000, "", has)
    assert too_long.value.status == 414


def test_a_deprecated_service_says_when_until_when_and_what_instead() -> None:
    assert rest_door.lifecycle_headers(RestService(slug="s")) == []
    service = RestService(
        slug="s", state="deprecated", deprecated_at_ms=1_700_000_000_000, sunset_at_ms=1_900_000_000_000, successor="t"
    )
    assert dict(rest_door.lifecycle_headers(service)) == {
        b"deprecation": b"@1700000000",
        b"sunset": b"Sun, 17 Mar 2030 17:46:40 GMT",
        b"link": b'</services/t>; rel="successor-version"',
    }


def test_a_405_names_the_methods_the_service_takes_in_a_stable_order() -> None:
    assert rest_door.allowed_methods(RestService(slug="s", methods=["POST", "GET"])) == "GET, POST"


def test_the_gateway_key_comes_from_x_api_key_or_authorization() -> None:
    headers = {b"x-api-key": "sk-1", b"authorization": "Bearer upstream"}
    assert rest_door.gateway_key(headers.get) == "Bearer sk-1"
    assert rest_door.gateway_key({b"authorization": "Bearer sk-2"}.get) == "Bearer sk-2"
    assert rest_door.gateway_key({}.get) is None


def test_headers_passed_on_leave_out_hops_keys_stripped_ones_and_the_gateways_own() -> None:
    service = RestService(slug="s", strip_headers=["cookie", "x-internal"])
    sent = [
        (b"Host", b"gateway"),
        (b"Authorization", b"Bearer sk-gateway"),
        (b"x-api-key", b"sk-gateway"),
        (b"cookie", b"session=1"),
        (b"X-Internal", b"1"),
        (b"connection", b"keep-alive, x-hop"),
        (b"x-hop", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"content-length", b"12"),
        (b"x-sluice-deployment", b"pin"),
        (b"bad name", b"1"),
        (b"x-split", b"a\r\nx-evil: 1"),
        (b"Accept", b"application/json"),
        (b"content-type", b"application/json"),
        (b"traceparent", b"00-abc-def-01"),
    ]
    assert rest_door.forwarded_headers(service, sent) == [
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("traceparent", "00-abc-def-01"),
    ]


def test_too_many_headers_or_header_bytes_are_refused_as_policy_refuses_them() -> None:
    big = [(f"x-h{i}".encode(), b"v" * 1000) for i in range(90)]
    with pytest.raises(InvalidRequest) as refused:
        rest_door.forwarded_headers(RestService(slug="s"), big)
    assert refused.value.status == 431
    many = [(f"x-h{i}".encode(), b"v") for i in range(101)]
    with pytest.raises(InvalidRequest) as refused:
        rest_door.forwarded_headers(RestService(slug="s"), many)
    assert refused.value.status == 400


def test_the_upstreams_answer_headers_lose_hops_what_the_gateway_sets_and_anything_that_splits() -> None:
    got = rest_door.answer_headers(
        [
            ("Content-Type", "text/event-stream"),
            ("Date", "Sun, 06 Dec 2026 08:00:00 GMT"),
            ("Server", "nginx"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("X-Request-Id", "upstream's"),
            ("x-bad", "a\r\nset-cookie: x"),
            ("ETag", '"v1"'),
        ]
    )
    assert got == [(b"content-type", b"text/event-stream"), (b"etag", b'"v1"')]


def test_every_version_a_record_may_have_is_one_a_path_can_name() -> None:
    top = RestService(slug="billing", version=rest_config.MAX_VERSION, instances=INSTANCE)
    assert rest_config.problem(top) is None
    has_top = rest_door.has_version_in({top.key: top})
    assert rest_door.target_of(f"/services/billing/v{top.version}/x", "", has_top).version == top.version
    past = msgspec.structs.replace(top, version=rest_config.MAX_VERSION + 1)
    assert rest_config.problem(past) is not None
    assert rest_config.problem(msgspec.structs.replace(top, successor=f"other/v{rest_config.MAX_VERSION + 1}"))


def test_the_admin_api_takes_the_same_versions_and_successors() -> None:
    assert msgspec.json.decode(b"999999", type=Version) == rest_config.MAX_VERSION
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(str(rest_config.MAX_VERSION + 1).encode(), type=Version)
    for successor in ("b", f"b/v{rest_config.MAX_VERSION}", f"b/v{rest_config.MAX_VERSION + 1}", "b/v0"):
        fits = rest_config.SUCCESSOR.fullmatch(successor) is not None
        try:
            msgspec.json.decode(msgspec.json.encode(successor), type=Successor)
        except msgspec.ValidationError:
            assert not fits, successor
        else:
            assert fits, successor
