"""Prompt-injection heuristics: each rule spots one known move (telling the
model to ignore its instructions, to reveal its system prompt, role-play
that lifts its rules, invisible or direction-changing Unicode, instructions
hidden in base64) and weighs it; a text's score combines the rules that
matched, so two weak signals together count more than one.

These are heuristics: they catch the common phrasings cheaply and are meant
to be combined with a tenant's threshold, not to be a classifier.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import NamedTuple

_NEAR = r"[^.!?\n]{0,60}?"


class Rule(NamedTuple):
    name: str
    weight: float
    matches: Callable[[str], bool]
    # Cheap first look, on the folded text (see ``fold``): the rule can
    # match only if, for each group, one of its words is there.
    needs: tuple[tuple[str, ...], ...] = ()


def fold(text: str) -> str:
    """``text`` such that a case-insensitive match of an ASCII word in it
    is a plain substring here. re's IGNORECASE also takes \u017f (long s)
    for s, \u212a (Kelvin) for k, and \u0130 and \u0131 (dotted and dotless
    I) for i; casefold maps the first two, and \u0130 to i plus a combining dot."""
    return text.casefold().replace("\u0131", "i").replace("\u0307", "")


def _may_match(rule: Rule, folded: str) -> bool:
    return all(any(word in folded for word in group) for group in rule.needs)


def _pattern(regex: str) -> Callable[[str], bool]:
    compiled = re.compile(regex, re.IGNORECASE)
    return lambda text: compiled.search(text) is not None


# Zero-width characters, bidirectional overrides and isolates, tag characters.
_HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_ORDERS = re.compile(
    r"\b(ignore|disregard|forget|override|bypass|reveal|system prompt|instructions|jailbreak|no restrictions)\b",
    re.IGNORECASE,
)


_DAN = re.compile(r"\bDAN\b")
_ROLES = _pattern(
    r"\b(do anything now|developer mode|jailbreak(ed)?|evil (ai|assistant|mode)|unfiltered (ai|mode)|god mode)\b"
)


def _hidden_instructions(text: str) -> bool:
    for m in _BASE64.finditer(text):
        blob = m.group()
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable() and _ORDERS.search(decoded):
            return True
    return False


RULES = (
    Rule(
        "ignore_instructions",
        0.9,
        _pattern(
            rf"\b(ignore|disregard|forget|override|bypass)\b{_NEAR}\b(previous|prior|above|earlier|all|your|system)\b"
            rf"{_NEAR}\b(instructions?|rules|prompts?|directions|guidelines|context)\b"
        ),
        (("ignore", "disregard", "forget", "override", "bypass"),),
    ),
    Rule(
        "reveal_system_prompt",
        0.8,
        _pattern(
            rf"\b(reveal|show|print|repeat|output|display|tell me|leak|dump)\b{_NEAR}"
            r"\b(system prompt|system message|initial (instructions|prompt)|hidden (instructions|prompt)|"
            r"(your|the) (instructions|rules|prompt)( above)?)\b"
        ),
        (
            ("reveal", "show", "print", "repeat", "output", "display", "tell me", "leak", "dump"),
            ("prompt", "system message", "instructions", "rules"),
        ),
    ),
    Rule(
        "role_play_jailbreak",
        0.7,
        # "DAN" in capitals only: Dan is a name.
        lambda text: _DAN.search(text) is not None or _ROLES(text),
        (("dan", "do anything now", "developer mode", "jailbreak", "evil", "unfiltered", "god mode"),),
    ),
    Rule(
        "lift_restrictions",
        0.6,
        _pattern(
            rf"\b(pretend|act as|you are now|from now on|roleplay as|imagine you are)\b{_NEAR}"
            r"\b(no|without|free (of|from)|not bound by|ignores?)\b[^.!?\n]{0,30}?"
            r"\b(restrictions|filters?|rules|guidelines|limits|policies|ethics|censorship)\b"
        ),
        (
            ("pretend", "act as", "you are now", "from now on", "roleplay as", "imagine you are"),
            ("restrictions", "filter", "rules", "guidelines", "limits", "policies", "ethics", "censorship"),
        ),
    ),
    Rule("hidden_unicode", 0.6, lambda text: _HIDDEN.search(text) is not None),
    Rule("base64_instructions", 0.8, _hidden_instructions),
)


class Verdict(NamedTuple):
    score: float
    matched: list[str]


def score(text: str) -> Verdict:
    """1 - the product of (1 - weight) over the rules that match: 0 when
    none does, never above 1."""
    folded = fold(text)
    matched = [r for r in RULES if _may_match(r, folded) and r.matches(text)]
    left = 1.0
    for r in matched:
        left *= 1.0 - r.weight
    return Verdict(round(1.0 - left, 4), [r.name for r in matched])
