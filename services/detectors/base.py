"""What every detector returns.

Detectors bound their matches by ASCII letters and digits, not ``\\w``: in
Japanese or Chinese text a number sits right against the words around it
(電話番号は03-1234-5678です), and those words are ``\\w`` to Python."""

from __future__ import annotations

import re
from typing import NamedTuple


class Finding(NamedTuple):
    """A span ``text[start:end]`` that detector ``detector`` recognised."""

    detector: str
    start: int
    end: int


_DIGIT = re.compile(r"\d")


def has_digit(text: str) -> bool:
    """A cheap first look: most detectors find nothing in a text without digits."""
    return _DIGIT.search(text) is not None
