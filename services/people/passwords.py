"""Passwords: argon2id hashes (PHC strings), and the rules a new one meets.

Hashing is deliberately slow and memory-hard (argon2-cffi's defaults, RFC
9106's low-memory profile: 64 MiB, 3 passes): callers run it off the event
loop, and the login limiter keeps attackers from making it a CPU drain.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from schemas.errors import InvalidRequest

MIN_LENGTH = 12
# Long enough for any passphrase; short enough that hashing it costs nothing extra.
MAX_LENGTH = 1024


@cache
def hasher() -> PasswordHasher:
    return PasswordHasher()


def check_new(password: str) -> None:
    """Refuse a password too short or too long to set (400)."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"A password has at least {MIN_LENGTH} characters.", code="password_too_short")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"A password has at most {MAX_LENGTH} characters.", code="password_too_long")
    if not password.strip():
        raise InvalidRequest("A password cannot be only spaces.", code="password_blank")


def hash_password(password: str, ph: PasswordHasher | None = None) -> str:
    return (ph or hasher()).hash(password)


def verify(stored: str, password: str, ph: PasswordHasher | None = None) -> bool:
    """Whether ``password`` matches the stored hash; never raises for a bad
    or empty hash (a person with no password yet cannot sign in with one)."""
    if not stored or len(password) > MAX_LENGTH:
        return False
    try:
        return (ph or hasher()).verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str, ph: PasswordHasher | None = None) -> bool:
    """Whether a hash was made with weaker parameters than today's: it is
    replaced after the next sign-in that proves the password."""
    try:
        return (ph or hasher()).check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return False


@cache
def decoy_hash() -> str:
    """A hash nobody's password matches, verified when the e-mail address is
    unknown so that a wrong address costs the same time as a wrong password."""
    return hasher().hash("decoy: no account has this password")
