"""API keys: generated once, stored only as their sha256 digest."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-sluice-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain digest is enough: there is nothing
    # to brute-force that a slow KDF would protect.
    digest = _digests.get(key)
    if digest is None:
        if len(_digests) >= _DIGESTS_MAX:  # a flood of made-up keys only empties the memo
            _digests.clear()
        digest = _digests[key] = hashlib.sha256(key.encode()).hexdigest()
    return digest


# The same few keys call again and again: their digests are remembered
# (hashing is a tenth of the policy stage's time per request).
_DIGESTS_MAX = 10_000
_digests: dict[str, str] = {}


def key_from_header(value: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (or a bare key)."""
    if not value:
        return None
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return value or None
