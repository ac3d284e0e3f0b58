"""The provider stage's upstream client: HTTP/1.1 on ``asyncio.Protocol``
with httptools' response parser (the one uvicorn uses for requests), a pool
of keep-alive connections per upstream, TLS through ``ssl`` on the running
loop (uvloop's), bodies read whole or streamed as they arrive.

Why not aiohttp: an upstream call is one request shape (a POST of bytes or
of a streamed upload, a GET for batch polls) to few hosts, and aiohttp's
general machinery cost ~78 µs of CPU per call against ~21 for this
(``python -m loadtest.client_ab``: 64 in flight against nginx; pyreqwest,
the fastest well-kept client found, 35-41; aiosonic 85). It keeps
aiohttp's behaviour where the call engine depends on it: a POST is never
sent twice (no retry on a reused connection; a pooled connection the
server has closed is never reused), gzip and deflate answers are decoded,
redirects are not followed, and each failure is the httpx error that
means it (``services.providers.http``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping

import httptools
import httpx

from services.providers.http import CONNECT_S, POOL_S, WRITE_S, Body
from services.providers.lean_wire import AnswerHeaders, Target, decoder, request_head, target_of
from services.wait_timer import WaitTimer

# A pooled connection idle longer than this is closed rather than reused:
# servers drop idle keep-alive connections (nginx after 75 s, many clouds
# sooner), and a POST sent into one that is closing fails.
IDLE_S = 15.0
# A streamed answer the caller reads slower than it comes is held up to
# this, then the socket is paused.
HIGH_WATER = 1 << 20


class _Conn(asyncio.Protocol):
    """One connection to an upstream, one answer at a time."""

    def __init__(self, pool: LeanUpstream, key: tuple[str, str, int]) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = False  # in the pool's count of open connections, until lost
        self.idle_since = 0.0
        # Weak: an answer its caller dropped unclosed is collected, and its
        # ``__del__`` closes this connection, which the pool then counts as gone.
        self._answer: weakref.ref[LeanResponse] | None = None
        self._writable: asyncio.Future[None] | None = None

    @property
    def answer(self) -> LeanResponse | None:
        return self._answer() if self._answer is not None else None

    @answer.setter
    def answer(self, answer: LeanResponse | None) -> None:
        self._answer = weakref.ref(answer) if answer is not None else None

    # -- the transport's side --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"The upstream's answer is not valid HTTP/1.1: {exc}."))
            self.close()

    def eof_received(self) -> bool:
        self.closed = True
        answer = self.answer
        if answer is not None and answer.status_code and answer.unframed:
            answer.ended(keep_alive=False)  # an answer with neither a length nor chunks ends with the connection
        self._fail(httpx.ReadError("The upstream closed the connection before the answer ended."))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.transport = True, None
        if self.counted:
            self.counted = False
            self.pool.lost(self)
        self._fail(httpx.ReadError(f"The connection to the upstream was lost ({exc or 'closed'})."))
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(httpx.WriteError("The connection closed while the body was sent."))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def drain(self) -> None:
        if self._writable is not None:
            try:
                async with asyncio.timeout(WRITE_S):
                    await self._writable
            except TimeoutError:
                raise httpx.WriteTimeout(f"The upstream took none of the body for {WRITE_S:g} s.") from None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: httpx.TransportError) -> None:
        answer = self.answer
        if answer is not None:
            answer.failed(error)

    # -- the parser's side --
    def on_header(self, name: bytes, value: bytes) -> None:
        answer = self.answer
        if answer is not None:
            answer.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self.answer
        status = self.parser.get_status_code()
        if answer is None or 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        answer.head(status)

    def on_body(self, body: bytes) -> None:
        answer = self.answer
        if answer is not None and answer.status_code:
            answer.feed(body)

    def on_message_complete(self) -> None:
        answer = self.answer
        if answer is None:
            return
        if not answer.status_code:  # the end of an interim answer
            answer.raw_headers.clear()
            return
        answer.ended(keep_alive=self.parser.should_keep_alive())


class LeanResponse:
    """An upstream's answer: ``aread`` or ``aiter_bytes``, then ``aclose``."""

    def __init__(self, conn: _Conn, read_timeout_s: float) -> None:
        self._conn: _Conn | None = conn
        self._read_s = read_timeout_s
        self.status_code = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: AnswerHeaders | None = None
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._decode: zlib._Decompress | None = None
        self._done = False
        self._keep_alive = False
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        # One timer for the answer's waits, as aiohttp's sock_read: at most this long between reads.
        self._timer = WaitTimer(lambda: httpx.ReadTimeout(f"The upstream sent nothing for {read_timeout_s:g} s."))
        self._paused = False
        self.unframed = False

    def __del__(self) -> None:
        # An answer dropped unclosed (its caller raised) must not hold its connection forever.
        if self._conn is not None:
            self._conn.close()

    @property
    def headers(self) -> Mapping[str, str]:
        if self._headers is None:
            self._headers = AnswerHeaders(self.raw_headers)
        return self._headers

    # -- from the connection --
    def head(self, status: int) -> None:
        self.status_code = status
        # Read off the raw headers: the mapping is built only for a caller that asks (an error, a media type).
        framed = False
        for name, value in self.raw_headers:
            low = name.lower()
            if low == b"content-encoding":
                self._decode = decoder(value.decode("latin-1"))
            elif low == b"content-length" or (low == b"transfer-encoding" and b"chunked" in value.lower()):
                framed = True
        self.unframed = not framed
        self._wake()

    def feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._held += len(body)
        if self._held > HIGH_WATER and not self._paused and self._conn is not None and self._conn.transport:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def ended(self, keep_alive: bool) -> None:
        self._done, self._keep_alive = True, keep_alive
        self._wake()

    def failed(self, error: httpx.TransportError) -> None:
        if not self._done and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        """Until something comes, at most the read timeout."""
        if self._error is not None:
            raise self._error
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await self._timer.wait(waiter, self._read_s)
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    async def wait_head(self) -> None:
        while not self.status_code:
            await self._wait()

    # -- for the caller --
    def _take(self) -> bytes:
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._held = 0
        if self._paused and self._conn is not None and self._conn.transport is not None:
            self._paused = False
            self._conn.transport.resume_reading()
        if self._decode is None:
            return data
        try:
            return self._decode.decompress(data)
        except zlib.error as exc:
            coding = self.headers.get("content-encoding")
            raise httpx.DecodingError(f"The upstream's {coding} body is broken: {exc}.") from None

    async def aread(self) -> bytes:
        parts = []
        while True:
            if self._chunks:
                parts.append(self._take())
            if self._done:
                return b"".join(parts)
            await self._wait()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                data = self._take()
                if data:
                    yield data
            if self._done:
                return
            await self._wait()

    async def aclose(self) -> None:
        self._timer.cancel()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.answer = None
        if self._done and self._keep_alive and not self._chunks and not conn.closed:
            conn.pool.release(conn)
        else:  # unread or unended: the connection cannot carry another request
            conn.close()


