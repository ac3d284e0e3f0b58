"""The PII and secret detectors: each on its own rules, then all of them on
the labelled corpus (tests/fixtures/pii/corpus.jsonl), with precision and
recall per detector. The report is written to test-artifacts/."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detectors import BUILT_IN, PRIORITY, Finding, scan, settle
from services.detectors.cards import find_cards, luhn_ok
from services.detectors.custom import find_keywords, find_pattern
from services.detectors.email import _EMAIL, find_emails
from services.detectors.iban import find_ibans, mod97_ok
from services.detectors.ip import find_ipv4, find_ipv6
from services.detectors.phone import find_phones
from services.detectors.secrets import find_secrets
from services.detectors.ssn import find_ssns

CORPUS = Path(__file__).parents[1] / "fixtures" / "pii" / "corpus.jsonl"
REPORT = Path(__file__).parents[2] / "test-artifacts" / "pii_detectors.txt"
MIN_PRECISION, MIN_RECALL = 0.98, 0.95


def spans(text: str, found: list[Finding]) -> list[str]:
    return [text[f.start : f.end] for f in found]


def test_luhn_and_card_networks() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert spans("pay 4111-1111-1111-1111 now", find_cards("pay 4111-1111-1111-1111 now")) == ["4111-1111-1111-1111"]
    assert find_cards("order 4111111111111112") == []  # fails Luhn
    assert find_cards("shipment 9111111111111119") == []  # passes Luhn, but no network starts with 9
    assert find_cards("0000 0000 0000 0000") == []
    assert find_cards("4111 1111-1111 1111") == []  # groups split two ways


def test_iban_length_and_mod97() -> None:
    assert mod97_ok("GB82WEST12345698765432") and not mod97_ok("GB83WEST12345698765432")
    text = "to GB82 WEST 1234 5698 7654 32 today"
    assert spans(text, find_ibans(text)) == ["GB82 WEST 1234 5698 7654 32"]
    assert find_ibans("DE89370400440532013") == []  # a German IBAN is 22 characters


def test_ssn_never_issued_ranges_are_not_numbers() -> None:
    assert spans("ssn 078-05-1120", find_ssns("ssn 078-05-1120")) == ["078-05-1120"]
    for bad in ("000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000", "123-45 6789"):
        assert find_ssns(f"ssn {bad}") == [], bad


def test_ip_addresses_but_not_versions_times_or_macs() -> None:
    assert spans("host 10.0.0.1:80", find_ipv4("host 10.0.0.1:80")) == ["10.0.0.1"]
    for text in ("version 1.2.3.4", "v1.2.3.4", "1.2.3.4.5", "256.1.1.1", "section 1.2.3.4"):
        assert find_ipv4(text) == [], text
    assert spans("[2001:db8::1]:443", find_ipv6("[2001:db8::1]:443")) == ["2001:db8::1"]
    for text in ("at 12:30:45", "MAC 00:1A:2B:3C:4D:5E", "bad 2001:db8:::1"):
        assert find_ipv6(text) == [], text


def test_phone_numbers_international_and_as_their_country_writes_them() -> None:
    text = "call +44 20 7946 0958 or (212) 736-5000"
    assert spans(text, find_phones(text)) == ["+44 20 7946 0958", "(212) 736-5000"]
    assert find_phones("reference 2023-000123") == []  # the digits dial, the grouping is not a phone's
    assert find_phones("order 2127365000") == []  # a bare run of digits is an id
    assert find_phones("released 2024-01-15") == []
    assert spans("番号は+81 3-1234-5678です", find_phones("番号は+81 3-1234-5678です")) == ["+81 3-1234-5678"]


def test_secrets_by_their_shapes() -> None:
    key = "sk-proj-" + "a1B2" * 12
    text = f"OPENAI_API_KEY={key}\nAKIAIOSFODNN7EXAMPLE"
    assert spans(text, find_secrets(text)) == [key, "AKIAIOSFODNN7EXAMPLE"]
    assert find_secrets("the task-force-alpha-bravo-charlie") == []
    assert find_secrets("eyJub3Rqc29u.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIz") == []  # header is not JSON


def test_emails_need_a_real_domain() -> None:
    assert spans("to <jane@example.co.uk>", find_emails("to <jane@example.co.uk>")) == ["jane@example.co.uk"]
    assert find_emails("user@localhost and x@y..com") == []


def test_custom_patterns_and_keywords() -> None:
    text = "Project BLUEBIRD (not bluebird2) for E-12345"
    assert spans(text, find_keywords(text, "codename", ("bluebird",))) == ["BLUEBIRD"]
    assert spans(text, find_pattern(text, "employee", r"E-\d{5}")) == ["E-12345"]
    assert find_keywords(text, "codename", ("",)) == []


def test_overlaps_keep_the_tenants_own_rule_then_the_longer_finding() -> None:
    found = [Finding("card", 5, 20), Finding("iban", 0, 27), Finding("codename", 0, 4)]
    assert settle(found) == [Finding("codename", 0, 4), Finding("card", 5, 20)]
    assert settle([Finding("card", 5, 20), Finding("iban", 0, 27)]) == [Finding("iban", 0, 27)]


_findings = st.lists(
    st.builds(
        lambda kind, start, length: Finding(kind, start, start + length),
        st.sampled_from(["card", "iban", "phone", "codename"]),
        st.integers(0, 60),
        st.integers(1, 20),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(_findings)
def test_settling_keeps_what_checking_every_pair_would(found: list[Finding]) -> None:
    # The plain quadratic rule: in rank order, keep what overlaps nothing kept.
    ranked = sorted(
        found, key=lambda f: (f.detector in PRIORITY, -(f.end - f.start), PRIORITY.get(f.detector, -1), f.start)
    )
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    assert settle(found) == sorted(kept, key=lambda f: f.start)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "b.c", "1", "@", "mail.io", "..", "-", "_", "+", " ", "\n", "x" * 40]), max_size=40
    ).map("".join)
)
def test_emails_found_from_each_at_sign_are_those_of_the_whole_scan(text: str) -> None:
    whole = [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text) if ".." not in m.group()]
    assert find_emails(text) == whole


def test_the_corpus_has_positives_and_near_misses_for_every_detector() -> None:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    assert len(rows) >= 300
    positives = Counter(d for r in rows for d, _ in r["expect"])
    assert set(positives) == set(BUILT_IN) and min(positives.values()) >= 9
    assert sum(not r["expect"] for r in rows) >= 100  # near-misses and plain prose


def test_precision_and_recall_per_detector_on_the_corpus() -> None:
    tp, fp, fn = Counter(), Counter(), Counter()
    misses: list[str] = []
    for line in CORPUS.read_text().splitlines():
        row = json.loads(line)
        text = row["text"]
        expected = {(d, v) for d, v in row["expect"]}
        found = {(f.detector, text[f.start : f.end]) for f in scan(text)}
        for d, _ in found & expected:
            tp[d] += 1
        for d, v in found - expected:
            fp[d] += 1
            misses.append(f"false positive {d} {v!r} in {text!r}")
        for d, v in expected - found:
            fn[d] += 1
            misses.append(f"missed {d} {v!r} in {text!r}")
    lines, failing = [f"{'detector':<8} {'tp':>4} {'fp':>4} {'fn':>4} precision recall"], []
    for d in BUILT_IN:
        precision = tp[d] / (tp[d] + fp[d]) if tp[d] + fp[d] else 1.0
        recall = tp[d] / (tp[d] + fn[d]) if tp[d] + fn[d] else 1.0
        lines.append(f"{d:<8} {tp[d]:>4} {fp[d]:>4} {fn[d]:>4} {precision:>9.3f} {recall:>6.3f}")
        if precision < MIN_PRECISION or recall < MIN_RECALL:
            failing.append(d)
    report = "\n".join([*lines, "", *misses])
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(report + "\n")
    assert not failing, report


@pytest.mark.parametrize("detector", sorted(BUILT_IN))
def test_each_detector_finds_nothing_in_plain_prose(detector: str) -> None:
    prose = "Summarise the attached report in three sentences, in English, by Friday 14:30."
    assert scan(prose, [detector]) == []
