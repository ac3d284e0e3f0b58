"""Server-sent events: the ``data:`` payloads of a byte stream, as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[str]]:
    """Yield, for each piece of the byte stream read, the data of every
    event it completed (multi-line data joined by newlines), maybe none:
    events that came in one read are handled, and forwarded, together.

    Comments, ``event:``, ``id:`` and ``retry:`` fields are skipped: the
    families we speak put everything in ``data``.
    """
    buffer = b""
    data: list[str] = []
    async for chunk in chunks:
        buffer += chunk
        events: list[str] = []
        while True:
            nl = buffer.find(b"\n")
            if nl < 0:
                break
            line = buffer[:nl].rstrip(b"\r")
            buffer = buffer[nl + 1 :]
            if not line:
                if data:
                    events.append("\n".join(data))
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append((value[1:] if value.startswith(b" ") else value).decode())
        if events:
            yield events
    if data:
        yield ["\n".join(data)]
