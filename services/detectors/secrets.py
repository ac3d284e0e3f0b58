"""Credentials by their published shapes: OpenAI and Anthropic API keys,
AWS access key ids, GitHub and Slack tokens, PEM private key blocks, and JWTs
(whose header must decode to JSON naming an algorithm)."""

from __future__ import annotations

import base64
import json
import re

from services.detectors.base import Finding

# Each shape with the literals one of which every match holds: a text without them is not searched.
_PATTERNS = (
    (("sk-ant-",), re.compile(r"(?<![A-Za-z0-9_-])sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,120}(?![A-Za-z0-9_-])")),
    (("sk-",), re.compile(r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}(?![A-Za-z0-9_-])")),
    (("AKIA", "ASIA", "ABIA", "ACCA"), re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])")),
    (
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])"),
    ),
    (("github_pat_",), re.compile(r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{60,255}(?![A-Za-z0-9_])")),
    (("xox",), re.compile(r"(?<![A-Za-z0-9_-])xox[abposr]-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9_-])")),
    (
        "-----BEGIN",
        re.compile(
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]{16,16384}?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
        ),
    ),
)
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?![A-Za-z0-9_-])")


def _jwt_header_ok(token: str) -> bool:
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


def find_secrets(text: str) -> list[Finding]:
    out = []
    for literals, pattern in _PATTERNS:
        if any(literal in text for literal in literals):
            out += [Finding("secret", m.start(), m.end()) for m in pattern.finditer(text)]
    if "eyJ" in text:
        out += [Finding("secret", m.start(), m.end()) for m in _JWT.finditer(text) if _jwt_header_ok(m.group())]
    return out
