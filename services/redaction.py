"""Redaction: replace matches of a tenant's patterns in the prompt.

This first version only redacts (irreversibly, ``[REDACTED:<rule>]``); reversible
masking and output scanning come with the redaction issue.
"""

from __future__ import annotations

import functools
import re

from schemas.chat import EmbeddingsBody, Message, TextPart
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
                if isinstance(part, TextPart):
                    part.text, n = redact_text(part.text, rules)
                    total += n
    return total


def redact_embeddings_input(body: EmbeddingsBody, rules: list[RedactionRule]) -> int:
    """Redact text inputs in place (token-array inputs carry no readable text)."""
    if isinstance(body.input, str):
        body.input, n = redact_text(body.input, rules)
        return n
    total = 0
    for i, item in enumerate(body.input):
        if isinstance(item, str):
            body.input[i], n = redact_text(item, rules)  # type: ignore[call-overload]
            total += n
    return total
