"""Privacy rules on a REST call's JSON body (services that opt in with
``redact_json``): string values on the way in; other bodies untouched."""

from __future__ import annotations

import json

import pytest

from schemas.control import CustomDetector, PrivacyRules
from schemas.errors import InvalidRequest
from schemas.rest import RestCall
from services.rest_privacy import inspect_body, is_json

EMAIL, KEY = "bob@example.com", "AKIAIOSFODNN7EXAMPLE"
RULES = PrivacyRules(
    detectors={"email": "mask", "secret": "redact", "card": "block"},
    custom=[CustomDetector(name="proj", keywords=["bluebird"], action="flag")],
)
JSON = [("content-type", "application/json; charset=utf-8")]


def call(body: bytes, headers: list[tuple[str, str]] = JSON) -> RestCall:
    return RestCall(service="crm", method="POST", path="/contacts", headers=headers, body=body)


def test_every_string_value_of_a_json_body_is_inspected_keys_and_other_values_are_kept() -> None:
    doc = {
        "note": f"mail {EMAIL} with {KEY}",
        "tags": [1, True, None, f"cc {EMAIL}", {"deep": "project bluebird"}],
        EMAIL: 3.5,  # a key is the service's schema, not the caller's data
    }
    c = call(json.dumps(doc).encode())
    found = inspect_body(c, RULES)
    sent = json.loads(c.body)
    assert sent["note"] == "mail [EMAIL_1] with [REDACTED:secret]"
    assert sent["tags"][:4] == [1, True, None, "cc [EMAIL_1]"]
    assert sent["tags"][4] == {"deep": "project bluebird"}  # flagged only
    assert sent[EMAIL] == 3.5
    assert found.vault == {"[EMAIL_1]": EMAIL}
    where = {(d.detector, d.action, d.where) for d in found.detections}
    assert where == {
        ("email", "mask", "body.note"),
        ("secret", "redact", "body.note"),
        ("email", "mask", "body.tags[3]"),
        ("proj", "flag", "body.tags[4].deep"),
    }


def test_a_body_with_nothing_found_is_left_byte_for_byte() -> None:
    body = b'{ "name" : "widget",  "price": 9.50 }'
    c = call(body)
    assert inspect_body(c, RULES).detections == [] and c.body == body
    flagged = b'{"about": "bluebird"}'
    c = call(flagged)
    assert [d.action for d in inspect_body(c, RULES).detections] == ["flag"] and c.body == flagged


def test_a_blocked_value_changes_nothing() -> None:
    body = json.dumps({"card": "4111 1111 1111 1111", "mail": EMAIL}).encode()
    c = call(body)
    found = inspect_body(c, RULES)
    assert found.blocked_by is not None and found.blocked_by.where == "body.card"
    assert c.body == body


def test_a_json_string_body_is_one_value() -> None:
    c = call(json.dumps(f"to {EMAIL}").encode())
    inspect_body(c, RULES)
    assert json.loads(c.body) == "to [EMAIL_1]"


@pytest.mark.parametrize(
    "headers",
    [[], [("content-type", "text/plain")], [("content-type", "application/octet-stream")], [("x-json", "1")]],
)
def test_a_body_not_sent_as_json_is_not_read(headers: list[tuple[str, str]]) -> None:
    body = f"mail {EMAIL}".encode()
    c = call(body, headers)
    assert inspect_body(c, RULES).detections == [] and c.body == body


def test_json_types_are_recognised_by_their_media_type() -> None:
    for value in ("application/json", "Application/JSON", "application/problem+json", "application/vnd.x+json; v=1"):
        assert is_json(call(b"", [("content-type", value)])), value
    for value in ("application/jsonp", "text/json-ish", "application/x-json-stream2"):
        assert not is_json(call(b"", [("content-type", value)])), value


@pytest.mark.parametrize("body", [b"{not json", b'{"a":' * 5000 + b"1" + b"}" * 5000, b"\xff"])
def test_a_body_sent_as_json_that_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        inspect_body(call(body), RULES)
    assert info.value.code == "invalid_json"


@pytest.mark.parametrize("body", [b"123", b"null", b"true", b"-1.5e3"])
def test_a_json_body_of_one_number_or_constant_has_nothing_to_inspect(body: bytes) -> None:
    c = call(body)
    assert inspect_body(c, RULES).detections == [] and c.body == body


def test_a_body_any_of_whose_content_types_says_json_is_read() -> None:
    # Which of two Content-Type headers a service believes is its own
    # business: a second one saying JSON must not take the body past the rules.
    c = call(
        json.dumps({"note": EMAIL}).encode(), [("content-type", "text/plain"), ("content-type", "application/json")]
    )
    inspect_body(c, RULES)
    assert json.loads(c.body) == {"note": "[EMAIL_1]"}
