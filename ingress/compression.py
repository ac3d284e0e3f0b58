"""Answers compressed for the clients that ask (``Accept-Encoding``).

``Compression.wrap`` puts a ``send`` between an endpoint and the server:
the endpoint sends its answer as ever, and the wrapper compresses what is
worth it. A client that asks for nothing (wrk, most benchmarks) costs one
scan of the request's headers (~0.25 µs) and gets the endpoint's own
``send`` back. The app wraps every client API route but REST services (the
service got the caller's Accept-Encoding and answers as it chose), MCP
(its SDK answers) and the Files API (a file's content goes with its length).

A whole answer (one body message) is compressed once it is at least
``MIN_BYTES``, with its ``content-length`` replaced. Measured in
``loadtest/compression_bench.py``: a smaller answer and its ~270-470 B of
headers fit one TCP segment either way, so compressing it saves the client
no packet and costs the gateway 4-11 µs. One of ``OFF_LOOP_BYTES`` or more
is compressed on a worker thread (zlib and zstd let go of the GIL): a 20 MB
embeddings answer would hold the event loop, and every stream on it, for
60-160 ms.

A streamed answer (server-sent events, ndjson, any body sent in more than
one message) is compressed per message, each flushed (zlib's
``Z_SYNC_FLUSH``, zstd's ``FLUSH_BLOCK``): what the client has read decodes
to exactly the events sent so far, so no chunk waits for the next (~3 µs of
CPU per event). The last message ends the compressed stream. A stream's
compressor is made small (``STREAM_GZIP``, ``STREAM_ZSTD``: ~40 KB per open
stream rather than 100-300 KB): an event repeats the one before it, which
an 8-32 KB window still sees.

Never compressed: an answer that already carries a ``content-encoding``,
a media type that does not shrink (audio, images, octet-stream), a partial
one (206), one with no body (204, 304, 1xx), an answer to HEAD.
"""

from __future__ import annotations

import asyncio
import zlib
from functools import lru_cache
from typing import Protocol

from ingress.body_coding import zstd
from ingress.http import Message, Scope, Send

ZSTD, GZIP, DEFLATE = "zstd", "gzip", "deflate"
# What is offered, preferred first when the client weighs them the same:
# zstd compresses float-heavy JSON smaller than gzip at a third of its CPU.
OFFERED = (ZSTD, GZIP, DEFLATE)
# Whole answers smaller than this go as they are (see the module's docstring).
MIN_BYTES = 1024
OFF_LOOP_BYTES = 256 * 1024
# How much of a large body tells whether gzip's back-references pay (``_zlib_strategy``).
SAMPLE_BYTES = 64 * 1024
# Level 1 of both: on a CPU-bound gateway the next levels cost 1.5-7x the CPU
# for 4-13 % fewer bytes (loadtest/compression_bench.py prints the table).
GZIP_LEVEL = 1
ZSTD_LEVEL = 1
# A stream's compressor: zlib's window bits and memory level; zstd's window, hash and chain logs.
STREAM_GZIP = (13, 6)
STREAM_ZSTD = {
    zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
    zstd.CompressionParameter.window_log: 15,
    zstd.CompressionParameter.hash_log: 13,
    zstd.CompressionParameter.chain_log: 13,
}
# A hostile Accept-Encoding is read this far (real ones are under 60 characters).
MAX_ACCEPT = 256
MAX_CODINGS = 16
_STREAMED_TYPES = frozenset({b"text/event-stream", b"application/x-ndjson", b"application/jsonl"})
_TEXT_TYPES = frozenset(
    {
        b"application/json",
        b"application/x-ndjson",
        b"application/jsonl",
        b"application/x-jsonlines",
        b"application/javascript",
        b"application/xml",
        b"application/yaml",
        b"application/x-yaml",
    }
)


