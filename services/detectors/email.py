"""Email addresses: a local part, @, and a domain whose last label is a
top-level domain of letters (``user@localhost`` and ``a@b.c1`` are not)."""

from __future__ import annotations

import re

from services.detectors.base import Finding

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_.%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9_-])"
)


def find_emails(text: str) -> list[Finding]:
    if "@" not in text:
        return []
    return [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text) if ".." not in m.group()]
