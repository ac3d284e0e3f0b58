"""US social security numbers, written AAA-GG-SSSS (or with spaces), outside
the ranges never issued: area 000, 666 and 900-999, group 00, serial 0000."""

from __future__ import annotations

import re

from services.detectors.base import Finding, has_digit, open_start

_SSN = re.compile(r"(?<![A-Za-z0-9_-])(\d{3})([- ])(\d{2})\2(\d{4})(?![A-Za-z0-9_]|-\d)")


def find_ssns(text: str) -> list[Finding]:
    if not has_digit(text):
        return []
    out = []
    for m in _SSN.finditer(text):
        area, group, serial = int(m.group(1)), int(m.group(3)), int(m.group(4))
        if area in (0, 666) or area >= 900 or group == 0 or serial == 0:
            continue
        out.append(Finding("ssn", m.start(), m.end()))
    return out


# AAA-GG-SSSS and the "-5" the look-ahead reads after it.
_OPEN = re.compile(r"(?<![A-Za-z0-9_-])\d[\d -]{0,12}\Z")


def unfinished(text: str) -> int:
    """Where an SSN still being written could start (see base.py)."""
    return open_start(text, "0123456789 -", _OPEN)
