"""PII and secret detectors: each finds spans of one kind in a text, and
checks what it finds (a checksum, a valid range, a parse) so a look-alike is
not taken for the real thing. ``scan`` runs the enabled ones and settles
overlaps; nothing here sees the network or a model."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from services.detectors import cards, email, iban, ip, phone, secrets, ssn
from services.detectors.base import Finding
from services.detectors.cards import find_cards
from services.detectors.email import find_emails
from services.detectors.iban import find_ibans
from services.detectors.ip import find_ipv4, find_ipv6
from services.detectors.phone import DEFAULT_REGION, find_phones
from services.detectors.secrets import find_secrets
from services.detectors.ssn import find_ssns

BUILT_IN = {
    "secret": find_secrets,
    "card": find_cards,
    "iban": find_ibans,
    "ssn": find_ssns,
    "email": find_emails,
    "ipv4": find_ipv4,
    "ipv6": find_ipv6,
    "phone": find_phones,
}
# When two findings overlap, the longer wins (an IBAN whose digits happen to
# pass Luhn is an IBAN, a key holding digits is a secret), then the earlier
# kind here.
PRIORITY = {name: i for i, name in enumerate(BUILT_IN)}

# Where each kind's value still being written could start (see base.py).
UNFINISHED: dict[str, Callable[[str], int]] = {
    "secret": secrets.unfinished,
    "card": cards.unfinished,
    "iban": iban.unfinished,
    "ssn": ssn.unfinished,
    "email": email.unfinished,
    "ipv4": ip.unfinished_ipv4,
    "ipv6": ip.unfinished_ipv6,
    "phone": phone.unfinished,
}

__all__ = ["BUILT_IN", "UNFINISHED", "Finding", "find", "fresh_start", "scan", "settle", "unfinished", "unfinished_of"]


def find(text: str, detectors: Iterable[str] | None = None, phone_region: str = DEFAULT_REGION) -> list[Finding]:
    """Findings of the named built-in detectors (all by default), overlaps
    not yet settled; national phone numbers read as ``phone_region`` writes
    them."""
    found: list[Finding] = []
    for name in detectors if detectors is not None else BUILT_IN:
        found += find_phones(text, phone_region) if name == "phone" else BUILT_IN[name](text)
    return found


def scan(text: str, detectors: Iterable[str] | None = None, phone_region: str = DEFAULT_REGION) -> list[Finding]:
    """``find``'s findings in text order, no two overlapping."""
    return settle(find(text, detectors, phone_region))


def settle(found: list[Finding]) -> list[Finding]:
    """Keep, of overlapping findings, a tenant's own rule's (not a built-in
    kind), then the longer, then the higher-priority kind."""
    ranked = sorted(
        found, key=lambda f: (f.detector in PRIORITY, -(f.end - f.start), PRIORITY.get(f.detector, -1), f.start)
    )
    # Which characters kept findings cover: checking and marking cost each
    # finding its own length, so a hostile text with 100,000 values settles
    # in linear time.
    taken = bytearray(max((f.end for f in found), default=0))
    kept: list[Finding] = []
    for f in ranked:
        if taken.find(1, f.start, f.end) == -1:
            taken[f.start : f.end] = b"\x01" * (f.end - f.start)
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def unfinished(text: str, detectors: Iterable[str] | None = None) -> int:
    """The first position of ``text`` where a value of one of the named
    kinds (all by default) could still be being written: what comes before
    it, ``find`` reads as it will whatever follows; ``len(text)`` if none."""
    return unfinished_of(UNFINISHED if detectors is None else detectors)(text)


def unfinished_of(detectors: Iterable[str]) -> Callable[[str], int]:
    """``unfinished`` for the named kinds, looked up once (it runs on every
    chunk of a stream)."""
    found = [UNFINISHED[name] for name in dict.fromkeys(detectors)]
    if len(found) == 1:
        return found[0]
    return lambda text: min((f(text) for f in found), default=len(text))


# Characters that no value holds (bar a private key block's body) and that
# no detector's look-behind refuses to start a value after; and a space that
# does not follow a digit, a capital or ")": the only values with spaces
# (phone, card, IBAN and SSN numbers) have one of those before each.
_FRESH = re.compile(r"[\s\S]*(?:[^A-Za-z0-9_.%+:@() -]|[^A-Z0-9)] )")


def fresh_start(text: str, end: int) -> int:
    """The last position, at least ``ip.LOOKS_BACK`` characters before
    ``end``, where a search of ``text`` can start and find, from ``end`` on,
    what a search of all of it finds: just after a character that no value
    spans and no look-behind minds. 0 if none: a search from the text's
    start, blind to what came before it."""
    m = _FRESH.match(text, 0, max(0, end - ip.LOOKS_BACK))
    return m.end() if m is not None else 0