class LeanUpstream:
    """One per process: a pool of keep-alive connections per upstream
    (scheme, host, port), at most ``max_connections`` open in all."""

    def __init__(self, max_connections: int = 512, tls: ssl.SSLContext | None = None) -> None:
        self._max = max_connections
        self._open = 0
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._tls = tls  # the system's trusted roots unless given

    async def post(self, url: str, headers: dict[str, str], content: Body, read_timeout_s: float) -> LeanResponse:
        return await self._call(b"POST", url, headers, content, read_timeout_s)

    async def get(self, url: str, headers: dict[str, str], read_timeout_s: float) -> LeanResponse:
        return await self._call(b"GET", url, headers, None, read_timeout_s)

    async def _call(
        self, method: bytes, url: str, headers: dict[str, str], content: Body | None, read_s: float
    ) -> LeanResponse:
        target = target_of(url)
        length = None if isinstance(content, AsyncIterable) else len(content or b"")
        head = request_head(method, target, headers, length)
        conn = await self._acquire(target)
        answer = LeanResponse(conn, read_s)
        conn.answer = answer
        transport = conn.transport
        try:
            if transport is None:
                raise httpx.ReadError("The connection to the upstream was lost.")
            if isinstance(content, AsyncIterable):
                await self._send_stream(conn, transport, head, content)
            else:
                transport.writelines([head, content] if content else [head])
            await answer.wait_head()
        except BaseException:
            conn.answer = None
            conn.close()
            raise
        return answer

    @staticmethod
    async def _send_stream(
        conn: _Conn, transport: asyncio.Transport, head: bytes, content: AsyncIterable[bytes]
    ) -> None:
        transport.write(head)
        chunked = head.endswith(b"transfer-encoding: chunked\r\n\r\n")
        async for piece in content:
            if piece:
                transport.writelines([b"%x\r\n" % len(piece), piece, b"\r\n"] if chunked else [piece])
                await conn.drain()
        if chunked:
            transport.write(b"0\r\n\r\n")

    async def _acquire(self, target: Target) -> _Conn:
        deadline = time.monotonic() + POOL_S
        while True:
            idle = self._idle.get(target.key)
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < IDLE_S:
                    return conn
                conn.close()
            if self._open < self._max:
                return await self._connect(target)
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                async with asyncio.timeout(max(0.0, deadline - now)):
                    await waiter
            except TimeoutError:
                raise httpx.ConnectTimeout(f"No free connection to {target.host} within {POOL_S:g} s.") from None
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    async def _connect(self, target: Target) -> _Conn:
        self._open += 1
        loop = asyncio.get_running_loop()
        tls = self._context() if target.tls else None
        try:
            async with asyncio.timeout(CONNECT_S):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, target.key),
                    target.host,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls else None,
                )
        except TimeoutError:
            self._gone()
            raise httpx.ConnectTimeout(
                f"Connecting to {target.host}:{target.port} took over {CONNECT_S:g} s."
            ) from None
        except OSError as exc:  # refused, unreachable, no such name, a certificate refused
            self._gone()
            raise httpx.ConnectError(f"Cannot connect to {target.host}:{target.port}: {exc}.") from exc
        except BaseException:
            self._gone()
            raise
        conn.counted = True
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def release(self, conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_one()

    def lost(self, conn: _Conn) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._gone()

    def _gone(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
