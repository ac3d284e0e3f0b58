"""One-time and session tokens: random, kept only as their digest, compared
in constant time."""

from __future__ import annotations

import hmac
import secrets

from schemas.people import token_digest

# 32 random bytes, url-safe: 43 characters.
TOKEN_BYTES = 32
# Anything longer than a token we made is not one (no digest of megabytes).
MAX_TOKEN_CHARS = 64


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def plausible(token: str) -> bool:
    """Cheap shape check before a token is looked up."""
    return 20 <= len(token) <= MAX_TOKEN_CHARS and all(c.isalnum() or c in "-_" for c in token)


def same(expected: str, given: str) -> bool:
    """Constant-time equality of two tokens (CSRF)."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def form_csrf(cookie_token: str) -> str:
    """The CSRF value of a form shown before sign-in (sign-in, invitation):
    derived from the visitor's cookie, which another site can neither read
    nor set, so a forged form cannot carry it; the page shows the derived
    value, never the cookie itself."""
    return token_digest("csrf:" + cookie_token)
