"""Request bodies sent compressed (``Content-Encoding``): gzip, deflate and
zstd, decoded as they arrive and never past the room the body limit leaves,
so a small body that would inflate to gigabytes (a decompression bomb) costs
one byte over the limit to refuse, not the gigabytes."""

from __future__ import annotations

import sys
import zlib

from schemas.errors import InvalidRequest, UnsupportedEncoding

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # pragma: no cover - the backport of 3.14's module
    from backports import zstd

CODINGS = "gzip, deflate or zstd"


class BodyDecoder:
    """One body's decoder. ``feed`` returns at most ``room + 1`` bytes: one
    more than fits says the body is too large, and nothing past it is decoded."""

    def feed(self, data: bytes, room: int) -> bytes:
        raise NotImplementedError

    def more_pending(self) -> bool:
        """Decoded output is held back past what ``feed`` returned."""
        raise NotImplementedError

    def ended(self) -> bool:
        """The compressed data ended where a body may end (not cut short)."""
        raise NotImplementedError


def invalid(reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"The request body is not valid for its Content-Encoding: {reason}.", code="invalid_content_encoding"
    )


class _Zlib(BodyDecoder):
    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        if self._d.eof:
            if data:  # a second gzip member, or anything else after the end: never dropped unread
                raise invalid("data after the end of the compressed body")
            return b""
        try:
            out = self._d.decompress(data, max(room, 0) + 1)
        except zlib.error as exc:
            raise invalid(str(exc)) from None
        if self._d.eof and self._d.unused_data:
            raise invalid("data after the end of the compressed body")
        return out

    def more_pending(self) -> bool:
        return bool(self._d.unconsumed_tail)

    def ended(self) -> bool:
        return self._d.eof


class _Zstd(BodyDecoder):
    """A body of one or more zstd frames (RFC 8878 allows several), read as
    the concatenation of what they hold."""

    def __init__(self) -> None:
        self._d = zstd.ZstdDecompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        limit = max(room, 0) + 1
        out = b""
        while len(out) < limit:
            if self._d.eof:
                data = self._d.unused_data + data
                if not data:
                    break
                self._d = zstd.ZstdDecompressor()
            try:
                out += self._d.decompress(data, limit - len(out))
            except zstd.ZstdError as exc:
                raise invalid(str(exc)) from None
            data = b""
            if not self._d.eof:
                break
        return out

    def more_pending(self) -> bool:
        return not self._d.eof and not self._d.needs_input

    def ended(self) -> bool:
        return self._d.eof and not self._d.unused_data


def decoder_for(coding: str) -> BodyDecoder | None:
    """The decoder for a ``Content-Encoding`` ("" is none); anything else,
    or several codings, is a 415."""
    if not coding:
        return None
    if coding in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if coding == "deflate":  # zlib's format, as HTTP defines it
        return _Zlib(zlib.MAX_WBITS)
    if coding == "zstd":
        return _Zstd()
    raise UnsupportedEncoding(
        f"Content-Encoding {coding[:40]!r} is not supported: send the body as is, or with {CODINGS}."
    )
