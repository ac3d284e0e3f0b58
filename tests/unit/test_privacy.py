from __future__ import annotations

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.control import CustomDetector, PrivacyRules, RedactionRule, Tenant
from services import privacy
from services.masking import restore
from tests.adapters import message

LEGACY = Tenant(id="t", redaction_rules=[RedactionRule(name="email", pattern=r"[\w.+-]+@[\w-]+\.[\w.]+")])


def body(*messages: object) -> ChatBody:
    return ChatBody(model="m", messages=list(messages))  # type: ignore[arg-type]


def test_first_form_rules_still_redact_strings_and_text_parts_in_place() -> None:
    b = body(
        message(role="user", content="write to x@y.com"),
        message(
            role="user",
            content=[{"type": "text", "text": "or z@w.net"}, {"type": "image_url", "image_url": {"url": "https://x"}}],
        ),
    )
    rules = privacy.rules_of(LEGACY)
    assert rules is not None and not privacy.masks(rules)
    found = privacy.inspect(b, None, rules)
    assert b.messages[0].content == "write to [REDACTED:email]"
    assert b.messages[1].content[0].text == "or [REDACTED:email]"  # type: ignore[index, union-attr]
    assert [(d.where, d.action) for d in found.detections] == [
        ("messages[0].content", "redact"),
        ("messages[1].content[0]", "redact"),
    ]
    assert found.vault == {}


def test_a_tenant_with_no_rules_has_no_stage() -> None:
    assert privacy.rules_of(Tenant(id="t")) is None


def test_masked_values_get_placeholders_and_a_vault_that_restores_them() -> None:
    b = body(message(role="user", content="mail jane@example.com, card 4111111111111111, jane@example.com"))
    rules = PrivacyRules(detectors={"email": "mask", "card": "redact"})
    found = privacy.inspect(b, None, rules)
    assert b.messages[0].content == "mail [EMAIL_1], card [REDACTED:card], [EMAIL_1]"
    assert found.vault == {"[EMAIL_1]": "jane@example.com"}
    restored = restore(b.messages[0].content, found.vault)  # type: ignore[arg-type]
    assert restored == "mail jane@example.com, card [REDACTED:card], jane@example.com"


def test_a_blocking_detection_changes_nothing_and_says_where_not_what() -> None:
    text = "my ssn is 078-05-1120 and mail a@example.com"
    b = body(message(role="user", content=text))
    found = privacy.inspect(b, None, PrivacyRules(detectors={"ssn": "block", "email": "mask"}))
    blocked = found.blocked_by
    assert blocked is not None and (blocked.detector, blocked.where) == ("ssn", "messages[0].content")
    assert b.messages[0].content == text  # refused as a whole: nothing half-masked goes anywhere
    assert "078-05-1120" not in repr(found.detections)


def test_flagged_values_pass_and_are_recorded() -> None:
    b = body(message(role="user", content="host 10.0.0.1"))
    found = privacy.inspect(b, None, PrivacyRules(detectors={"ipv4": "flag"}))
    assert b.messages[0].content == "host 10.0.0.1" and [d.action for d in found.detections] == ["flag"]


def test_embeddings_text_inputs_are_inspected_and_token_arrays_left_alone() -> None:
    rules = PrivacyRules(custom=[CustomDetector(name="email", pattern=r"\S+@\S+")])
    many = EmbeddingsBody(model="e", input=["mail a@b.c", "nothing here"])
    privacy.inspect(None, many, rules)
    assert many.input == ["mail [REDACTED:email]", "nothing here"]
    one = EmbeddingsBody(model="e", input="x@y.z")
    privacy.inspect(None, one, rules)
    assert one.input == "[REDACTED:email]"
    tokens = EmbeddingsBody(model="e", input=[1, 2, 3])
    assert privacy.inspect(None, tokens, rules).detections == [] and tokens.input == [1, 2, 3]


def test_rules_that_cannot_work_are_named() -> None:
    assert "no built-in detector passport" in (privacy.problem(PrivacyRules(detectors={"passport": "mask"})) or "")
    both = PrivacyRules(custom=[CustomDetector(name="x", pattern="a", keywords=["b"])])
    assert "one of the two" in (privacy.problem(both) or "")
    broken = PrivacyRules(custom=[CustomDetector(name="x", pattern="(")])
    assert "is refused" in (privacy.problem(broken) or "")
    assert "not blocked" in (privacy.problem(PrivacyRules(output={"secret": "block"})) or "")
    assert "output: no built-in detector" in (privacy.problem(PrivacyRules(output={"passport": "flag"})) or "")
    assert privacy.problem(PrivacyRules(detectors={"email": "mask"}, output={"secret": "redact"})) is None
    assert privacy.masks(PrivacyRules(output={"secret": "flag"}))  # the answer needs a pass: no cached stand-in


def test_national_phone_numbers_are_read_as_the_tenants_country_writes_them() -> None:
    text = "Berlin office: 030 901820, New York: (212) 555-0100."
    read = {}
    for region in ("DE", "US"):
        b = body(message(role="user", content=text))
        privacy.inspect(b, None, PrivacyRules(detectors={"phone": "mask"}, phone_region=region))
        read[region] = b.messages[0].content
    assert read["DE"] == "Berlin office: [PHONE_1], New York: (212) 555-0100."
    assert read["US"] == "Berlin office: 030 901820, New York: [PHONE_1]."
    assert "phone_region" in (privacy.problem(PrivacyRules(phone_region="XX")) or "")
