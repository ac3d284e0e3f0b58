from __future__ import annotations

from schemas.chat import EmbeddingsBody
from schemas.control import RedactionRule
from services.redaction import redact_embeddings_input, redact_messages, redact_text
from tests.adapters import message

EMAIL = RedactionRule(name="email", pattern=r"[\w.+-]+@[\w-]+\.[\w.]+")


def test_matches_are_replaced_and_counted() -> None:
    text, n = redact_text("a@b.io and c@d.org", [EMAIL])
    assert text == "[REDACTED:email] and [REDACTED:email]" and n == 2


def test_string_and_part_contents_are_redacted_in_place() -> None:
    msgs = [
        message(role="user", content="write to x@y.com"),
        message(
            role="user",
            content=[{"type": "text", "text": "or z@w.net"}, {"type": "image_url", "image_url": {"url": "https://x"}}],
        ),
    ]
    assert redact_messages(msgs, [EMAIL]) == 2
    assert msgs[0].content == "write to [REDACTED:email]"
    assert msgs[1].content[0].text == "or [REDACTED:email]"


def test_no_rules_changes_nothing() -> None:
    msgs = [message(role="user", content="x@y.com")]
    assert redact_messages(msgs, []) == 0 and msgs[0].content == "x@y.com"


def test_embeddings_text_inputs_are_redacted_token_arrays_left_alone() -> None:
    rules = [RedactionRule(name="email", pattern=r"\S+@\S+")]
    many = EmbeddingsBody(model="e", input=["mail a@b.c", "nothing here"])
    assert redact_embeddings_input(many, rules) == 1
    assert many.input == ["mail [REDACTED:email]", "nothing here"]
    one = EmbeddingsBody(model="e", input="x@y.z")
    assert redact_embeddings_input(one, rules) == 1 and one.input == "[REDACTED:email]"
    tokens = EmbeddingsBody(model="e", input=[1, 2, 3])
    assert redact_embeddings_input(tokens, rules) == 0 and tokens.input == [1, 2, 3]
