"""Tenants' own patterns run on RE2: a pattern that would make Python's
``re`` backtrack for ever finishes, spans are character offsets on any
text, and what RE2 cannot run is refused where rules are defined (the
config file here; the admin API in tests/e2e/test_tenant_patterns.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import InvalidRequest
from services import config
from services.detectors.custom import check_pattern, find_pattern


@pytest.mark.parametrize(
    "pattern", [r"E-\d{5}", r"(?i)project\s+[a-z]+", r"(?P<id>[A-Z]{3})-\d+", r"\bticket\b", "", r"[^\x00-\x7f]+"]
)
def test_patterns_re2_runs_are_accepted(pattern: str) -> None:
    check_pattern("mine", pattern)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(\w+) \1", r"\\1"),  # a backreference
        (r"(?P<w>\w+) (?P=w)", "(?P"),
        (r"(?<=id:)\d+", "(?<="),  # lookbehind
        (r"\d+(?= EUR)", "(?="),  # lookahead
        (r"(?>a+)b", "(?>"),  # atomic group
        (r"a++", "++"),
        (r"(unclosed", "missing )"),
    ],
)
def test_what_re2_cannot_run_is_refused_naming_the_detector_and_why(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_pattern("employee", pattern)
    err = refused.value
    assert err.status == 400 and err.code == "invalid_pattern"
    assert "'employee'" in err.message and reason in err.message and "RE2" in err.message


@pytest.mark.timeout(30)  # Python's re would take longer than the universe has
@pytest.mark.parametrize("tail", ["b", ""])
def test_a_pattern_that_backtracks_for_ever_in_re_finishes(tail: str) -> None:
    text = "a" * 100_000 + tail
    found = find_pattern(text, "runaway", r"(a+)+$")
    assert [(f.start, f.end) for f in found] == ([] if tail else [(0, 100_000)])


def test_spans_are_character_offsets_in_any_script() -> None:
    # 2-, 3- and 4-byte characters before each value: byte offsets would land past them.
    text = "Grüße aus 東京 😀 E-12345, Ærø: E-67890 «E-00001»"
    found = find_pattern(text, "employee", r"E-\d{5}")
    assert [text[f.start : f.end] for f in found] == ["E-12345", "E-67890", "E-00001"]
    found = find_pattern(text, "place", "東京|Ærø")
    assert [text[f.start : f.end] for f in found] == ["東京", "Ærø"]


def test_a_stored_pattern_re2_refuses_fails_the_request_rather_than_pass_it_unscanned() -> None:
    with pytest.raises(InvalidRequest, match="invalid escape sequence"):
        find_pattern("aa", "legacy", r"(a)\1")


def load(tmp_path: Path, tenant: str) -> config.ControlRecords:
    path = tmp_path / "c.toml"
    path.write_text(f'[[tenants]]\nid = "t"\n{tenant}\n')
    return config.control_records(config.load(path))


@pytest.mark.parametrize(
    ("tenant", "name"),
    [
        ('redaction_rules = [{ name = "twice", pattern = "(\\\\w+) \\\\1" }]', "twice"),  # the first form of rules
        ('privacy = { custom = [{ name = "after_id", pattern = "(?<=id:)\\\\d+" }] }', "after_id"),
    ],
)
def test_the_config_file_refuses_a_pattern_re2_cannot_run(tmp_path: Path, tenant: str, name: str) -> None:
    with pytest.raises(config.ConfigError, match=rf"tenant 't': (privacy: )?custom detector '{name}': pattern .* RE2"):
        load(tmp_path, tenant)


def test_the_config_file_takes_patterns_re2_runs(tmp_path: Path) -> None:
    records = load(tmp_path, 'redaction_rules = [{ name = "employee", pattern = "E-\\\\d{5}" }]')
    assert records.tenants["t"].redaction_rules[0].pattern == r"E-\d{5}"
