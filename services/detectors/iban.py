"""International bank account numbers: a country code, two check digits and
the account, printed whole or in groups of four, of the country's length and
passing the ISO 7064 mod-97 check."""

from __future__ import annotations

import re
import string

from services.detectors.base import Finding, has_digit, open_start

# The IBAN length of each country that issues them (the SWIFT registry).
LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])")


def mod97_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def find_ibans(text: str) -> list[Finding]:
    if not has_digit(text):
        return []
    out = []
    for m in _CANDIDATE.finditer(text):
        compact = m.group().replace(" ", "")
        if LENGTHS.get(compact[:2]) == len(compact) and mod97_ok(compact):
            out.append(Finding("iban", m.start(), m.end()))
    return out


# A country code, its check digits, and groups up to the 44 characters the
# pattern takes.
_OPEN = re.compile(r"(?<![A-Za-z0-9])[A-Z](?:[A-Z](?:\d(?:\d[ A-Z0-9]{0,41})?)?)?\Z")


def unfinished(text: str) -> int:
    """Where an IBAN still being written could start (see base.py)."""
    return open_start(text, string.ascii_uppercase + string.digits + " ", _OPEN)
