"""Phone numbers: candidates that look like one (an international ``+``
number, or a national one with the usual separators), each checked by
libphonenumber (the ``phonenumbers`` package, which carries its own
metadata) as a valid number of its country. Dates, versions, IP addresses
and bare runs of digits (an order number) are not taken, and a national
number must be grouped as its country writes it: "2023-000123" is a
reference, though its digits would dial."""

from __future__ import annotations

import re

import phonenumbers

from services.detectors.base import Finding, has_digit

# Digits with spaces, dots, dashes or one bracketed area code between them,
# optionally led by + (or 00).
_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_+.-])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d{1,5}\)?){1,6}(?![A-Za-z0-9_]|[.-]\d)"
)
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_DIGITS = re.compile(r"\d+")
DEFAULT_REGION = "US"


def _plausible(raw: str) -> bool:
    digits = sum(ch.isdigit() for ch in raw)
    if not 7 <= digits <= 15 or _DATE.match(raw):
        return False
    if raw.startswith(("+", "00")):
        return True
    # A national number is written with separators; a bare run of digits is an id.
    return any(ch in raw for ch in " .-()") and raw.count(".") != 3


def _groups(s: str) -> list[int]:
    return [len(g) for g in _DIGITS.findall(s)]


def _balanced(raw: str, start: int) -> tuple[str, int]:
    """The candidate without a bracket it does not open or close itself."""
    if raw.endswith(")") and raw.count(")") > raw.count("("):
        raw = raw[:-1]
    if raw.startswith("(") and raw.count("(") > raw.count(")"):
        raw, start = raw[1:], start + 1
    return raw, start


def find_phones(text: str, region: str = DEFAULT_REGION) -> list[Finding]:
    if not has_digit(text):
        return []
    out = []
    for m in _CANDIDATE.finditer(text):
        raw, start = _balanced(m.group(), m.start())
        if not _plausible(raw):
            continue
        international = raw.startswith(("+", "00"))
        number = "+" + raw[2:] if raw.startswith("00") else raw
        try:
            parsed = phonenumbers.parse(number, None if international else region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(parsed):
            continue
        if not international:
            written = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
            if _groups(raw) != _groups(written):
                continue
        out.append(Finding("phone", start, start + len(raw)))
    return out
