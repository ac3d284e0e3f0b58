"""Phone numbers: candidates that look like one (an international ``+``
number, or a national one with the usual separators), each checked by
libphonenumber (the ``phonenumbers`` package, which carries its own
metadata) as a *possible* number of its country: a length its country
dials. For masking, a value shaped like a phone number is one; whether its
range is assigned yet (``+1 (243) 295-9639`` is not) changes nothing.

Dates, versions, IP addresses and bare runs of digits (an order number) are
not taken, and a national number must be grouped as one of its country's
formats writes it: "2023-000123" is a reference, though its digits would
dial."""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber

from services.detectors.base import Finding, has_digit, open_start

# Digits with spaces, dots, dashes or one bracketed area code between them,
# optionally led by + (or 00).
_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_+.-])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d{1,5}\)?){1,6}(?![A-Za-z0-9_]|[.-]\d)"
)
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_DIGITS = re.compile(r"\d+")
# A format's reference to its first group, where a national prefix rule goes.
_FIRST_GROUP = re.compile(r"\\\d")
DEFAULT_REGION = "US"
# libphonenumber checks each country's lengths; a national number also needs
# 7 digits: in the regions that dial 5 or 6, numbers that short with
# separators are room numbers, page ranges and scores as often as phones
# (tests/fixtures/pii/phone_corpus.jsonl: 6 digits would find 22 more phones
# and 6 more false positives).
_MIN_NATIONAL, _MIN_INTERNATIONAL = 7, 6
# The longest national number libphonenumber knows of, in digits.
_MAX_NSN = 17


@functools.lru_cache(maxsize=512)
def _longest_national(region: str) -> int:
    """The most digits a national number of ``region`` can be written with:
    its longest number and its national prefix (where the prefix is more
    than one fixed string, such as carrier codes, the longest of those)."""
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or not meta.general_desc.possible_length:
        return _MAX_NSN
    prefix = meta.national_prefix or ""
    parsing = meta.national_prefix_for_parsing or prefix
    return max(meta.general_desc.possible_length) + (len(prefix) if parsing == prefix else 6)


def _plausible(raw: str, region: str) -> bool:
    digits = sum(ch.isdigit() for ch in raw)
    if _DATE.match(raw):
        return False
    if raw.startswith(("+", "00")):
        return digits - (2 if raw.startswith("00") else 0) >= _MIN_INTERNATIONAL
    # A national number is written with separators; a bare run of digits is an
    # id. One longer than any the region dials (a card number) is never
    # parsed: parsing is most of this detector's time.
    return (
        _MIN_NATIONAL <= digits <= _longest_national(region)
        and any(ch in raw for ch in " .-()")
        and raw.count(".") != 3
    )


def _groups(s: str) -> tuple[int, ...]:
    return tuple(len(g) for g in _DIGITS.findall(s))


def _balanced(raw: str, start: int) -> tuple[str, int]:
    """The candidate without a bracket it does not open or close itself."""
    if raw.endswith(")") and raw.count(")") > raw.count("("):
        raw = raw[:-1]
    if raw.startswith("(") and raw.count("(") > raw.count(")"):
        raw, start = raw[1:], start + 1
    return raw, start


class _Format(NamedTuple):
    """One way the metadata writes national numbers: the digits it takes,
    the format, and the format with the national prefix rule applied."""

    pattern: re.Pattern[str]
    leading: re.Pattern[str] | None
    plain: str
    prefixed: str
    # The rule writes a national prefix ("0\\1"), and not optionally: a
    # German number is written 030 ..., so "4510-9480" is a port range there.
    needs_prefix: bool


def _with_rule(fmt: str, rule: str) -> str:
    """``fmt`` with its first group written as ``rule`` says (``0\\1``)."""
    m = _FIRST_GROUP.search(fmt)
    return fmt[: m.start()] + rule + fmt[m.end() :] if m else fmt


@functools.lru_cache(maxsize=512)
def _formats(region: str, country_code: int) -> tuple[_Format, ...]:
    """Every format the metadata knows for national numbers read in
    ``region``, and for the main country of its calling code (whose formats
    the regions sharing it use)."""
    main = phonenumbers.region_code_for_country_code(country_code)
    out = []
    for meta in filter(None, {r: PhoneMetadata.metadata_for_region(r) for r in (region, main)}.values()):
        national = [(f, False) for f in meta.number_format]
        # The international groupings, written nationally, still need the
        # country's prefix (if it has one) in front.
        international = [(f, bool(meta.national_prefix)) for f in meta.intl_number_format]
        for f, needs_prefix in national + international:
            # The broadest leading-digits pattern: the later ones narrow it to
            # assigned ranges, which a masked number need not be in.
            leading = re.compile(f.leading_digits_pattern[0]) if f.leading_digits_pattern else None
            rule = f.national_prefix_formatting_rule or ""
            prefixed = _with_rule(f.format, rule) if rule else ""
            needs_prefix |= has_digit(_FIRST_GROUP.sub("", rule)) and not f.national_prefix_optional_when_formatting
            out.append(_Format(re.compile(f.pattern), leading, f.format, prefixed, needs_prefix))
    return tuple(out)


def _national_groupings(parsed: PhoneNumber, region: str) -> set[tuple[int, ...]]:
    """How the region's formats group this number's digits: as the format
    writes it (and as its national prefix rule does), or with the prefix in
    front (``1-800-...``, ``0 6 ...``) or joined to the first group."""
    nsn = phonenumbers.national_significant_number(parsed)
    meta = PhoneMetadata.metadata_for_region(region)
    prefix = len(meta.national_prefix or "") if meta is not None else 0
    out: set[tuple[int, ...]] = set()
    for f in _formats(region, parsed.country_code):
        m = f.pattern.fullmatch(nsn)
        if m is None or (f.leading is not None and not f.leading.match(nsn)):
            continue
        groups = _groups(m.expand(f.plain))
        if not f.needs_prefix:
            out.add(groups)
        if f.prefixed:
            out.add(_groups(m.expand(f.prefixed)))
        if prefix:
            out |= {(prefix, *groups), (prefix + groups[0], *groups[1:])}
    return out


def _parsed(raw: str, region: str) -> PhoneNumber | None:
    """The number ``raw`` writes, if libphonenumber finds its length one its
    country dials (not necessarily a range it has assigned)."""
    international = raw.startswith(("+", "00"))
    number = "+" + raw[2:] if raw.startswith("00") else raw
    try:
        parsed = phonenumbers.parse(number, None if international else region)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_possible_number(parsed) else None


def find_phones(text: str, region: str = DEFAULT_REGION) -> list[Finding]:
    if not has_digit(text):
        return []
    out = []
    for m in _CANDIDATE.finditer(text):
        raw, start = _balanced(m.group(), m.start())
        if not _plausible(raw, region) or (parsed := _parsed(raw, region)) is None:
            continue
        if not raw.startswith(("+", "00")) and _groups(raw) not in _national_groupings(parsed, region):
            continue
        out.append(Finding("phone", start, start + len(raw)))
    return out


# A candidate's characters, from where one may start, up to its longest (8
# for "+(1234)", then 6 groups of 8 such as " (12345)") and the two
# characters its look-ahead reads.
_OPEN = re.compile(r"(?<![A-Za-z0-9_+.-])[+(0-9][0-9 .()+-]{0,59}\Z")


def unfinished(text: str) -> int:
    """Where a number still being written could start (see base.py)."""
    return open_start(text, "0123456789 .()+-", _OPEN)
