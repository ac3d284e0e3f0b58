"""What the lean upstream client (``services.providers.lean_http``) writes
and reads besides the bytes of a body: a URL as a pool key and a request
target, a request's head, an answer's headers and its content coding."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator, Mapping
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import httpx

_ACCEPT_ENCODING = b"accept-encoding: gzip, deflate\r\n"
# What a request target keeps as written: RFC 3986's reserved and unreserved characters, and "%" (already encoded).
_PATH_SAFE = "/?&=:@!$'()*+,;-._~%"


class Target(NamedTuple):
    key: tuple[str, str, int]  # scheme, host, port: one pool each
    host: str
    port: int
    tls: bool
    path: bytes  # path and query, as sent
    host_header: bytes


@functools.lru_cache(maxsize=1024)
def target_of(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"Cannot call {url[:200]!r}: only http:// and https:// URLs.")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # Percent-encoded as yarl would for aiohttp: a path holding an upstream's
    # own id (a batch's file) can hold a space, a line break or non-ASCII.
    path = quote(path, safe=_PATH_SAFE)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if parts.port is None else f"{shown}:{port}"
    return Target((parts.scheme, host, port), host, port, tls, path.encode("ascii"), host_header.encode("idna"))


def request_head(method: bytes, target: Target, headers: dict[str, str], length: int | None) -> bytes:
    """The request line and headers. A header that would split the request
    (CR, LF or NUL) is refused, as aiohttp refuses it."""
    lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method, target.path, target.host_header)]
    named = set()
    for name, value in headers.items():
        low = name.lower()
        if low in ("host", "content-length", "transfer-encoding", "connection"):
            if low == "content-length" and length is None:
                length = int(value)
            continue
        line = f"{name}: {value}\r\n"
        if "\n" in line[:-2] or "\r" in line[:-2] or "\0" in line:
            raise ValueError(f"Header {name[:40]!r} holds a line break or NUL.")
        named.add(low)
        lines.append(line.encode("latin-1"))
    if "accept-encoding" not in named:
        lines.append(_ACCEPT_ENCODING)
    lines.append(b"transfer-encoding: chunked\r\n\r\n" if length is None else b"content-length: %d\r\n\r\n" % length)
    return b"".join(lines)


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers, by case-insensitive name; repeated ones joined."""

    __slots__ = ("_items",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        items: dict[str, tuple[str, str]] = {}
        for name, value in raw:
            text, low = name.decode("latin-1"), name.decode("latin-1").lower()
            kept = items.get(low)
            items[low] = (text, value.decode("latin-1") if kept is None else f"{kept[1]}, {value.decode('latin-1')}")
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (text for text, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def decoder(encoding: str) -> zlib._Decompress | None:
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None
