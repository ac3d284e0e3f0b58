"""The upstream calls of a native batch's steps, and the bytes they move:
JSON answers read whole (bounded), results files read a JSONL line at a
time as they stream in, request bodies sent from one buffer in slices.

Every upstream error status is the family's ``map_error``'s; a body larger
than its bound is the upstream's error, not memory the process gives it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from services.providers.call import CallProgress
from services.providers.http import Body, Upstream, UpstreamResponse

# The largest JSON answer read (a batch object, a page of 100 of them).
MAX_JSON_BYTES = 16 * 1024 * 1024
# The largest results line read: a chat answer is far smaller; an embeddings
# line of many inputs can reach tens of MB.
MAX_LINE_BYTES = 64 * 1024 * 1024
# Of a line too long to read, what is kept to find its custom_id in.
KEPT_OF_LONG_LINE = 4096
# A body sent from a buffer goes in slices this large.
SLICE_BYTES = 256 * 1024

MapError = Callable[[int, bytes, Mapping[str, str]], GatewayError]


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A results line longer than ``MAX_LINE_BYTES``: only its start is kept."""

    head: bytes


class BatchHttp:
    """One step's calls to one deployment: ``first_byte_ns`` is when the
    first answer began (the attempt's timing)."""

    def __init__(self, client: Upstream, dep: Deployment, map_error: MapError, progress: CallProgress) -> None:
        self.client = client
        self.dep = dep
        self.map_error = map_error
        self.progress = progress
        self.first_byte_ns = 0
        # The status of the last POST's answer (0: none came).
        self.last_status = 0

    async def get(self, url: str, headers: dict[str, str]) -> bytes:
        return await self._whole(await self._get(url, headers))

    async def post(self, url: str, headers: dict[str, str], content: Body) -> bytes:
        self.progress.sent = True
        self.last_status = 0
        resp = await self.client.post(url, headers, content, self.dep.timeout_s)
        self.last_status = resp.status_code
        return await self._whole(resp)

    async def lines(self, url: str, headers: dict[str, str]) -> AsyncIterator[bytes | LineTooLong]:
        """A JSONL answer's lines (blank ones skipped), as they arrive."""
        resp = await self._get(url, headers)
        try:
            self._began()
            if resp.status_code >= 400:
                raise self.map_error(resp.status_code, await _capped(resp, MAX_JSON_BYTES), resp.headers)
            async for line in jsonl_lines(resp.aiter_bytes(), MAX_LINE_BYTES):
                yield line
        finally:
            await resp.aclose()

    async def _get(self, url: str, headers: dict[str, str]) -> UpstreamResponse:
        self.progress.sent = True
        return await self.client.get(url, headers, self.dep.timeout_s)

    async def _whole(self, resp: UpstreamResponse) -> bytes:
        try:
            self._began()
            data = await _capped(resp, MAX_JSON_BYTES)
        finally:
            await resp.aclose()
        if resp.status_code >= 400:
            raise self.map_error(resp.status_code, data, resp.headers)
        return data

    def _began(self) -> None:
        self.first_byte_ns = self.first_byte_ns or time.time_ns()


async def _capped(resp: UpstreamResponse, limit: int) -> bytes:
    data = bytearray()
    async for chunk in resp.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise UpstreamError(f"The upstream's answer is larger than {limit} bytes.")
    return bytes(data)


async def jsonl_lines(chunks: AsyncIterator[bytes], max_line: int) -> AsyncIterator[bytes | LineTooLong]:
    """The non-blank lines of a JSONL stream (``\\n`` or ``\\r\\n``); a
    line past ``max_line`` bytes as ``LineTooLong``, the rest of it skipped."""
    held = bytearray()
    long_head: bytes | None = None  # set while the rest of a too-long line is skipped
    async for chunk in chunks:
        at = 0
        while at < len(chunk):
            end = chunk.find(b"\n", at)
            piece = chunk[at:] if end < 0 else chunk[at:end]
            at = len(chunk) if end < 0 else end + 1
            if long_head is None:
                if len(held) + len(piece) > max_line:
                    long_head = bytes((held + piece[:KEPT_OF_LONG_LINE])[:KEPT_OF_LONG_LINE])
                    held.clear()
                else:
                    held += piece
            if end < 0:
                break
            if long_head is not None:
                yield LineTooLong(long_head)
                long_head = None
                continue
            line = bytes(held).strip()
            held.clear()
            if line:
                yield line
    if long_head is not None:
        yield LineTooLong(long_head)
    elif held.strip():
        yield bytes(held).strip()


async def slices(data: bytes | bytearray) -> AsyncIterator[bytes]:
    """``data`` as a body, a slice at a time (never copied whole)."""
    view = memoryview(data)
    for at in range(0, len(data), SLICE_BYTES):
        yield bytes(view[at : at + SLICE_BYTES])
