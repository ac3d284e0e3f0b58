"""Email addresses: a local part, @, and a domain whose last label is a
top-level domain of letters (``user@localhost`` and ``a@b.c1`` are not)."""

from __future__ import annotations

import re
import string

from services.detectors.base import Finding, open_start

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_.%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9_-])"
)


# The longest local part the pattern takes (1 + 62 + 1 characters).
_LOCAL_MAX = 64


def find_emails(text: str) -> list[Finding]:
    """The same matches as scanning the whole text, but each search starts
    just before the next "@" (no address starts further back than its local
    part is long), so the prose between addresses is skipped."""
    out: list[Finding] = []
    pos, at = 0, text.find("@")
    while at != -1:
        m = _EMAIL.search(text, max(pos, at - _LOCAL_MAX))
        if m is None:
            break
        if ".." not in m.group():
            out.append(Finding("email", m.start(), m.end()))
        pos = m.end()
        at = text.find("@", pos)
    return out


# A local part not yet longer than the pattern takes, and a domain that more
# letters, dots or labels could still end (``a@b.co`` may become ``a@b.com.au``).
_OPEN = re.compile(r"(?<![A-Za-z0-9_.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}(?:@[A-Za-z0-9.-]*)?\Z")


def unfinished(text: str) -> int:
    """Where an address still being written could start (see base.py)."""
    return open_start(text, string.ascii_letters + string.digits + "._%+-@", _OPEN)
