from __future__ import annotations

from schemas.chat import Message
from schemas.control import RedactionRule
from services.redaction import redact_messages, redact_text

EMAIL = RedactionRule(name="email", pattern=r"[\w.+-]+@[\w-]+\.[\w.]+")


def test_matches_are_replaced_and_counted() -> None:
    text, n = redact_text("a@b.io and c@d.org", [EMAIL])
    assert text == "[REDACTED:email] and [REDACTED:email]" and n == 2


def test_string_and_part_contents_are_redacted_in_place() -> None:
    msgs = [
        Message(role="user", content="write to x@y.com"),
        Message(role="user", content=[{"type": "text", "text": "or z@w.net"}, {"type": "image_url"}]),
    ]
    assert redact_messages(msgs, [EMAIL]) == 2
    assert msgs[0].content == "write to [REDACTED:email]"
    assert msgs[1].content[0]["text"] == "or [REDACTED:email]"


def test_no_rules_changes_nothing() -> None:
    msgs = [Message(role="user", content="x@y.com")]
    assert redact_messages(msgs, []) == 0 and msgs[0].content == "x@y.com"
