"""Credentials by their published shapes: OpenAI and Anthropic API keys,
AWS access key ids, GitHub and Slack tokens, PEM private key blocks, and JWTs
(whose header must decode to JSON naming an algorithm)."""

from __future__ import annotations

import base64
import json
import re
import string

from services.detectors.base import Finding, open_start, opening

# A private key block: its BEGIN line, a body of at most _PEM_BODY_MAX characters, its END line.
_KEY_KIND = "(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
_PEM_HEAD = "-----BEGIN " + _KEY_KIND
_PEM_BODY_MAX = 16384
_PEM = re.compile(_PEM_HEAD + rf"[\s\S]{{16,{_PEM_BODY_MAX}}}?-----END " + _KEY_KIND)

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
    ("-----BEGIN", _PEM),
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


# -- values still being written (see base.py) ----------------------------------

# Any start of a token shape, up to the longest the shape's pattern takes
# (sk-: 3 + "svcacct-" + 200; AKIA...: 20; ghp_: 4 + 255; github_pat_: 11 +
# 255; xoxb-: 5 + 250), each after what its pattern's look-behind allows. A
# JWT has no cap: its segments run until a character that cannot be in one.
_SEGMENT = "[A-Za-z0-9_-]*"
_OPEN_TOKEN = re.compile(
    "(?:"
    + "|".join(
        (
            rf"(?<![A-Za-z0-9_-])(?:{opening('sk-')}|sk-[A-Za-z0-9_-]{{0,208}})",
            r"(?<![A-Z0-9])(?:A[KSBC]?|AKI|ASI|ABI|ACC|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{0,16})",
            rf"(?<![A-Za-z0-9_])(?:gh?|gh[pousr]_?|gh[pousr]_[A-Za-z0-9]{{0,255}}|{opening('github_pat_')}"
            r"|github_pat_[A-Za-z0-9_]{0,255})",
            r"(?<![A-Za-z0-9_-])(?:x|xox?|xox[abposr]-?|xox[abposr]-[A-Za-z0-9-]{0,250})",
            rf"(?<![A-Za-z0-9_-])(?:ey?|eyJ{_SEGMENT}(?:\.(?:ey?|eyJ{_SEGMENT}(?:\.{_SEGMENT})?)?)?)",
        )
    )
    + r")\Z"
)
_TOKEN_CHARS = string.ascii_letters + string.digits + "_.-"
# A private key block's first line, begun at the end of the text.
_OPEN_HEAD = re.compile(rf"(?:{opening('-----BEGIN ')}|-----BEGIN [A-Z ]{{0,30}}-{{0,5}})\Z")
_HEAD_MAX = len("-----BEGIN ENCRYPTED PRIVATE KEY BLOCK-----")
# How far a block's search reads from its BEGIN before it gives up.
_PEM_REACH = 2 * _HEAD_MAX + _PEM_BODY_MAX
_HEAD = re.compile(_PEM_HEAD)


def _open_block(text: str) -> int:
    """The first private key block begun and not yet ended, within the
    detector's size cap (past it, the block can no longer match: released)."""
    at = text.find("-----BEGIN", max(0, len(text) - _PEM_REACH))
    while at != -1:
        block = _PEM.match(text, at)
        if block is None and _HEAD.match(text, at):
            return at
        at = text.find("-----BEGIN", block.end() if block is not None else at + 1)
    tail = max(0, len(text) - _HEAD_MAX)
    head = _OPEN_HEAD.search(text, tail) if "-" in text[tail:] else None
    return head.start() if head is not None else len(text)


def unfinished(text: str) -> int:
    """Where a key, a token or a private key block still being written could start."""
    return min(open_start(text, _TOKEN_CHARS, _OPEN_TOKEN), _open_block(text))
