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


# -- values still being written ------------------------------------------------
#
# A streamed answer is checked as it arrives, and what is passed on cannot be
# taken back: each detector module says, in ``unfinished(text)``, the first
# position of ``text`` where its search could still end differently once more
# text follows (a value there might yet be completed, lengthened, or turn out
# not to be one). Text before that position it has settled; ``len(text)``
# when it has nothing open. Saying too early only holds a little more back;
# saying too late would pass on the start of a value.


def opening(literal: str) -> str:
    """A regular expression for any non-empty start of ``literal``: s, sk or sk- for "sk-"."""
    tail = ""
    for ch in reversed(literal[1:]):
        tail = f"(?:{re.escape(ch)}{tail})?"
    return re.escape(literal[0]) + tail


def open_start(text: str, chars: str, pattern: re.Pattern[str]) -> int:
    """Where ``pattern`` (which ends in ``\\Z``) first matches in the run of
    ``chars`` that ends ``text``, else ``len(text)``. A value still being
    written is made of its own characters up to the end, so only that run
    need be searched, and ``rstrip`` finds it at C speed."""
    m = pattern.search(text, len(text.rstrip(chars)))
    return m.start() if m is not None else len(text)
