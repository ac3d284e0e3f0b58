"""Privacy rules on MCP calls: a call's argument strings on the way in, a
tool's result on the way out."""

from __future__ import annotations

import json

import pytest

from schemas.control import CustomDetector, PrivacyRules
from schemas.envelope import Privacy
from schemas.errors import InvalidRequest
from schemas.mcp import McpCall
from services.mcp_privacy import inspect_call, restore_result

EMAIL, KEY = "bob@example.com", "AKIAIOSFODNN7EXAMPLE"
RULES = PrivacyRules(
    detectors={"email": "mask", "secret": "redact", "card": "block"},
    custom=[CustomDetector(name="proj", keywords=["bluebird"], action="flag")],
    output={"secret": "redact", "email": "mask"},
)


def call(args: object) -> McpCall:
    return McpCall(server="demo", name="echo", arguments=json.dumps(args).encode())


def privacy_of(vault: dict[str, str], output: dict[str, str] | None = None) -> Privacy:
    return Privacy(vault=vault, output=dict(RULES.output if output is None else output), version=RULES.version)


def test_every_string_value_is_inspected_keys_and_other_values_are_kept() -> None:
    c = call(
        {
            "text": f"mail {EMAIL} with {KEY}",
            "nested": {"list": [1, True, None, f"cc {EMAIL}", {"deep": "project bluebird"}]},
            EMAIL: 3.5,  # a key is the tool's schema, not the caller's data
        }
    )
    found = inspect_call(c, RULES)
    args = json.loads(c.arguments)
    assert args["text"] == "mail [EMAIL_1] with [REDACTED:secret]"
    # The same value is the same placeholder wherever it is.
    assert args["nested"]["list"][:4] == [1, True, None, "cc [EMAIL_1]"]
    assert args["nested"]["list"][4] == {"deep": "project bluebird"}  # flagged only
    assert args[EMAIL] == 3.5
    assert found.vault == {"[EMAIL_1]": EMAIL}
    where = {(d.detector, d.action, d.where) for d in found.detections}
    assert where == {
        ("email", "mask", "arguments.text"),
        ("secret", "redact", "arguments.text"),
        ("email", "mask", "arguments.nested.list[3]"),
        ("proj", "flag", "arguments.nested.list[4].deep"),
    }
    # A detection says where, never the value.
    assert not any(EMAIL in d.where or KEY in d.where for d in found.detections)


def test_a_key_that_is_no_plain_name_is_shown_by_position() -> None:
    c = call({"x": 1, f"to {EMAIL}": f"again {EMAIL}"})
    found = inspect_call(c, RULES)
    assert [d.where for d in found.detections] == ["arguments[#1]"]


def test_a_blocked_value_changes_nothing_and_says_where() -> None:
    raw = json.dumps({"a": f"{EMAIL}", "b": {"card": "4111 1111 1111 1111"}}).encode()
    c = McpCall(server="demo", name="echo", arguments=raw)
    found = inspect_call(c, RULES)
    assert found.blocked_by is not None and found.blocked_by.where == "arguments.b.card"
    assert c.arguments == raw


def test_arguments_without_findings_stay_byte_for_byte() -> None:
    raw = b'{ "n" : 1.50,\n "s": "plain" }'
    c = McpCall(server="demo", name="echo", arguments=raw)
    assert inspect_call(c, RULES).detections == [] and c.arguments == raw


def test_a_placeholder_the_caller_wrote_is_never_chosen() -> None:
    c = call({"a": "[EMAIL_1] is literal", "b": EMAIL})
    found = inspect_call(c, RULES)
    assert json.loads(c.arguments)["b"] == "[EMAIL_2]" and found.vault == {"[EMAIL_2]": EMAIL}
    result, _ = restore_result(
        b'{"content":[{"type":"text","text":"[EMAIL_1] and [EMAIL_2]"}]}', privacy_of(found.vault)
    )
    assert json.loads(result)["content"][0]["text"] == f"[EMAIL_1] and {EMAIL}"


def test_undecodable_arguments_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        inspect_call(McpCall(server="demo", name="echo", arguments=b"{oops"), RULES)


def test_a_result_gets_the_callers_values_back_and_leaks_are_checked() -> None:
    c = call({"text": f"echo {EMAIL}"})
    vault = inspect_call(c, RULES).vault
    upstream = {
        "content": [
            {"type": "text", "text": json.loads(c.arguments)["text"]},
            {"type": "text", "text": f"also found {KEY} and eve@corp.example"},
        ],
        "structuredContent": {"owner": "[EMAIL_1]"},
        "isError": False,
    }
    out, found = restore_result(json.dumps(upstream).encode(), privacy_of(vault))
    doc = json.loads(out)
    assert doc["content"][0]["text"] == f"echo {EMAIL}"  # restored, and the caller's own: no leak
    assert doc["structuredContent"] == {"owner": EMAIL}
    leaked = doc["content"][1]["text"]
    assert KEY not in leaked and "[REDACTED:secret]" in leaked
    assert "eve@corp.example" not in leaked and "[EMAIL_" in leaked
    assert doc["isError"] is False
    assert {(d.detector, d.action, d.where) for d in found} == {
        ("secret", "redact", "result.content[1].text"),
        ("email", "mask", "result.content[1].text"),
    }


def test_binary_payloads_are_left_alone() -> None:
    blob = "QUtJQUlPU0ZPRE5ON0VYQU1QTEU="  # base64 of the key: a detector must not corrupt it
    result = {
        "contents": [{"uri": "demo://x", "blob": KEY, "mimeType": "application/octet-stream"}],
        "content": [{"type": "image", "data": KEY, "mimeType": "image/png"}, {"type": "text", "data": KEY}],
        "b64": blob,
    }
    out, found = restore_result(json.dumps(result).encode(), privacy_of({}))
    doc = json.loads(out)
    assert doc["contents"][0]["blob"] == KEY and doc["content"][0]["data"] == KEY and doc["b64"] == blob
    # "data" of anything but an image or audio is text like any other.
    assert doc["content"][1]["data"] == "[REDACTED:secret]" and [d.where for d in found] == ["result.content[1].data"]


def test_flag_reports_and_keeps_the_value() -> None:
    out, found = restore_result(json.dumps({"t": KEY}).encode(), privacy_of({}, {"secret": "flag"}))
    assert json.loads(out) == {"t": KEY} and [(d.action, d.start, d.end) for d in found] == [("flag", 0, len(KEY))]


def test_nothing_to_do_returns_the_bytes_as_they_are() -> None:
    raw = b'{"content": [{"type": "text", "text": "' + KEY.encode() + b'"}]}'
    assert restore_result(raw, Privacy()) == (raw, [])
    assert restore_result(b'{"a":"clean"}', privacy_of({}))[0] == b'{"a":"clean"}'


def test_a_result_that_is_not_json_is_read_as_one_text() -> None:
    out, found = restore_result(f"[EMAIL_1] sent {KEY}".encode(), privacy_of({"[EMAIL_1]": EMAIL}))
    assert out == f"{EMAIL} sent [REDACTED:secret]".encode() and [d.where for d in found] == ["result"]
    s, _ = restore_result(b'"[EMAIL_1]"', privacy_of({"[EMAIL_1]": EMAIL}))
    assert json.loads(s) == EMAIL
