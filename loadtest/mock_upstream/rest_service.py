"""The mock's plain REST service, under ``/rest/echo/`` (or
``/@<name>/rest/echo/`` for one named instance of several, which PUT
/mock/upstreams/<name> can make fail, slow or hang like any other):

``/rest/echo/download?mb=N``    N MB (at most 200; or ``kb=N``) of bytes, in 64 KB writes, with
                                its Content-Length (``chunked=1``: without, as a stream)
``/rest/echo/sse?events=N&gap_ms=M``  ``text/event-stream``, N events M ms apart
``/rest/echo/slow?ms=N``        the echo, after N ms
``/rest/echo/status/<code>``    that status, with ``{"status": code}``
``/rest/echo/drop``             reads the request, then drops the connection without an answer
anything else                   200 and the request it received as JSON: ``{"method", "path",
                                "query", "headers", "body", "base64"}`` (the body as text, or
                                base64 when it is not UTF-8, then ``base64`` is true)

It counts what it was sent, per method and first path segment
(``"GET /download"``, ``"POST /items"``), the streams whose client left
before their end, and the writes of a stream that waited for the client to
read (TCP backpressure: the gateway paused it): ``/mock/stats`` shows them
under ``rest``, so a test compares what the service saw with the gateway's
rows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs

import msgspec

_json = msgspec.json.Encoder()
PREFIX = "/rest/echo"
BLOCK = bytes(range(256)) * 256  # 64 KB
MAX_MB = 200
MAX_EVENTS = 10_000
MAX_WAIT_MS = 60_000
# What the mock reads of a request body at most (the gateway's default cap is 10 MB).
MAX_BODY = 64 * 1024 * 1024
# Distinct counters kept at most: a load test with random paths must not grow them forever.
MAX_COUNTERS = 1_000
# A write that waited this long for the client's socket to drain was paused by it.
PAUSED_S = 0.02
JSON = [(b"content-type", b"application/json")]


class RestStats(msgspec.Struct):
    # "METHOD /first-segment" -> requests
    calls: dict[str, int] = {}
    # Downloads and event streams whose client left before the end.
    cancelled: int = 0
    # Those sent to their end.
    completed: int = 0
    # Writes of a stream that waited (at least PAUSED_S) for the client to
    # read, and how long they waited in all.
    paused_writes: int = 0
    paused_ms: int = 0


def is_rest(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class RestEcho:
    def __init__(self, stats: RestStats | None = None) -> None:
        self.stats = stats if stats is not None else RestStats()

    def _count(self, method: str, route: str) -> None:
        segment = route.strip("/").split("/", 1)[0]
        name = f"{method} /{segment}"
        calls = self.stats.calls
        if name in calls or len(calls) < MAX_COUNTERS:
            calls[name] = calls.get(name, 0) + 1

    async def handle(self, path: str, scope: dict, receive: Any, send: Any) -> None:
        """``path``: the request's path with any ``/@<name>`` taken off."""
        route = path.removeprefix(PREFIX) or "/"
        method = scope["method"]
        self._count(method, route)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        body = await _read(receive)
        if body is None:
            return await _send(send, 413, _json.encode({"error": "body too large"}))
        if route == "/download":
            return await self._download(query, receive, send)
        if route == "/sse":
            return await self._sse(query, receive, send)
        if route == "/drop":
            return _drop(receive)
        if route.startswith("/status/"):
            code = _int(route.removeprefix("/status/"), 200, 200, 599)
            payload = b"" if code in (204, 304) or method == "HEAD" else _json.encode({"status": code})
            return await _send(send, code, payload)
        if route == "/slow":
            await asyncio.sleep(_int(_first(query, "ms"), 0, 0, MAX_WAIT_MS) / 1000)
        echo = _json.encode(_echo(scope, body))
        await _send(send, 200, b"" if method == "HEAD" else echo, length=len(echo))

    async def _download(self, query: dict[str, list[str]], receive: Any, send: Any) -> None:
        kb = _int(_first(query, "kb"), -1, 0, MAX_MB * 1024)
        size = kb * 1024 if kb >= 0 else _int(_first(query, "mb"), 1, 0, MAX_MB) * 1024 * 1024
        headers = [(b"content-type", b"application/octet-stream")]
        if _first(query, "chunked") != "1":
            headers.append((b"content-length", str(size).encode()))

        async def parts() -> Any:
            sent = 0
            while sent < size:
                part = BLOCK[: min(len(BLOCK), size - sent)]
                sent += len(part)
                yield part, 0.0

        await self._stream(200, headers, parts(), receive, send)

    async def _sse(self, query: dict[str, list[str]], receive: Any, send: Any) -> None:
        events = _int(_first(query, "events"), 3, 0, MAX_EVENTS)
        gap_s = _int(_first(query, "gap_ms"), 0, 0, MAX_WAIT_MS) / 1000
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

        async def parts() -> Any:
            for i in range(events):
                doc = _json.encode({"n": i, "at_ms": time.time() * 1000})
                yield b"id: %d\nevent: tick\ndata: %s\n\n" % (i, doc), gap_s if i + 1 < events else 0.0

        await self._stream(200, headers, parts(), receive, send)

    async def _stream(self, status: int, headers: list, parts: Any, receive: Any, send: Any) -> None:
        """Write each part, waiting its pause after it; stop when the client leaves."""
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            async for part, pause_s in parts:
                if gone.is_set():
                    self.stats.cancelled += 1
                    return
                began = time.monotonic()
                await send({"type": "http.response.body", "body": part, "more_body": True})
                waited = time.monotonic() - began
                if waited >= PAUSED_S:
                    self.stats.paused_writes += 1
                    self.stats.paused_ms += int(waited * 1000)
                if pause_s:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), pause_s)
                else:
                    await asyncio.sleep(0)  # lets the watcher see a disconnect
            if gone.is_set():
                self.stats.cancelled += 1
                return
            await send({"type": "http.response.body", "body": b""})
            self.stats.completed += 1
        finally:
            watcher.cancel()


def _echo(scope: dict, body: bytes) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "method": scope["method"],
        "path": scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?", 1)[0],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "headers": headers,
        "body": text,
        "base64": encoded,
    }


def _drop(receive: Any) -> None:
    """Close the connection with no answer. uvicorn's ASGI gives no way to;
    its request cycle (``receive``'s owner) holds the transport."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError
    transport.close()


async def _read(receive: Any) -> bytes | None:
    raw = bytearray()
    while True:
        msg = await receive()
        raw += msg.get("body", b"")
        if len(raw) > MAX_BODY:
            return None
        if not msg.get("more_body"):
            return bytes(raw)


async def _send(send: Any, status: int, body: bytes, length: int | None = None) -> None:
    size = len(body) if length is None else length
    headers = [*JSON, (b"content-length", str(size).encode())] if status not in (204, 304) else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _first(query: dict[str, list[str]], name: str) -> str:
    return query.get(name, [""])[0]


def _int(text: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(text)))
    except ValueError:
        return default
