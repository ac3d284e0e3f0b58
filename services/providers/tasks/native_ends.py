"""Each line of a native batch's results as the gateway ends a request: the
answer read by the family's own chat or embeddings adapter (as a direct
call's would be) into a ``Final`` priced at the batch price, or the
upstream's error mapped by its ``map_error`` into a ``Failure``; and all of
them written as one ``NativeLineEnds`` blob, built as bytes as they come.

Whatever the upstream wrote is checked here: a line that cannot be read
fails that line alone; a custom_id seen twice keeps its first end; the
blob's size and line count are bounded (past the size, an answer is kept
as a ``Failure`` carrying its usage and cost, so it is still billed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from schemas.native_batch import NativeLineEnd
from schemas.replies import Failure, Final
from services import native_batch, tokens
from services import usage as usage_svc
from services.providers.base import ChatResult
from services.providers.call import _whole as whole_answer
from services.providers.openai.batch import LineKind
from services.providers.registry import provider
from services.providers.tasks.batch_types import LineAnswer, UnreadableLine, named_in
from services.providers.tasks.native_batch_io import MAX_LINE_BYTES, LineTooLong

log = logging.getLogger("sluice.provider.native_batch")
# The results blob the driver reads back whole: past this, answers are kept
# without their bodies (a 50,000-line batch of ~2 KB answers is ~100 MB).
MAX_ENDS_BYTES = 1024 * 1024 * 1024
# msgpack of ``NativeLineEnds``: a map of one key, "ends", then an array32
# whose count is written when the last end is in.
_HEAD = b"\x81\xa4ends\xdd"
_encode = msgspec.msgpack.Encoder().encode


async def read_into(
    ends: EndsWriter,
    lines: AsyncIterator[bytes | LineTooLong],
    read_line: Callable[[bytes], LineAnswer | None],
    kind: LineKind,
) -> None:
    """Each results line (``read_line``: the family's batch framing) ended into ``ends``."""
    dep = ends.dep
    async for line in lines:
        if isinstance(line, LineTooLong):
            named, reason = named_in(line.head), f"longer than {MAX_LINE_BYTES} bytes"
        else:
            try:
                answer = read_line(line)
            except UnreadableLine as exc:
                named, reason = exc.custom_id, exc.reason
            else:
                if answer is not None:  # else never run: the driver ends it
                    ends.add(line_end(dep, kind, answer))
                continue
        if named:
            ends.add(unreadable(dep, named, reason))
        else:  # nothing to end: the driver ends the line it stood for as not answered
            log.warning("native batch results at %s: a line naming no custom_id (%s) left out", dep.name, reason)


def line_end(dep: Deployment, kind: LineKind, answer: LineAnswer) -> NativeLineEnd:
    """How the line ``answer`` answers ended."""
    cid = answer.custom_id
    try:
        if answer.status >= 400:
            known = provider(dep.provider)
            adapter = known.embeddings if kind == "embeddings" and known.embeddings is not None else known.chat
            return NativeLineEnd(cid, failure(dep, cid, adapter.map_error(answer.status, answer.body, {})))
        if kind == "embeddings":
            return NativeLineEnd(cid, _embeddings(dep, cid, answer.body))
        return NativeLineEnd(cid, _chat(dep, cid, provider(dep.provider).chat.parse_response(answer.body)))
    except GatewayError as exc:  # the family's adapter could not read the answer
        return NativeLineEnd(cid, failure(dep, cid, UpstreamError(f"Batch line {cid!r}: {exc.message}")))


def unreadable(dep: Deployment, custom_id: str, reason: str) -> NativeLineEnd:
    error = UpstreamError(f"The upstream's results line for {custom_id!r} could not be read: {reason}.")
    return NativeLineEnd(custom_id, failure(dep, custom_id, error))


def failure(dep: Deployment, custom_id: str, error: GatewayError) -> Failure:
    ended = Failure.from_error(custom_id, error, deployment=dep.name, provider=dep.provider)
    ended.attempts = 1
    return ended


def _chat(dep: Deployment, custom_id: str, result: ChatResult) -> Final:
    final = _final(dep, custom_id, result.model, result.usage or _output_counted(result, dep.catalog_model))
    final.message, final.other_choices, final.finish_reason = result.message, result.other_choices, result.finish_reason
    return final


def _embeddings(dep: Deployment, custom_id: str, body: bytes) -> Final:
    adapter = provider(dep.provider).embeddings
    if adapter is None:
        raise UpstreamError(f"Provider {dep.provider!r} serves no embeddings.")
    result = adapter.parse_embeddings(body)
    _, source = usage_svc.tokenizer_for(dep.catalog_model)
    final = _final(dep, custom_id, result.model, result.usage or Usage(source=source))
    final.embeddings = result.vectors
    return final


def _final(dep: Deployment, custom_id: str, model: str, usage: Usage) -> Final:
    """The answer's usage at the batch price (the answer itself set by the caller)."""
    cost = native_batch.batch_cost(usage_svc.cost_of(usage, dep.catalog_model))
    return Final(
        id=custom_id,
        seq=0,
        model=model or dep.upstream_model,
        usage=usage,
        cost_pico_usd=cost.total,
        cost=cost,
        deployment=dep.name,
        provider=dep.provider,
        attempts=1,
    )


def _output_counted(result: ChatResult, catalog_model: str | None) -> Usage:
    """An answer without usage: its output counted (the prompt is not at hand)."""
    name, source = usage_svc.tokenizer_for(catalog_model)
    text = whole_answer(result).output_text
    return Usage(completion_tokens=tokens.count_text(text, tokens.encoding(name)) if text else 0, source=source)


class EndsWriter:
    """``NativeLineEnds`` as msgpack, an end at a time."""

    def __init__(self, dep: Deployment, max_lines: int, max_bytes: int = MAX_ENDS_BYTES) -> None:
        self.dep = dep
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.count = 0
        self._seen: set[str] = set()
        self._data = bytearray(_HEAD + bytes(4))

    def add(self, end: NativeLineEnd) -> None:
        if end.custom_id in self._seen:
            log.warning("native batch results: %r answered twice; the first answer kept", end.custom_id[:80])
            return
        if self.count >= self.max_lines:
            log.warning("native batch results: more lines than the batch had; %r left out", end.custom_id[:80])
            return
        encoded = _encode(end)
        if len(self._data) + len(encoded) > self.max_bytes and isinstance(end.reply, Final):
            encoded = _encode(self._unkept(end.reply))
        self._seen.add(end.custom_id)
        self._data += encoded
        self.count += 1

    def data(self) -> bytearray:
        """The blob (its count written): the writer's own buffer, not a copy."""
        self._data[len(_HEAD) : len(_HEAD) + 4] = self.count.to_bytes(4, "big")
        return self._data

    def _unkept(self, final: Final) -> NativeLineEnd:
        error = UpstreamError(
            "The batch's answers are too large to keep; this line's answer was dropped (it is billed).",
            code="batch_results_too_large",
        )
        ended = failure(self.dep, final.id, error)
        ended.usage, ended.cost = final.usage, final.cost
        return NativeLineEnd(final.id, ended)
