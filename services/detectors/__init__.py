"""PII and secret detectors: each finds spans of one kind in a text, and
checks what it finds (a checksum, a valid range, a parse) so a look-alike is
not taken for the real thing. ``scan`` runs the enabled ones and settles
overlaps; nothing here sees the network or a model."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

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

__all__ = ["BUILT_IN", "Finding", "scan"]


def scan(text: str, detectors: Iterable[str] | None = None, phone_region: str = DEFAULT_REGION) -> list[Finding]:
    """Findings of the named built-in detectors (all by default), in text
    order, no two overlapping; national phone numbers read as
    ``phone_region`` writes them."""
    found: list[Finding] = []
    for name in detectors if detectors is not None else BUILT_IN:
        found += find_phones(text, phone_region) if name == "phone" else BUILT_IN[name](text)
    return settle(found)


def settle(found: list[Finding]) -> list[Finding]:
    """Keep, of overlapping findings, a tenant's own rule's (not a built-in
    kind), then the longer, then the higher-priority kind."""
    ranked = sorted(
        found, key=lambda f: (f.detector in PRIORITY, -(f.end - f.start), PRIORITY.get(f.detector, -1), f.start)
    )
    # Kept findings never overlap, so sorted by start their ends are sorted
    # too: a new one need only be checked against its two neighbours.
    kept: list[Finding] = []
    starts: list[int] = []
    for f in ranked:
        i = bisect_right(starts, f.start)
        if (i and kept[i - 1].end > f.start) or (i < len(kept) and kept[i].start < f.end):
            continue
        kept.insert(i, f)
        starts.insert(i, f.start)
    return kept
