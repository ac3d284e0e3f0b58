"""Payment card numbers: 13 to 19 digits, alone or in groups split by
spaces or dashes, that pass the Luhn check and start like a card network's
numbers (a 16-digit order number that fails either is not a card)."""

from __future__ import annotations

import re

from services.detectors.base import Finding, has_digit, open_start

_CANDIDATE = re.compile(r"(?<![A-Za-z0-9_.-])\d(?:[ -]?\d){12,18}(?![A-Za-z0-9_]|[.-]\d)")
# Issuer prefixes (IIN ranges) of the networks cards come from, by length.
_NETWORKS = (
    (re.compile(r"4"), (13, 16, 19)),  # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), (16,)),  # Mastercard
    (re.compile(r"3[47]"), (15,)),  # American Express
    (re.compile(r"6(?:011|5|4[4-9])"), (16, 19)),  # Discover
    (re.compile(r"35(?:2[89]|[3-8]\d)"), (16, 19)),  # JCB
    (re.compile(r"3(?:0[0-5]|[68])"), (14, 16, 19)),  # Diners Club
    (re.compile(r"62"), (16, 17, 18, 19)),  # UnionPay
    (re.compile(r"(?:5[06-9]|6)"), (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issued(digits: str) -> bool:
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _NETWORKS)


def find_cards(text: str) -> list[Finding]:
    if not has_digit(text):
        return []
    out = []
    for m in _CANDIDATE.finditer(text):
        raw = m.group()
        # Groups are split one way or not at all: "4111 1111-1111 1111" is not how a card is written.
        if " " in raw and "-" in raw:
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if len(set(digits)) > 1 and _issued(digits) and luhn_ok(digits):
            out.append(Finding("card", m.start(), m.end()))
    return out


# Up to 19 digits in groups, and a dot or dash the look-ahead reads (a
# number followed by ".5" is not a card).
_OPEN = re.compile(r"(?<![A-Za-z0-9_.-])\d(?:[ -]?\d){0,18}[ .-]?\Z")


def unfinished(text: str) -> int:
    """Where a card number still being written could start (see base.py)."""
    return open_start(text, "0123456789 .-", _OPEN)
