"""A tenant's own detectors: regular expressions, and exact keyword lists
(matched whole-word and case-insensitively, e.g. project code names)."""

from __future__ import annotations

import functools
import re

from services.detectors.base import Finding


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@functools.lru_cache(maxsize=512)
def _keywords(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True) if w)
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])", re.IGNORECASE)


def find_pattern(text: str, name: str, pattern: str) -> list[Finding]:
    return [Finding(name, m.start(), m.end()) for m in _compiled(pattern).finditer(text) if m.end() > m.start()]


def find_keywords(text: str, name: str, words: tuple[str, ...]) -> list[Finding]:
    if not any(words):
        return []
    return [Finding(name, m.start(), m.end()) for m in _keywords(words).finditer(text)]
