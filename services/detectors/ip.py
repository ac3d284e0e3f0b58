"""IP addresses, v4 and v6, checked by the standard library's parser. A
version or section number is not an address: four numbers after a ``v``,
after a word such as "version", "section" or "chapter", or followed by a
fifth are left alone."""

from __future__ import annotations

import ipaddress
import re
import string

from services.detectors.base import Finding, has_digit, open_start

_V4 = re.compile(r"(?<![A-Za-z0-9_.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?!\.?\d|[A-Za-z0-9_])")
_NUMBERING = re.compile(
    r"(?:\bv|\b(?:version|versión|ver\.?|release|build|section|chapter|kapitel|abschnitt|step|rule|§)\s*)$",
    re.IGNORECASE,
)
_V6 = re.compile(r"(?<![A-Za-z0-9_:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9_]+)?(?![A-Za-z0-9_:])")


def find_ipv4(text: str) -> list[Finding]:
    if not has_digit(text):
        return []
    out = []
    for m in _V4.finditer(text):
        if any(int(g) > 255 or (len(g) > 1 and g[0] == "0") for g in m.groups()):
            continue
        if _NUMBERING.search(text[max(0, m.start() - 12) : m.start()]):
            continue
        out.append(Finding("ipv4", m.start(), m.end()))
    return out


def find_ipv6(text: str) -> list[Finding]:
    if ":" not in text:
        return []
    out = []
    for m in _V6.finditer(text):
        raw = m.group()
        # Clock times and ratios (12:30:45) parse as nothing; an address has hex
        # groups beyond them or a "::" that stands for zeros.
        if "::" not in raw and raw.count(":") < 7:
            continue
        if raw.strip(":") == "" or not any(ch.isalnum() for ch in raw):
            continue
        try:
            ipaddress.IPv6Address(raw.split("%")[0])
        except ValueError:
            continue
        out.append(Finding("ipv6", m.start(), m.end()))
    return out


# Four numbers and the ".5" the look-ahead reads after them; for v6, up to
# eight groups and a zone (``%eth0``) that runs until a character not in one.
_OPEN_V4 = re.compile(r"(?<![A-Za-z0-9_.])\d[\d.]{0,16}\Z")
_OPEN_V6 = re.compile(r"(?<![A-Za-z0-9_:])(?:[0-9A-Fa-f]{0,4}:){0,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9_]*)?\Z")
# A v4 address is not one after "version " and the like: an address found
# this far after where a scan starts is judged as in the whole text.
LOOKS_BACK = 16


def unfinished_ipv4(text: str) -> int:
    """Where a v4 address still being written could start (see base.py)."""
    return open_start(text, "0123456789.", _OPEN_V4)


def unfinished_ipv6(text: str) -> int:
    """Where a v6 address still being written could start (see base.py)."""
    return open_start(text, string.ascii_letters + string.digits + "_:%", _OPEN_V6)
