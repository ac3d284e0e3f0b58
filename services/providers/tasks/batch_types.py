"""What the families' batch adapters (``services.providers.<family>.batch``)
read from an upstream's batch API, in one shape for the steps
(``services.providers.tasks.native_batch``): the batch's state, and each
results line's own answer, still in the family's format (its chat or
embeddings adapter reads it, as it reads a direct call's answer)."""

from __future__ import annotations

import re

import msgspec

# Where a results line names itself, when the line as a whole cannot be read
# (cut short, too long): OpenAI and Anthropic write ``custom_id`` near its start.
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"((?:[^"\\]|\\.){1,512})"')
_NAMED_WITHIN = 4096


class BatchState(msgspec.Struct, frozen=True):
    """An upstream batch, as a poll reads it."""

    id: str
    # The upstream's own word, lowercased (Azure writes "Validating").
    status: str
    ended: bool
    # Lines answered and failed so far, as the upstream counts them.
    completed: int = 0
    failed: int = 0
    # Why the upstream failed the whole batch, if it did.
    error: str = ""
    # OpenAI and Azure: the files of the answered and the failed lines.
    output_file_id: str = ""
    error_file_id: str = ""
    # OpenAI and Azure: the endpoint its lines went to ("/v1/embeddings", "/chat/completions", ...).
    endpoint: str = ""
    # OpenAI and Azure: the Sluice batch it runs (its ``metadata``), "" when none.
    sluice_batch_id: str = ""


class LineAnswer(msgspec.Struct, frozen=True):
    """One results line: the upstream's answer to it (``status`` < 400: an
    answer for the family's chat or embeddings adapter; else an error body
    for its ``map_error``)."""

    custom_id: str
    status: int
    body: bytes


class UnreadableLine(Exception):
    """A results line that cannot be read; ``custom_id`` when it still names itself."""

    def __init__(self, reason: str, custom_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.custom_id = custom_id


def named_in(line: bytes) -> str:
    """The custom_id a line that does not parse still shows near its start, or ""."""
    match = _CUSTOM_ID.search(line, 0, _NAMED_WITHIN)
    if match is None:
        return ""
    try:
        value = msgspec.json.decode(b'"' + match.group(1) + b'"')
    except msgspec.DecodeError:
        return ""
    return value if isinstance(value, str) else ""
