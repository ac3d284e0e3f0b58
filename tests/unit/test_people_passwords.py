"""Passwords: argon2id, the length rules, and verification that never raises."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from schemas.errors import InvalidRequest
from services.people import passwords

# Cheap parameters: these tests are about behaviour, not cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_a_password_is_kept_as_an_argon2id_hash() -> None:
    stored = passwords.hash_password("correct horse battery", FAST)
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert passwords.verify(stored, "correct horse battery", FAST)
    assert not passwords.verify(stored, "correct horse batterY", FAST)


def test_the_default_hasher_is_argon2id() -> None:
    assert passwords.hasher().type.name == "ID"


@pytest.mark.parametrize("bad", ["", "not-a-hash", "$argon2id$v=19$m=65536,t=3,p=4$broken"])
def test_a_missing_or_broken_hash_matches_nothing(bad: str) -> None:
    assert not passwords.verify(bad, "anything at all", FAST)


def test_a_password_longer_than_the_limit_is_not_even_hashed() -> None:
    stored = passwords.hash_password("x" * passwords.MAX_LENGTH, FAST)
    assert passwords.verify(stored, "x" * passwords.MAX_LENGTH, FAST)
    assert not passwords.verify(stored, "x" * (passwords.MAX_LENGTH + 1), FAST)


def test_a_new_password_has_twelve_to_1024_characters() -> None:
    passwords.check_new("a" * 12)
    passwords.check_new("a" * 1024)
    for bad, code in (
        ("a" * 11, "password_too_short"),
        ("a" * 1025, "password_too_long"),
        (" " * 12, "password_blank"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            passwords.check_new(bad)
        assert caught.value.code == code


def test_a_hash_made_weaker_than_todays_is_to_be_replaced() -> None:
    weak = passwords.hash_password("correct horse battery", FAST)
    assert passwords.needs_rehash(weak)
    assert not passwords.needs_rehash("not a hash")


def test_the_decoy_matches_no_password() -> None:
    assert passwords.decoy_hash().startswith("$argon2id$")
    assert not passwords.verify(passwords.decoy_hash(), "")
