"""The REST adapter's HTTP client: one aiohttp session per provider
process, any method, the answer's body left unread for the caller to
stream.

It is its own session, not the model calls' (``services.providers.http``):
a proxy passes bodies as the instance wrote them (no decompression, no
``Accept-Encoding``, ``Content-Type`` or ``User-Agent`` of its own), keeps
no cookies, follows no redirect (the caller gets the 3xx), and takes its
timeouts from each service's record.
"""

from __future__ import annotations

import functools

import aiohttp
from multidict import CIMultiDict
from yarl import URL

# Waiting for a free pooled connection, on top of the service's connect timeout.
POOL_S = 5.0
# What one read of an answer's body returns at most: the slice a Chunk carries.
SLICE = 64 * 1024


@functools.lru_cache(maxsize=256)
def _timeout(connect_s: float, read_s: float) -> aiohttp.ClientTimeout:
    # sock_read bounds the wait for the head and then each wait between two
    # reads: a long download goes on as long as bytes keep coming.
    return aiohttp.ClientTimeout(total=None, connect=POOL_S + connect_s, sock_connect=connect_s, sock_read=read_s)


class RestClient:
    """One per process: one aiohttp session, one connection pool."""

    def __init__(self, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that will use it.
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            read_bufsize=SLICE,
        )
        return self._session

    async def send(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes,
        connect_s: float,
        read_s: float,
    ) -> aiohttp.ClientResponse:
        """The instance's answer once its head arrived; raises aiohttp's
        errors as they are (``call`` tells which may be tried again)."""
        session = self._session or self._open()
        return await session.request(
            method,
            url,
            data=body or None,
            headers=headers,
            timeout=_timeout(connect_s, read_s),
            allow_redirects=False,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
