"""The upstream HTTP client, behind one small seam: ``post`` sends a request
and returns a response whose body is read (``aread``) or streamed
(``aiter_bytes``), then closed (``aclose``).

The gateway's provider process calls upstreams with a lean HTTP/1.1 client
of its own (``services.providers.lean_http``), or plain aiohttp
(``AiohttpUpstream``, ``SLUICE_UPSTREAM_CLIENT=aiohttp``). httpx stays for everything else, and for tests:
``UpstreamHTTP`` takes any httpx transport (``httpx.MockTransport`` in the
adapters' fixture tests), with the same interface. Measured at 64 in flight
against nginx: plain aiohttp spends less CPU per call than httpx's transport
API over aiohttp (``make bench``, issue 13's note), which itself beat
``AsyncClient.send`` (489 µs) and ``AsyncClient.stream`` (559 µs).

Errors are httpx's in both: aiohttp's are raised as the httpx exception
that means the same (refused: ``ConnectError``; no connection in time:
``ConnectTimeout``; no bytes in time: ``ReadTimeout``; cut off:
``ReadError``), so the caller maps one family.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx

CONNECT_S = 5.0
WRITE_S = 10.0
POOL_S = 5.0
# A request body: bytes, or an upload streamed from the object store as it is
# read (its content-length header set by the caller, so no chunked encoding).
Body = bytes | AsyncIterable[bytes]


class UpstreamResponse(Protocol):
    status_code: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def aread(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def post(
        self, url: str, headers: dict[str, str], content: Body, read_timeout_s: float
    ) -> UpstreamResponse: ...

    # A native batch's poll, list and results (``services.providers.tasks.native_batch``).
    async def get(self, url: str, headers: dict[str, str], read_timeout_s: float) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


@functools.lru_cache(maxsize=1024)
def _url(url: str) -> httpx.URL:
    # httpx parses a URL string on every request (~30 µs); deployments are few.
    return httpx.URL(url)


class UpstreamHTTP:
    """Any httpx transport, called directly (``handle_async_request``):
    ``AsyncClient``'s per-request work (URL merging, cookies, auth and
    redirect flows, hooks) is nothing an upstream call needs."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def post(self, url: str, headers: dict[str, str], content: Body, read_timeout_s: float) -> httpx.Response:
        timeout = {"connect": CONNECT_S, "read": read_timeout_s, "write": WRITE_S, "pool": POOL_S}
        request = httpx.Request("POST", _url(url), headers=headers, content=content, extensions={"timeout": timeout})
        return await self.transport.handle_async_request(request)

    async def get(self, url: str, headers: dict[str, str], read_timeout_s: float) -> httpx.Response:
        timeout = {"connect": CONNECT_S, "read": read_timeout_s, "write": WRITE_S, "pool": POOL_S}
        request = httpx.Request("GET", _url(url), headers=headers, extensions={"timeout": timeout})
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self.transport.aclose()


@functools.lru_cache(maxsize=64)
def _timeout(read_s: float) -> aiohttp.ClientTimeout:
    # Waiting for a pooled connection and making a new one share one bound,
    # as httpx's pool and connect timeouts would.
    return aiohttp.ClientTimeout(total=None, connect=POOL_S + CONNECT_S, sock_connect=CONNECT_S, sock_read=read_s)


def _as_httpx(exc: BaseException, url: str) -> httpx.TransportError:
    """aiohttp's error as the httpx error that means the same."""
    request = httpx.Request("POST", _url(url))
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error: httpx.TransportError = httpx.ConnectTimeout(str(exc) or "connect timed out", request=request)
    elif isinstance(exc, TimeoutError):  # sock_read, or the connect bound
        error = httpx.ReadTimeout(str(exc) or "read timed out", request=request)
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError(str(exc), request=request)
    else:  # the server went away, a broken body, a reset
        error = httpx.ReadError(str(exc) or type(exc).__name__, request=request)
    error.__cause__ = exc
    return error


class _AiohttpResponse:
    __slots__ = ("_resp", "_url", "status_code")

    def __init__(self, resp: aiohttp.ClientResponse, url: str) -> None:
        self._resp = resp
        self._url = url
        self.status_code = resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def aread(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, self._url) from exc

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, self._url) from exc

    async def aclose(self) -> None:
        self._resp.release()


class AiohttpUpstream:
    """One per process: one aiohttp session, one connection pool."""

    def __init__(self, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that will use it.
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        # No cookies kept between calls, and no client name of ours sent.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",)
        )
        return self._session

    async def post(self, url: str, headers: dict[str, str], content: Body, read_timeout_s: float) -> _AiohttpResponse:
        session = self._session or self._open()
        try:
            resp = await session.post(
                url, data=content, headers=headers, timeout=_timeout(read_timeout_s), allow_redirects=False
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, url) from exc
        return _AiohttpResponse(resp, url)

    async def get(self, url: str, headers: dict[str, str], read_timeout_s: float) -> _AiohttpResponse:
        session = self._session or self._open()
        try:
            resp = await session.get(url, headers=headers, timeout=_timeout(read_timeout_s), allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc, url) from exc
        return _AiohttpResponse(resp, url)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def make_upstream_http(max_connections: int = 4096) -> Upstream:
    """The lean client (``services.providers.lean_http``); aiohttp's with
    ``SLUICE_UPSTREAM_CLIENT=aiohttp``, kept while both are measured and
    tested side by side. As many connections as an ingress holds requests
    (``max_in_flight``): a streamed answer holds its connection for as long
    as the model writes, and at 512 the 513th live stream waited for one."""
    if os.environ.get("SLUICE_UPSTREAM_CLIENT") == "aiohttp":
        return AiohttpUpstream(max_connections)
    from services.providers.lean_http import LeanUpstream  # it imports this module's bounds

    return LeanUpstream(max_connections)