def _quality(params: str) -> float | None:
    """The ``q`` of one coding's parameters (1 without one); None when it is
    not a number from 0 to 1 (the coding is then ignored, as if not listed)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            try:
                q = float(value) if len(value) <= 5 else -1.0
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


def _weights(accept_encoding: str) -> dict[str, float]:
    """Each coding the header names, with its ``q``."""
    weights: dict[str, float] = {}
    for item in accept_encoding[:MAX_ACCEPT].split(",", MAX_CODINGS)[:MAX_CODINGS]:
        name, _, params = item.partition(";")
        name = name.strip().lower()
        q = _quality(params)
        if name and q is not None:
            weights.setdefault("gzip" if name == "x-gzip" else name, q)
    return weights


def accepts(accept_encoding: str, coding: str) -> bool:
    """Whether the client takes ``coding`` at all (for an answer kept
    compressed one way only: the dashboard's script)."""
    weights = _weights(accept_encoding)
    return weights.get(coding, weights.get("*", 0.0)) > 0


@lru_cache(maxsize=128)
def negotiate(accept_encoding: str) -> str:
    """The coding to answer in for this ``Accept-Encoding`` (RFC 9110
    §12.5.3), "" for none: the offered coding with the highest ``q`` above
    0 (``*`` stands for those not named; ties go to ``OFFERED``'s order),
    unless the client weighs ``identity`` higher. Cached: clients send a
    handful of distinct values (the caller truncates it to ``MAX_ACCEPT``)."""
    weights = _weights(accept_encoding)
    star = weights.get("*", 0.0)
    best, best_q = "", 0.0
    for coding in OFFERED:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    if best and weights.get("identity", 0.0) > best_q:
        return ""
    return best


def compress(coding: str, data: bytes) -> bytes:
    """A whole body in ``coding`` (a fresh context each time: safe on any thread)."""
    if coding == ZSTD:
        return zstd.compress(data, ZSTD_LEVEL)
    wbits = 31 if coding == GZIP else 15
    if len(data) < OFF_LOOP_BYTES:
        return zlib.compress(data, GZIP_LEVEL, wbits=wbits)
    coder = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, wbits, 8, _zlib_strategy(data[:SAMPLE_BYTES]))
    return coder.compress(data) + coder.flush()


def _zlib_strategy(sample: bytes) -> int:
    """Huffman coding alone for a body whose start finds no repeats to
    refer back to: an embeddings answer's digits or base64 (measured on
    20 MB of floats: 30 % less CPU and 3 % fewer bytes; on base64, a third
    of the CPU), trying which costs ~1 ms on a body this large."""
    matched = zlib.compress(sample, GZIP_LEVEL)
    alone = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    huffman = len(alone.compress(sample) + alone.flush())
    return zlib.Z_HUFFMAN_ONLY if huffman <= len(matched) else zlib.Z_DEFAULT_STRATEGY


class StreamEncoder(Protocol):
    def flush(self, data: bytes) -> bytes:
        """``data`` compressed, with everything before it: decodable now."""

    def finish(self, data: bytes) -> bytes:
        """``data`` compressed, and the compressed stream's end."""


class _ZlibStream:
    __slots__ = ("_z",)

    def __init__(self, coding: str) -> None:
        window, memory = STREAM_GZIP
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, window + 16 if coding == GZIP else window, memory)

    def flush(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_FINISH)


class _ZstdStream:
    __slots__ = ("_z",)

    def __init__(self) -> None:
        self._z = zstd.ZstdCompressor(options=STREAM_ZSTD)

    def flush(self, data: bytes) -> bytes:
        return self._z.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

    def finish(self, data: bytes) -> bytes:
        return self._z.compress(data, zstd.ZstdCompressor.FLUSH_FRAME)


def stream_encoder(coding: str) -> StreamEncoder:
    return _ZstdStream() if coding == ZSTD else _ZlibStream(coding)


