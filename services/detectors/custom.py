"""A tenant's own detectors: regular expressions, and exact keyword lists
(matched whole-word and case-insensitively, e.g. project code names).

A tenant's pattern runs on RE2 (``google-re2``), not Python's ``re``: RE2
takes time linear in the text whatever the pattern, where ``re`` backtracks,
and one pattern like ``(a+)+$`` would hold the redaction stage, for every
tenant, for as long as a 100 KB prompt takes to fail it (for ever, in
practice). What RE2 cannot run (backreferences, lookarounds, atomic groups)
is refused where rules are defined, by ``check_pattern``. Its match
positions on a ``str`` are character offsets, as ``re``'s are; but its
``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII, where ``re``'s take any
script's digits and letters."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from schemas.errors import InvalidRequest
from services.detectors.base import Finding

if TYPE_CHECKING:  # RE2 is loaded by the first pattern checked or run: most processes never see one
    import re2
_WHY = (
    "tenant patterns run on RE2, in time linear in the text: no backreferences, lookarounds, "
    "atomic groups or possessive quantifiers (syntax: https://github.com/google/re2/wiki/Syntax)"
)


@functools.cache
def _options() -> re2.Options:
    import re2

    options = re2.Options()
    # A refused pattern is answered to whoever defined it; RE2 need not also
    # log it to stderr.
    options.log_errors = False
    return options


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re2._Regexp:
    import re2

    return re2.compile(pattern, options=_options())


@functools.lru_cache(maxsize=512)
def _keywords(words: tuple[str, ...]) -> re.Pattern[str]:
    # Escaped literals in one alternation: no pattern of the tenant's, and
    # nothing ``re`` can backtrack on at length.
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True) if w)
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])", re.IGNORECASE)


def check_pattern(name: str, pattern: str) -> None:
    """Raise InvalidRequest (``invalid_pattern``), naming detector ``name``
    and why, unless ``pattern`` compiles on RE2."""
    import re2

    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidRequest(
            f"custom detector {name!r}: pattern {pattern!r} is refused ({reason}); {_WHY}", code="invalid_pattern"
        ) from None


def find_pattern(text: str, name: str, pattern: str) -> list[Finding]:
    """The non-empty matches of ``pattern``. A pattern stored before RE2 ran
    them, that RE2 refuses, fails the request (InvalidRequest): nothing is
    sent unscanned."""
    check_pattern(name, pattern)
    return [Finding(name, m.start(), m.end()) for m in _compiled(pattern).finditer(text) if m.end() > m.start()]


def find_keywords(text: str, name: str, words: tuple[str, ...]) -> list[Finding]:
    if not any(words):
        return []
    return [Finding(name, m.start(), m.end()) for m in _keywords(words).finditer(text)]
