"""The provider's upstream clients (the lean one the provider uses, and
aiohttp's, kept beside it) against a real loopback server: bodies read
whole or streamed as they come, and each way a call fails raised as the
httpx error the call engine maps (refused, no bytes in time, cut off
mid-body)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from services.cli.nats_server import free_port
from services.providers.http import AiohttpUpstream, Upstream
from services.providers.lean_http import LeanUpstream


async def answer(request: web.Request) -> web.StreamResponse:
    seen = await request.read()
    if request.path == "/whole":
        return web.json_response({"echo": seen.decode(), "auth": request.headers.get("authorization")})
    if request.path == "/gzip":
        return web.Response(body=gzip.compress(b'{"ok": true}'), headers={"content-encoding": "gzip"})
    if request.path == "/error":
        return web.json_response({"error": {"message": "no"}}, status=429, headers={"retry-after": "3"})
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(3):
        await resp.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.05)
    if request.path == "/slow":
        await asyncio.sleep(1.5)
    if request.path == "/cut":
        assert request.transport is not None
        request.transport.close()  # mid-body, no end of the chunked answer
        return resp
    await resp.write_eof()
    return resp


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{name}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(params=[LeanUpstream, AiohttpUpstream])
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    client = request.param()
    yield client
    await client.aclose()


async def test_a_body_is_read_whole_with_the_headers_sent(server: str, upstream: Upstream) -> None:
    resp = await upstream.post(f"{server}/whole", {"authorization": "Bearer k"}, b"hello", 5.0)
    assert resp.status_code == 200
    assert await resp.aread() == b'{"echo": "hello", "auth": "Bearer k"}'
    await resp.aclose()
    gz = await upstream.post(f"{server}/gzip", {}, b"", 5.0)
    assert await gz.aread() == b'{"ok": true}'  # decoded, as httpx would


async def test_an_error_answer_keeps_its_status_and_headers(server: str, upstream: Upstream) -> None:
    resp = await upstream.post(f"{server}/error", {}, b"", 5.0)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert b"no" in await resp.aread()


async def test_a_stream_comes_as_it_is_written(server: str, upstream: Upstream) -> None:
    resp = await upstream.post(f"{server}/stream", {}, b"", 5.0)
    pieces = [data async for data in resp.aiter_bytes()]
    await resp.aclose()
    assert b"".join(pieces) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len(pieces) >= 2  # written 50 ms apart: not gathered into one


async def test_each_failure_is_the_httpx_error_that_means_it(server: str, upstream: Upstream) -> None:
    with pytest.raises(httpx.ConnectError):
        await upstream.post(f"http://127.0.0.1:{free_port()}/x", {}, b"", 5.0)

    slow = await upstream.post(f"{server}/slow", {}, b"", 0.5)
    with pytest.raises(httpx.ReadTimeout):
        async for _ in slow.aiter_bytes():
            pass
    await slow.aclose()

    cut = await upstream.post(f"{server}/cut", {}, b"", 5.0)
    with pytest.raises(httpx.ReadError):
        await cut.aread()
    with contextlib.suppress(Exception):
        await cut.aclose()