class Compression:
    """One per process: the client API's answers compressed as their clients ask.

    Holds one zstd context for whole answers compressed on the event loop:
    making one costs ~18 µs, more than compressing a 2 KB answer with it."""

    def __init__(self) -> None:
        self._zstd = zstd.ZstdCompressor(level=ZSTD_LEVEL)

    def wrap(self, scope: Scope, send: Send) -> Send:
        """The ``send`` to answer this request through: ``send`` itself when
        the client asked for no coding we offer, or for HEAD."""
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                coding = negotiate(value[:MAX_ACCEPT].decode("latin-1"))
                if coding and scope["method"] != "HEAD":
                    return _Compressing(self, send, coding)
                return send
        return send

    async def whole(self, coding: str, data: bytes) -> bytes:
        """A whole answer compressed: off the event loop when it is large."""
        if len(data) >= OFF_LOOP_BYTES:
            return await asyncio.to_thread(compress, coding, data)
        if coding == ZSTD:
            return self._zstd.compress(data, zstd.ZstdCompressor.FLUSH_FRAME)
        return compress(coding, data)


def _coded_headers(headers: list[tuple[bytes, bytes]], coding: str, length: int | None) -> list[tuple[bytes, bytes]]:
    """The answer's headers once its body is in ``coding``: its length the
    compressed one, or none for a stream (the server frames it in chunks)."""
    out = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    out += [(b"content-encoding", coding.encode()), (b"vary", b"accept-encoding")]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out


_PASS, _HOLD, _STREAM = 0, 1, 2


def _plan(start: Message) -> int:
    """What an answer's start says: pass it all through, hold the start
    until the first body message, or begin a compressed stream."""
    status: int = start["status"]
    if status < 200 or status in (204, 206, 304):
        return _PASS
    content_type = b""
    for name, value in start.get("headers", ()):
        low = name.lower()
        if low == b"content-encoding":
            return _PASS
        if low == b"content-type":
            content_type = value
    base = content_type.partition(b";")[0].strip().lower()
    if base in _STREAMED_TYPES:
        return _STREAM
    return _HOLD if _shrinks(base) else _PASS


def _shrinks(media_type: bytes) -> bool:
    """Whether a body of this media type (lower case, no parameters) shrinks: text, JSON and their kin."""
    return media_type.startswith(b"text/") or media_type in _TEXT_TYPES or media_type.endswith((b"+json", b"+xml"))


class _Compressing:
    """One answer's ``send`` (``_plan`` reads its start): a whole answer,
    or one sent in parts, told apart by the first body message."""

    __slots__ = ("_coding", "_compression", "_held", "_passing", "_send", "_stream")

    def __init__(self, compression: Compression, send: Send, coding: str) -> None:
        self._compression = compression
        self._send = send
        self._coding = coding
        self._held: Message | None = None
        self._stream: StreamEncoder | None = None
        self._passing = False

    async def __call__(self, message: Message) -> None:
        if self._passing:
            return await self._send(message)
        kind = message["type"]
        if kind == "http.response.start":
            plan = _plan(message)
            if plan == _HOLD:
                self._held = message
                return None
            if plan == _STREAM:  # sent at once: a stream's head must not wait for its first event
                return await self._begin_stream(message, None)
            return await self._pass(message)
        if kind != "http.response.body":
            return await self._pass(message)
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self._stream is not None:
            if more and not body:
                return await self._send(message)
            coded = self._stream.flush(body) if more else self._stream.finish(body)
            return await self._send({"type": kind, "body": coded, "more_body": more})
        start = self._held
        if start is None:  # a body before any start: the server's error to raise
            return await self._pass(message)
        self._held = None
        if more:
            return await self._begin_stream(start, message)
        self._passing = True
        if len(body) >= MIN_BYTES:
            coded = await self._compression.whole(self._coding, body)
            if len(coded) < len(body):
                headers = _coded_headers(list(start.get("headers", ())), self._coding, len(coded))
                await self._send({**start, "headers": headers})
                return await self._send({"type": kind, "body": coded})
        await self._send(start)
        await self._send(message)

    async def _begin_stream(self, start: Message, first: Message | None) -> None:
        self._stream = stream_encoder(self._coding)
        await self._send({**start, "headers": _coded_headers(list(start.get("headers", ())), self._coding, None)})
        if first is not None:
            await self(first)

    async def _pass(self, message: Message) -> None:
        """From here on, everything as the endpoint sent it (a start held first)."""
        self._passing = True
        if self._held is not None:
            start, self._held = self._held, None
            await self._send(start)
        await self._send(message)
