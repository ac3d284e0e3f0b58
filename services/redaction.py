"""Redaction: replace matches of a tenant's patterns in the prompt.

This first version only redacts (irreversibly, ``[REDACTED:<rule>]``); reversible
masking and output scanning come with the redaction issue.
"""

from __future__ import annotations

import functools
import re

from schemas.chat import Message
from schemas.control import RedactionRule


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def redact_text(text: str, rules: list[RedactionRule]) -> tuple[str, int]:
    count = 0
    for rule in rules:
        text, n = _compiled(rule.pattern).subn(f"[REDACTED:{rule.name}]", text)
        count += n
    return text, count


def redact_messages(messages: list[Message], rules: list[RedactionRule]) -> int:
    """Redact in place; returns how many values were replaced."""
    total = 0
    for m in messages:
        if isinstance(m.content, str):
            m.content, n = redact_text(m.content, rules)
            total += n
        elif m.content:
            for part in m.content:
                if isinstance(part.get("text"), str):
                    part["text"], n = redact_text(part["text"], rules)
                    total += n
    return total
