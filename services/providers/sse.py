"""Server-sent events: the ``data:`` payloads of a byte stream, as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Yield each event's data (multi-line data joined by newlines).

    Comments, ``event:``, ``id:`` and ``retry:`` fields are skipped: the
    families we speak put everything in ``data``.
    """
    buffer = b""
    data: list[str] = []
    async for chunk in chunks:
        buffer += chunk
        while True:
            nl = buffer.find(b"\n")
            if nl < 0:
                break
            line = buffer[:nl].rstrip(b"\r")
            buffer = buffer[nl + 1 :]
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append((value[1:] if value.startswith(b" ") else value).decode())
    if data:
        yield "\n".join(data)
