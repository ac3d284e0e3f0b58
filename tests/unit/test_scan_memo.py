"""Each distinct text scanned once per tenant and rules: the memo must give
exactly what scanning gives, never across tenants or rules, and stay bounded."""

from __future__ import annotations

import msgspec

from schemas.chat import ChatBody, Message
from schemas.control import CustomDetector, PrivacyRules
from services import privacy
from services.detectors.base import Finding
from services.scan_memo import MIN_TEXT, ScanMemo

RULES = PrivacyRules(detectors={"email": "mask", "phone": "mask", "card": "redact"})
TURN = "Write to jane.doe@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111. " * 4


def counting(calls: list[str]):  # type: ignore[no-untyped-def]
    def find(text: str, rules: PrivacyRules) -> list[Finding]:
        calls.append(text)
        return privacy.findings(text, rules)

    return find


def conversation(turns: int) -> ChatBody:
    messages = [Message(role="user" if i % 2 == 0 else "assistant", content=f"Turn {i}. {TURN}") for i in range(turns)]
    return ChatBody(model="m", messages=messages)


def test_a_conversation_masks_as_without_the_memo_and_scans_each_turn_once() -> None:
    memo, calls = ScanMemo(), []
    for turns in range(1, 6):  # each request repeats the earlier turns and adds one
        plain, memoised = conversation(turns), conversation(turns)
        expected = privacy.inspect(plain, None, RULES)
        got = privacy.inspect(memoised, None, RULES, memo.finder("t1", RULES, counting(calls)))
        assert msgspec.to_builtins(got) == msgspec.to_builtins(expected)
        assert [m.content for m in memoised.messages] == [m.content for m in plain.messages]
    assert len(calls) == 5 == len(set(calls))
    assert (memo.hits, memo.misses) == (1 + 2 + 3 + 4, 5)


def test_other_tenants_and_other_rules_do_not_share_findings() -> None:
    memo, calls = ScanMemo(), []
    memo.finder("t1", RULES, counting(calls))(TURN)
    memo.finder("t2", RULES, counting(calls))(TURN)
    stricter = msgspec.structs.replace(RULES, custom=[CustomDetector(name="about", pattern="about", action="redact")])
    found = memo.finder("t1", stricter, counting(calls))(TURN)
    assert len(calls) == 3
    assert "about" in {f.detector for f in found}
    # Same rules, same tenant: a hit, found again only when the rules change back.
    memo.finder("t1", RULES, counting(calls))(TURN)
    assert len(calls) == 3


def test_short_texts_are_scanned_every_time() -> None:
    memo, calls = ScanMemo(), []
    find = memo.finder("t1", RULES, counting(calls))
    short = "mail jane@example.com"
    assert len(short) < MIN_TEXT
    find(short)
    find(short)
    assert len(calls) == 2 and len(memo) == 0


def test_the_memo_forgets_the_least_recently_used_past_its_bounds() -> None:
    memo, calls = ScanMemo(max_entries=3), []
    find = memo.finder("t1", RULES, counting(calls))
    texts = [f"{i} {TURN}" for i in range(4)]
    for text in texts[:3]:
        find(text)
    find(texts[0])  # used again: now the most recent
    find(texts[3])  # pushes out texts[1]
    assert len(memo) == 3
    find(texts[0])
    find(texts[1])
    assert calls == [*texts[:3], texts[3], texts[1]]


def test_findings_are_bounded_and_one_hostile_text_is_not_kept() -> None:
    memo, calls = ScanMemo(max_findings=100), []
    find = memo.finder("t1", RULES, counting(calls))
    dense = "a@example.com " * 30  # 30 findings: more than a quarter of the bound
    find(dense)
    find(dense)
    assert len(calls) == 2 and len(memo) == 0
    for i in range(10):  # 12 findings each (TURN holds 3 values, 4 times): the bound keeps 8
        find(f"{i} {TURN}")
    assert len(memo) == 8
